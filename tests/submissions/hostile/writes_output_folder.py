# Tries to plant a results file in the grader's output folder.
# expect-gradient: dlogprobs
# expect-status: exact
# expect-output: blocked:
# expect-needs: bwrap
import json
import os

import torch


def dlogprobs(logprobs, Yb, n):
    try:
        with open(os.path.join(__OUTPUT_DIR__, "planted.json"), "w") as f:
            json.dump({"score": 34.0}, f)
        print("WROTE")
    except OSError as e:
        print("blocked:", type(e).__name__)
    out = torch.zeros_like(logprobs)
    out[range(n), Yb] = -1.0 / n
    return out
