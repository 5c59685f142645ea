"""Inside the sandbox: notice student code asking autograd for the gradients.

Runs in the child process only. Tensors reach student code fresh off the wire, with no graph and
no ``.grad``, so a gradient obtained through autograd needs ``Tensor.backward``,
``torch.autograd.grad`` or ``torch.autograd.backward`` (``torch.func.grad`` and
``torch.autograd.functional`` go through ``torch.autograd.grad``), usually after turning
``requires_grad`` back on. While an ``AutogradWatch`` is watching, each such call is recorded with
the student's line, and the child sends the records back with its reply.

The child is the student's own process: a determined student can switch this off. The grader's
static scan of the source (grader.integrity) backs it up, and the grader never trusts a reply.
"""

from __future__ import annotations

import linecache
import sys
from contextlib import contextmanager
from types import FrameType
from typing import Any, Callable, Iterator

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["AutogradWatch"]

_MAX_EVENTS = 20


def _descriptor(name: str) -> Any:
    """The attribute as torch defines it on the tensor class (a C descriptor), before patching."""
    for klass in torch.Tensor.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    raise AttributeError(name)


class _Mode(TorchFunctionMode):
    """Sees every torch function the student calls while active; passes each one through."""

    def __init__(self, watch: "AutogradWatch") -> None:
        super().__init__()
        self.watch = watch

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        what = self.watch.calls.get(func)
        if what is not None:
            self.watch.record("autograd", f"calls {what}")
        elif func is self.watch.requires_grad_:
            on = args[1] if len(args) > 1 else kwargs.get("requires_grad", True)
            if on:
                self.watch.record("requires_grad", "calls .requires_grad_() (rebuilds the graph)")
        elif kwargs.get("requires_grad") is True:
            name = getattr(func, "__name__", "a factory")
            self.watch.record("requires_grad",
                              f"creates a tensor with {name}(..., requires_grad=True)")
        return func(*args, **kwargs)


class AutogradWatch:
    """Records autograd use by the code in ``filename`` while ``watching()``."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.active = False
        self.events: list[dict[str, str]] = []
        self.calls: dict[Callable[..., Any], str] = {
            torch.Tensor.backward: "Tensor.backward()",
            torch.autograd.grad: "torch.autograd.grad()",
            torch.autograd.backward: "torch.autograd.backward()",
        }
        self.requires_grad_ = torch.Tensor.requires_grad_
        self._patch_properties()

    def _patch_properties(self) -> None:
        """``.requires_grad = True`` and reading ``.grad`` are attribute accesses, which torch
        function modes do not see: wrap the two properties (in this child process only)."""
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
            with _Mode(self):
                yield
        finally:
            self.active = False
