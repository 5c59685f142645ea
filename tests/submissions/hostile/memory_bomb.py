# Allocates (and touches) memory until something gives: the memory limit does.
# expect-gradient: dlogprobs
# expect-status: error
# expect-message: ran out of memory
# expect-limit: memory
import torch


def dlogprobs(logprobs, Yb, n):
    hoard = []
    while True:
        hoard.append(torch.ones(16 * 2**20))     # 64 MiB a time
