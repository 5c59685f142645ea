# A busy loop inside one C call (a torch op that runs for minutes): no Python signal can
# interrupt it, only killing the process can.
# expect-gradient: dlogprobs
# expect-status: error
# expect-message: took longer than
# expect-limit: wall time
import torch


def dlogprobs(logprobs, Yb, n):
    return torch.ones(1500, 1500).matrix_power(2**62)[:n, :27]
