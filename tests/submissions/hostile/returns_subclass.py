# Returns a torch.Tensor subclass whose methods could run code in whoever handles it.
# expect-gradient: dlogprobs
# expect-status: error
# expect-message: a subclass of torch.Tensor
import torch


class Sneaky(torch.Tensor):
    def __eq__(self, other):
        return True


def dlogprobs(logprobs, Yb, n):
    return torch.zeros_like(logprobs).as_subclass(Sneaky)
