# The unwatched original of torch.autograd.grad, from its __wrapped__ or its closure, used on an
# nn.Parameter (which needs no requires_grad call): the backward pass itself is seen at run time.
# expect-gradient: dlogprobs
# expect-status: integrity
# expect-message: computed with autograd
# expect-integrity: autograd
# expect-review: reaches around the grader's autograd watch
import torch


def _original(fn):
    if hasattr(fn, "__wrapped__"):
        return fn.__wrapped__
    for cell in fn.__closure__ or ():
        if callable(cell.cell_contents) and getattr(cell.cell_contents, "__name__", "") == "grad":
            return cell.cell_contents
    return fn


_grad = _original(torch.autograd.grad)


def dlogprobs(logprobs, Yb, n):
    p = torch.nn.Parameter(logprobs.detach().clone())
    loss = -(p[range(n), Yb] * 1.5).mean() / 1.5
    return _grad(loss, p)[0]
