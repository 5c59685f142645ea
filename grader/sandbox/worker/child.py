"""The sandboxed side: runs one submission's code and answers the grader's requests.

This module runs in the child process only (forked by grader.sandbox.worker.forkserver, limits set,
privileges dropped: grader.sandbox.worker.spare). It speaks frames (grader.sandbox.wire) on one
socket; whatever the student prints goes to a pipe the grader caps. Nothing here is trusted by the
grader: every reply is checked again on the other side. While student code runs, an
``AutogradWatch`` records any use of autograd, and each record goes to the grader at once, a
frame ``{"event": ...}`` of its own before the reply it belongs to.
"""

from __future__ import annotations

import json
import linecache
import os
import sys
from types import ModuleType
from typing import Any, Callable

import torch

from .. import wire
from .errors import exception_reply, student_traceback
from .guard import AutogradWatch
from .processes import forbid_new_processes

__all__ = ["serve"]

SANDBOX_ENV = "BACKPROP_GRADER_SANDBOX"   # set to "1" in every sandboxed child (selfcheck reads it)


class _ReturnError(Exception):
    """What a stub returned cannot be sent back; ``limit`` names the limit, if one was hit."""

    def __init__(self, message: str, limit: str | None = None) -> None:
        super().__init__(message)
        self.limit = limit


def _as_tensor(value: object, what: str, limits: dict[str, Any]) -> torch.Tensor:
    if type(value) is not torch.Tensor:
        if isinstance(value, torch.Tensor):
            raise _ReturnError(f"{what} is a {type(value).__name__} (a subclass of torch.Tensor); "
                               "return a plain torch.Tensor")
        raise _ReturnError(f"{what} is a {type(value).__name__}, expected a torch.Tensor")
    why = wire.unsendable_reason(value)     # before its size or a copy: those may fail on it
    if why is not None:
        raise _ReturnError(f"{what} is {why}")
    # torch's own methods (of its C base class, which no code can change): a method stored on
    # the tensor object, or put on torch.Tensor, is the student's code
    tensor = torch._C.TensorBase
    nbytes = tensor.numel(value) * tensor.element_size(value)   # an expanded view is cheap
    if nbytes > limits["max_tensor_bytes"]:
        raise _ReturnError(f"{what} has shape {tuple(value.shape)}: {nbytes:,} bytes, more than "
                           f"the {limits['max_tensor_bytes']:,} allowed (limit: returned tensor "
                           "size)", "returned tensor size")
    return tensor.clone(tensor.contiguous(tensor.to(tensor.detach(value), "cpu")))


