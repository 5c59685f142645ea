"""The entry points of the sandbox's processes, each run by a fresh interpreter
(grader.sandbox.launch.python_command): the worker (``main``: imports torch once, then serves
as the fork server, grader.sandbox.worker.forkserver) and, where there is no fork server (not
Linux), a child started directly (``serve_direct``)."""

from __future__ import annotations

import gc
import importlib
import json
import os
import signal
import socket
import sys

from .forkserver import ForkServer
from .processes import set_limits

__all__ = ["main", "serve_direct"]

# imported once here so that children need not read them from disk (after dropping to an
# unprivileged uid they may not be able to: a Python under /root, for example)
_PRELOAD = ("torch", "torch.nn.functional", "numpy", "grader.sandbox.worker.child",
            "grader.sandbox.worker.guard", "grader.sandbox.worker.errors",
            "grader.sandbox.worker.lecture_code", "grader.lecture.training",
            "grader.lecture.model", "math", "random", "ctypes", "socket", "encodings.idna",
            "pickle", "shutil", "subprocess", "threading", "signal", "resource", "json", "re",
            "itertools", "functools", "collections", "operator", "copy", "typing",
            "dataclasses", "statistics", "time", "string")


def main(fd: str, groups: str = "") -> None:
    """The worker's entry: ``fd`` is the main socket to the runner; ``groups``, where the
    runner made one, its folder for the children's memory cgroups ("<fd>:<version>",
    grader.sandbox.worker.memory_groups)."""
    # no cyclic collections while torch is imported: its objects all stay (frozen before the
    # first fork), so a collection would find nothing to free, and a batch waits for the worker
    gc.disable()
    for name in _PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    ForkServer(socket.socket(fileno=int(fd)), groups).serve()
    sys.stderr.flush()
    os._exit(0)     # every child is gone; tearing torch down would only make the runner wait


def serve_direct(fd: str, limits: str) -> None:
    """Where there is no fork server (not Linux): this fresh interpreter is the child itself,
    started in its working folder, serving the protocol on socket ``fd``."""
    spec = json.loads(limits)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)       # a too-large write fails with EFBIG
    set_limits(spec)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    from .child import serve, warm_up

    serve(int(fd), spec, warm_up())
