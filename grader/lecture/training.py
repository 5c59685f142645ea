"""Exercise 4's training loop with the student's backward(); runs inside the sandbox."""

from __future__ import annotations

from typing import Any, Callable

import torch

from .catalog import EXERCISE4_INPUTS
from .model import PARAMETER_NAMES, chunked_forward, fused_forward
from .shapes import differs_by_leading_ones

__all__ = ["batch_tensors", "train_with_student_backward"]

_FUSED_NAMES = frozenset((*EXERCISE4_INPUTS, *PARAMETER_NAMES, "n", "Xb", "Yb"))


def batch_tensors(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {"Xbs": torch.stack([x for x, _ in batches]), "Ybs": torch.stack([y for _, y in batches])}


def train_with_student_backward(
    backward: Callable[..., Any], tensors: dict[str, torch.Tensor], *, steps: int, n: int,
    lr: float, signature: list[str], strict_shapes: bool = False,
) -> tuple[dict[str, torch.Tensor], list[float]]:
    """The lecture's loop: fused forward, the student's gradients, ``p.data += -lr * grad``.

    A gradient in its parameter's shape but for size-1 dimensions in front ((200,) for bngain's
    (1, 200), (1, 200) for b1's (200,)) updates the parameter in the parameter's shape: the
    lecture's update broadcasts the first, and would refuse the second in place, though its
    numbers are the gradient's. ``strict_shapes``: it is refused (TypeError) like any other
    shape."""
    params = {k: tensors[k].clone() for k in PARAMETER_NAMES}
    chunked = bool(set(signature) - _FUSED_NAMES)
    Xbs, Ybs = tensors["Xbs"], tensors["Ybs"]
    losses: list[float] = []
    with torch.no_grad():
        for i in range(steps):
            Xb, Yb = Xbs[i].clone(), Ybs[i].clone()
            fwd = fused_forward(params, Xb, Yb)
            losses.append(float(fwd["loss"]))
            if chunked:          # the loss, and every tensor the fused forward has, stay its own
                fwd = {**chunked_forward(params, Xb, Yb), **fwd}
            pool: dict[str, Any] = {**fwd, "n": n, "Xb": Xb, "Yb": Yb}
            pool.update({k: v.clone() for k, v in params.items()})
            grads = backward(**{p: pool[p] for p in signature})
            if not isinstance(grads, (list, tuple)) or len(grads) != len(PARAMETER_NAMES):
                raise TypeError(f"backward() returned {type(grads).__name__} at step {i}, "
                                f"expected a list of {len(PARAMETER_NAMES)} tensors")
            for name, grad in zip(PARAMETER_NAMES, grads):
                shape = params[name].shape
                if type(grad) is not torch.Tensor or (grad.shape != shape and (
                        strict_shapes or not differs_by_leading_ones(grad.shape, shape))):
                    raise TypeError(f"at step {i}, the gradient for {name} is not a tensor of "
                                    f"shape {tuple(shape)}")
                params[name] += -lr * grad.reshape(shape)
    return params, losses
