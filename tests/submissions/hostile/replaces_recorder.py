# Switches the watch off: its recorder, reached through the closure of a watched function, is
# replaced by a no-op, then autograd computes the gradient unseen. The closure in the source
# sends the file to review, and the watch notices the change.
# expect-gradient: dlogprobs
# expect-status: exact
# expect-integrity: tamper
# expect-review: reaches around the grader's autograd watch
import torch


def dlogprobs(logprobs, Yb, n):
    for cell in torch.Tensor.backward.__closure__ or ():
        if hasattr(cell.cell_contents, "record"):
            cell.cell_contents.record = lambda *args, **kwargs: None
    leaf = logprobs.detach().clone().requires_grad_(True)
    (-leaf[range(n), Yb].mean()).backward()
    return leaf.grad
