"""The sandboxed side: runs one submission's code and answers the grader's requests.

This module runs in the child process only. It speaks frames (grader.wire) on private file
descriptors; whatever the student prints goes to stderr, which the grader caps. Nothing here is
trusted by the grader: every reply is checked again on the other side.
"""

from __future__ import annotations

import linecache
import os
import sys
import traceback
from types import ModuleType
from typing import Any, Callable

import torch

from . import wire

_MAX_TRACEBACK = 4000


def _student_traceback(exc: BaseException, filename: str) -> str:
    """The student's own frames only, then the exception line."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    lines = traceback.format_list(frames) if frames else []
    lines += traceback.format_exception_only(type(exc), exc)
    text = "".join(lines)
    if len(text) > _MAX_TRACEBACK:
        text = text[:_MAX_TRACEBACK] + "\n... (traceback cut)"
    return text


def _exception_reply(exc: BaseException, filename: str) -> dict[str, Any]:
    if isinstance(exc, NotImplementedError):
        return {"status": "missing", "message": "raises NotImplementedError (not done yet)"}
    if isinstance(exc, SystemExit):
        message = f"called sys.exit({exc.code!r}); return a tensor instead"
    elif isinstance(exc, KeyboardInterrupt):
        message = "raised KeyboardInterrupt"
    else:
        message = f"raised {type(exc).__name__}: {str(exc)[:300]}"
    return {"status": "error", "message": message, "traceback": _student_traceback(exc, filename)}


def _as_tensor(value: object, what: str) -> torch.Tensor:
    if type(value) is not torch.Tensor:
        if isinstance(value, torch.Tensor):
            raise TypeError(f"{what} is a {type(value).__name__} (a subclass of torch.Tensor); "
                            "return a plain torch.Tensor")
        raise TypeError(f"{what} is a {type(value).__name__}, expected a torch.Tensor")
    return value.detach().to("cpu").contiguous().clone()


class _Child:
    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd = rfd
        self.out = os.fdopen(wfd, "wb", buffering=0)
        self.module = ModuleType("__student__")
        self.filename = "<submission>"

    def reply(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor] | None = None) -> None:
        try:
            frame = wire.encode_frame(meta, tensors)
        except wire.FrameError as e:
            frame = wire.encode_frame({"status": "error", "message": str(e)})
        self.out.write(frame)

    def op_load(self, meta: dict[str, Any]) -> None:
        self.filename = str(meta.get("filename", "<submission>"))
        code = str(meta["code"])
        linecache.cache[self.filename] = (len(code), None, code.splitlines(True), self.filename)
        self.module.__dict__["__file__"] = self.filename
        try:
            exec(compile(code, self.filename, "exec"), self.module.__dict__)  # noqa: S102
        except BaseException as exc:  # student code: anything may come out
            reply = _exception_reply(exc, self.filename)
            if reply["status"] == "missing":
                reply = {"status": "error", "message": "raised NotImplementedError at top level",
                         "traceback": _student_traceback(exc, self.filename)}
            reply["message"] = "your file, run top to bottom, " + reply["message"]
            self.reply(reply)
            return
        self.reply({"status": "ok"})

    def _function(self, name: str) -> Callable[..., Any] | None:
        fn = self.module.__dict__.get(name)
        return fn if callable(fn) else None

    def op_call(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        name = str(meta["name"])
        fn = self._function(name)
        if fn is None:
            self.reply({"status": "missing", "message": f"no function {name}() in your file"})
            return
        kwargs: dict[str, Any] = dict(meta.get("scalars", {}))
        kwargs.update(tensors)
        try:
            value = fn(**kwargs)
        except BaseException as exc:  # student code
            self.reply(_exception_reply(exc, self.filename))
            return
        try:
            if meta.get("returns") == "list":
                if not isinstance(value, (list, tuple)):
                    raise TypeError(f"{name}() returned a {type(value).__name__}, expected a "
                                    "list of tensors")
                out = {str(i): _as_tensor(v, f"item {i} of what {name}() returned")
                       for i, v in enumerate(value)}
            else:
                out = {"result": _as_tensor(value, f"what {name}() returned")}
        except TypeError as e:
            self.reply({"status": "error", "message": str(e)})
            return
        self.reply({"status": "ok"}, out)

    def op_train(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        from .training import train_with_student_backward

        fn = self._function("backward")
        if fn is None:
            self.reply({"status": "missing", "message": "no function backward() in your file"})
            return
        try:
            params, losses = train_with_student_backward(
                fn, tensors, steps=int(meta["steps"]), n=int(meta["n"]),
                lr=float(meta["lr"]), signature=list(meta["signature"]))
        except BaseException as exc:  # student code
            self.reply(_exception_reply(exc, self.filename))
            return
        self.reply({"status": "ok", "losses": losses}, params)

    def serve(self) -> None:
        while True:
            try:
                meta, tensors = wire.read_frame(self.rfd)
            except EOFError:
                return
            op = meta.get("op")
            if op == "load":
                self.op_load(meta)
            elif op == "call":
                self.op_call(meta, tensors)
            elif op == "train":
                self.op_train(meta, tensors)
            elif op == "lecture":
                from .lecture_style import run_lecture_code

                self.reply(*run_lecture_code(meta, tensors, self.filename))
            else:
                return


def serve_on_stdio() -> None:
    """Take the protocol off stdin/stdout; the student's prints go to stderr."""
    rfd, wfd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    torch.set_num_threads(1)
    _Child(rfd, wfd).serve()


if __name__ == "__main__":
    serve_on_stdio()
