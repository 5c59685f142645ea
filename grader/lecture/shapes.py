"""When an answer's shape is the tensor's shape but for size-1 dimensions in front.

``dbnmeani = (-dbndiff).sum(0)`` gives (64,) for bnmeani's (1, 64): the same 64 numbers, which
line up with the tensor's wherever they meet, by broadcasting (the lecture's ``cmp`` passes
them, and ``p.data += -lr * grad`` updates a (1, 64) parameter with them). A size-1 dimension
anywhere else is another matter: (32,) for logit_maxes' (32, 1) broadcasts along the other axis.
Torch-free: the judge grades with it, and exercise 4's training loop (in the sandbox) updates
the parameters with it.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["differs_by_leading_ones"]


def differs_by_leading_ones(shape: Sequence[int], target: Sequence[int]) -> bool:
    """Whether ``shape`` and ``target`` differ, and only by size-1 dimensions in front of one of
    them: (64,) and (1, 64), (1, 1, 64) and (64,), (1, 27) and (27,); not (32,) and (32, 1)."""
    a, b = tuple(shape), tuple(target)
    if a == b:
        return False
    short, long = (a, b) if len(a) < len(b) else (b, a)
    extra = len(long) - len(short)
    return long[extra:] == short and all(d == 1 for d in long[:extra])
