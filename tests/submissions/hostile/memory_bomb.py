# Allocates (and touches) memory until something gives: the memory limit does, long before the
# 4 GiB at which it gives up (a bound, so that a limit that stopped holding fails the test
# instead of filling the machine's memory).
# expect-gradient: dlogprobs
# expect-status: error
# expect-message: ran out of memory
# expect-limit: memory
import torch


def dlogprobs(logprobs, Yb, n):
    hoard = []
    for _ in range(64):
        hoard.append(torch.ones(16 * 2**20))     # 64 MiB a time
    raise RuntimeError("4 GiB allocated: no memory limit stopped it")
