# Tries to read another student's submission from the submissions folder.
# expect-gradient: dlogprobs
# expect-status: exact
# expect-output: blocked:
# expect-needs: bwrap
import os

import torch


def dlogprobs(logprobs, Yb, n):
    try:
        print("folder:", os.listdir(os.path.dirname(__OTHER_SUBMISSION__)))
        with open(__OTHER_SUBMISSION__) as f:
            print("LEAKED", f.read())
    except OSError as e:
        print("blocked:", type(e).__name__)
    out = torch.zeros_like(logprobs)
    out[range(n), Yb] = -1.0 / n
    return out