class _Child:
    def __init__(self, fd: int, limits: dict[str, Any], watch: AutogradWatch) -> None:
        self.requests = wire.FrameReader(fd, from_grader=True)
        self.out = os.fdopen(os.dup(fd), "wb", buffering=0)
        self.limits = limits
        self.pid = os.getpid()
        self.module = ModuleType("__student__")
        self.filename = "<submission>"
        self.watch = watch
        self.index: int | None = None     # of the call being answered, in a "calls" request
        self.lecture: Any = None          # a LectureSession, made by the first lecture request
        # each record goes to the grader the moment it is made: what the student's code does
        # to the watch afterwards (clearing its list) cannot take it back
        watch.sink = self._send_record
        # what the grader's own code here uses once the student's has run: kept as it is now
        watch.protect(torch.Tensor, json, wire)
        self.streams = (sys.stdout, sys.stderr)   # flushed by the grader: never the student's
        watch.refuse_imports_from(os.getcwd(), "/tmp", "/dev/shm", "/var/tmp")

    def _send_record(self, event: dict[str, str]) -> None:
        if os.getpid() != self.pid:    # a copy the student forked: only the child itself sends
            return
        try:
            self.out.write(wire.encode_frame({"event": event}))
        except (OSError, ValueError):  # the student closed it: the reply will fail as well
            pass

    def reply(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor] | None = None) -> None:
        if self.index is not None:
            meta = {**meta, "index": self.index}
        if os.getpid() != self.pid:    # a copy the student forked: only the child itself answers
            os._exit(0)
        for stream in self.streams:
            try:
                stream.flush()
            except (OSError, ValueError):  # the student may have closed them
                pass
        self.watch.check_protected()
        self.watch.take()              # sent already, one by one (_send_record)
        try:
            frame = wire.encode_frame(meta, tensors)
        except Exception as e:  # noqa: BLE001  still this call's answer, in step with the calls
            message = str(e) if isinstance(e, wire.FrameError) else type(e).__name__
            error = {"status": "error", "message": f"what your code returned cannot be sent "
                                                   f"back: {message[:300]}"}
            if "index" in meta:
                error["index"] = meta["index"]
            frame = wire.encode_frame(error)
        self.out.write(frame)

    def op_load(self, meta: dict[str, Any]) -> None:
        self.filename = self.watch.filename = str(meta.get("filename", "<submission>"))
        code = str(meta["code"])
        linecache.cache[self.filename] = (len(code), None, code.splitlines(True), self.filename)
        self.module.__dict__["__file__"] = self.filename
        try:
            compiled = compile(code, self.filename, "exec")
            with self.watch.watching():
                exec(compiled, self.module.__dict__)  # noqa: S102
        except BaseException as exc:  # student code: anything may come out
            self._no_more_processes()
            with self.watch.watching():         # describing it runs its __str__
                reply = exception_reply(exc, self.filename, self.limits)
                if reply["status"] == "missing":
                    reply = {"status": "error",
                             "message": "raised NotImplementedError at top level",
                             "traceback": student_traceback(exc, self.filename)}
            reply["message"] = "your file, run top to bottom, " + reply["message"]
            self.reply(reply)
            return
        self._no_more_processes()
        self.reply({"status": "ok"})

    def _no_more_processes(self) -> None:
        """Once the file has run: no process or thread may start (a forked grandchild could
        compute with autograd unwatched and pipe the answer back), and the helpers the file
        started are killed where the session's uid is its own (processes.forbid_new_processes).
        An attempt is then that call's error, told by errors.limit_hit."""
        forbid_new_processes(own_uid=bool(self.limits.get("own_uid")))
        self.limits = {**self.limits, "loaded": True}

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
        # what was returned is read and copied, and an exception described, inside the watched
        # block: each may run the student's code (a tensor's own `detach`, an exception's
        # __str__, a list's __getitem__)
        with self.watch.watching():
            reply, out = self._answer(name, fn, kwargs, meta.get("returns"))
        self.reply(reply, out)

    def _answer(self, name: str, fn: Callable[..., Any], kwargs: dict[str, Any],
                returns: object) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
        try:
            value = fn(**kwargs)
        except BaseException as exc:  # student code
            return exception_reply(exc, self.filename, self.limits), None
        try:
            return {"status": "ok"}, self._returned_tensors(name, value, returns)
        except _ReturnError as e:
            return {"status": "error", "message": str(e), "limit": e.limit}, None
        except BaseException as exc:  # a hostile object's __len__, __iter__ or __getitem__
            return exception_reply(exc, self.filename, self.limits), None

    def _returned_tensors(self, name: str, value: object, returns: object
                          ) -> dict[str, torch.Tensor]:
        if returns != "list":
            return {"result": _as_tensor(value, f"what {name}() returned", self.limits)}
        if type(value) not in (list, tuple):
            raise _ReturnError(f"{name}() returned a {type(value).__name__}, expected a list of "
                               "tensors")
        if len(value) > self.limits["max_tensors"]:
            raise _ReturnError(f"{name}() returned {len(value)} items, more than the "
                               f"{self.limits['max_tensors']} allowed (limit: returned tensor "
                               "count)", "returned tensor count")
        return {str(i): _as_tensor(v, f"item {i} of what {name}() returned", self.limits)
                for i, v in enumerate(value)}

    def op_calls(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """Several calls, answered one by one; each gets tensors of its own (a stub that
        changes its input in place must not change the next call's): copies, but the tensor
        itself where it is the last use of it (fresh off the wire, nothing reads it after)."""
        calls = meta["calls"]
        last = {str(k): (i, str(p)) for i, call in enumerate(calls)
                for p, k in call["tensors"].items()}
        try:
            for self.index, call in enumerate(calls):
                inputs = {str(p): tensors[str(k)] if last[str(k)] == (self.index, str(p))
                          else tensors[str(k)].clone() for p, k in call["tensors"].items()}
                self.op_call(call, inputs)
        finally:
            self.index = None

    def op_train(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        from ...lecture.training import train_with_student_backward

        fn = self._function("backward")
        if fn is None:
            self.reply({"status": "missing", "message": "no function backward() in your file"})
            return
        try:
            # the whole loop watched, the grader's forward pass included: between two calls
            # of the student's backward(), a torch function it replaced runs in the grader's
            with self.watch.watching():
                params, losses = train_with_student_backward(
                    fn, tensors, steps=int(meta["steps"]), n=int(meta["n"]),
                    lr=float(meta["lr"]), signature=list(meta["signature"]),
                    strict_shapes=bool(meta.get("strict_shapes", False)))
        except BaseException as exc:  # student code
            self.reply(exception_reply(exc, self.filename, self.limits))
            return
        self.reply({"status": "ok", "losses": losses}, params)

    def serve(self) -> None:
        while True:
            try:
                # decoding a request uses torch and numpy functions the student's code may
                # have replaced during an earlier request: watched, like that code
                with self.watch.watching():
                    meta, tensors = self.requests.read()
            except EOFError:
                return
            op = meta.get("op")
            if op == "load":
                self.op_load(meta)
            elif op == "calls":
                self.op_calls(meta, tensors)
            elif op == "train":
                self.op_train(meta, tensors)
            elif op == "lecture":
                from .lecture_code import LectureSession, run_lecture_code

                if self.lecture is None:
                    self.lecture = LectureSession()

                # each cell's statements run under the cell's own file name
                self.watch.cells = frozenset(str(s.get("file")) for s in meta.get("steps", ())
                                             if isinstance(s, dict))
                with self.watch.watching():
                    reply = run_lecture_code(meta, tensors, self.filename, self.limits,
                                             self.lecture)
                self.reply(*reply)
            else:
                return


def warm_up() -> AutogradWatch:
    """Before any session: one thread for torch, the autograd watch installed, and the frame
    code run once, so that a session's first request pays none of it."""
    torch.set_num_threads(1)
    watch = AutogradWatch("<submission>")
    frame = wire.encode_frame({"op": "warm-up"}, {"x": torch.ones(2, 3)})
    with watch.watching():
        meta, tensors = wire.decode_whole_frame(frame)
        (tensors["x"] * 2).sum(1, keepdim=True)
    watch.take()
    return watch


def serve(fd: int, limits: dict[str, Any], watch: AutogradWatch) -> None:
    """Answer the grader's requests on socket ``fd`` until it closes; ``limits`` as the fork
    server set them (memory_bytes, max_processes, file_bytes, max_tensor_bytes, max_tensors)."""
    os.environ[SANDBOX_ENV] = "1"
    _Child(fd, limits, watch).serve()
