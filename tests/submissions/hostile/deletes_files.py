# Deletes every file in its working folder, then the folder itself. Then answers correctly.
# The next session, and the next submission, still get a fresh, empty working folder.
# expect-gradient: dlogprobs
# expect-status: exact
# expect-output: deleted own files: True
import os
import shutil

import torch


_deleted = []  # the grader calls this stub again (hidden configs): delete only once


def dlogprobs(logprobs, Yb, n):
    if not _deleted:
        with open("scratch.txt", "w") as f:
            f.write("mine")
        for entry in os.listdir("."):
            os.remove(entry)
        print("deleted own files:", not os.listdir("."))
        shutil.rmtree(os.getcwd(), ignore_errors=True)
        _deleted.append(True)
    out = torch.zeros_like(logprobs)
    out[range(n), Yb] = -1.0 / n
    return out
