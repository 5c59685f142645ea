# Tries to read the instructor's solutions/backprop.py and print it into its own output.
# expect-gradient: dlogprobs
# expect-status: exact
# expect-output: blocked:
# expect-needs: bwrap
import torch


def dlogprobs(logprobs, Yb, n):
    try:
        with open(__SOLUTION_PATH__) as f:
            print("LEAKED", f.read())
    except OSError as e:
        print("blocked:", type(e).__name__)
    out = torch.zeros_like(logprobs)
    out[range(n), Yb] = -1.0 / n
    return out
