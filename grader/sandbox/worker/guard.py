"""Inside the sandbox: notice student code asking autograd for the gradients.

Set up in the sandbox's worker before it forks (grader.sandbox.worker.forkserver), or by the child
itself where there is no worker, so it runs in every child and never in the grader. Tensors reach
student code fresh off the wire, with no graph and no ``.grad``, so a gradient obtained through
autograd needs ``Tensor.backward``, ``torch.autograd.grad`` or ``torch.autograd.backward``
(``torch.func.grad`` and ``torch.autograd.functional`` go through ``torch.autograd.grad``), usually
after turning ``requires_grad`` back on. While an ``AutogradWatch`` is watching, each such call is
recorded with the student's line, and the child sends the records back with its reply.

The child is the student's own process: a determined student can switch this off. The grader's
static scan of the source (grader.judge.integrity) backs it up, and the grader never trusts a
reply.
"""

from __future__ import annotations

import functools
import linecache
import sys
from contextlib import contextmanager
from types import FrameType
from typing import Any, Callable, Iterator

import torch

__all__ = ["AutogradWatch"]

_MAX_EVENTS = 20


def _descriptor(name: str) -> Any:
    """The attribute as torch defines it on the tensor class (a C descriptor), before patching."""
    for klass in torch.Tensor.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    raise AttributeError(name)


_FACTORIES = ("tensor", "zeros", "ones", "empty", "full", "rand", "randn", "randint", "arange",
              "linspace", "eye", "zeros_like", "ones_like", "empty_like", "full_like",
              "rand_like", "randn_like")


class AutogradWatch:
    """Records autograd use by the code in ``filename`` while ``watching()``."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.active = False
        self.events: list[dict[str, str]] = []
        self._inside = 0         # autograd entry points calling one another record once
        self._patch_functions()
        self._patch_properties()

    def _patch_functions(self) -> None:
        """Wrap autograd's entry points, ``requires_grad_`` and the tensor factories (which
        take ``requires_grad=True``), in the sandbox's processes only. A wrapper costs nothing
        per tensor operation, where a torch function mode would slow down every one of them."""
        watch = self

        def entry_point(fn: Callable[..., Any], what: str) -> Callable[..., Any]:
            @functools.wraps(fn)
            def watched(*args: Any, **kwargs: Any) -> Any:
                if watch.active and not watch._inside:
                    watch.record("autograd", f"calls {what}")
                watch._inside += 1
                try:
                    return fn(*args, **kwargs)
                finally:
                    watch._inside -= 1
            return watched

        def factory(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
            @functools.wraps(fn)
            def watched(*args: Any, **kwargs: Any) -> Any:
                if watch.active and kwargs.get("requires_grad") is True:
                    watch.record("requires_grad",
                                 f"creates a tensor with {name}(..., requires_grad=True)")
                return fn(*args, **kwargs)
            return watched

        requires_grad_ = torch.Tensor.requires_grad_

        def watched_requires_grad_(t: torch.Tensor, requires_grad: bool = True) -> torch.Tensor:
            if watch.active and requires_grad:
                watch.record("requires_grad", "calls .requires_grad_() (rebuilds the graph)")
            return requires_grad_(t, requires_grad)

        setattr(torch.Tensor, "backward", entry_point(torch.Tensor.backward, "Tensor.backward()"))
        setattr(torch.Tensor, "requires_grad_", watched_requires_grad_)
        torch.autograd.grad = entry_point(torch.autograd.grad, "torch.autograd.grad()")
        torch.autograd.backward = entry_point(torch.autograd.backward,
                                              "torch.autograd.backward()")
        for name in _FACTORIES:
            setattr(torch, name, factory(getattr(torch, name), name))

    def _patch_properties(self) -> None:
        """``.requires_grad = True`` and reading ``.grad`` are attribute accesses, which the
        wrapped functions do not see: wrap the two properties (in the sandbox's processes
        only)."""
        requires_grad, grad = _descriptor("requires_grad"), _descriptor("grad")
        watch = self

        def get_requires_grad(t: torch.Tensor) -> bool:
            return requires_grad.__get__(t, type(t))

        def set_requires_grad(t: torch.Tensor, value: bool) -> None:
            if value and watch.active and watch._called_from_student():
                watch.record("requires_grad", "sets .requires_grad = True (rebuilds the graph)")
            requires_grad.__set__(t, value)

        def get_grad(t: torch.Tensor) -> torch.Tensor | None:
            if watch.active and watch._called_from_student():
                watch.record("grad", "reads .grad")
            return grad.__get__(t, type(t))

        def set_grad(t: torch.Tensor, value: torch.Tensor | None) -> None:
            grad.__set__(t, value)

        setattr(torch.Tensor, "requires_grad", property(get_requires_grad, set_requires_grad))
        setattr(torch.Tensor, "grad", property(get_grad, set_grad))

    def _called_from_student(self) -> bool:
        frame = sys._getframe(2)
        return frame.f_code.co_filename == self.filename

    def _student_line(self) -> str:
        frame: FrameType | None = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename != self.filename:
            frame = frame.f_back
        if frame is None:
            return "outside your file"
        source = linecache.getline(self.filename, frame.f_lineno).strip()
        where = f"{frame.f_code.co_name}()" if frame.f_code.co_name != "<module>" else "top level"
        return f"{where}, line {frame.f_lineno}" + (f": {source[:120]}" if source else "")

    def record(self, kind: str, what: str) -> None:
        event = {"kind": kind, "detail": f"{self._student_line()} {what}"}
        if event not in self.events and len(self.events) < _MAX_EVENTS:
            self.events.append(event)

    def take(self) -> list[dict[str, str]]:
        """The events since the last take()."""
        events, self.events = self.events, []
        return events

    @contextmanager
    def watching(self) -> Iterator[None]:
        """Watch the student code run inside this block."""
        self.active = True
        try:
            yield
        finally:
            self.active = False
