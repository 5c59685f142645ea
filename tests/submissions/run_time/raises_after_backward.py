# Calls loss.backward() at the top level, then raises before the exercise functions are defined:
# the file cannot be graded, and the autograd use is still flagged, at run time and in the
# source, and shown in check's output.
# expect-message: your file, run top to bottom, raised FileNotFoundError
# expect-integrity: raises_after_backward.py, line 11: calls .backward(): loss.backward()
import torch

logits = torch.randn(4, 27, requires_grad=True)
Yb = torch.randint(0, 27, (4,))
loss = torch.nn.functional.cross_entropy(logits, Yb)
loss.backward()
words = open("names.txt").read().splitlines()


def dlogprobs(logprobs, Yb, n):
    return logits.grad
