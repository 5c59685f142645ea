# Prints 100 MB, then answers correctly: the output is capped, the grade is unaffected.
# expect-gradient: dlogprobs
# expect-status: exact
# expect-output: AAAAAAAA
# expect-note: limit: output bytes
import torch


def dlogprobs(logprobs, Yb, n):
    line = "A" * (2**20 - 1)
    for _ in range(100):
        print(line)
    out = torch.zeros_like(logprobs)
    out[range(n), Yb] = -1.0 / n
    return out
