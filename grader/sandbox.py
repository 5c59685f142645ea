"""Runs student code in a separate, limited process: tensors in, tensors out.

The grader process never imports or executes a submission. A ``SandboxSession`` holds one child
process that has run the submission's file; ``call`` asks it to run one stub with the given inputs
and returns a ``CallOutcome``. A child that hangs, dies or answers garbage is killed and the
outcome says what happened; ``call`` then starts a fresh child for the next request.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import wire

__all__ = ["CallOutcome", "Limits", "SandboxSession", "open_session"]


@dataclass(frozen=True)
class Limits:
    """Resource limits for one submission's child; each reported by name when hit."""

    call_seconds: float = 20.0        # wall time for one request
    start_seconds: float = 60.0       # wall time to start the child and run the file
    cpu_seconds: int = 300            # CPU time of the child in all
    memory_bytes: int = 4 * 2**30     # address space of the child
    max_processes: int = 64
    output_bytes: int = 64 * 1024     # stdout+stderr kept
    wire: wire.WireLimits = field(default_factory=wire.WireLimits)


@dataclass(frozen=True)
class CallOutcome:
    status: str                       # "ok" | "missing" | "error" | "timeout"
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    traceback: str | None = None
    limit: str | None = None          # the limit that was hit, by name


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        extra = {"SIGSEGV": " (a segmentation fault)", "SIGKILL": " (killed: out of memory or a limit)",
                 "SIGXCPU": " (CPU time limit)"}.get(name, "")
        return f"was killed by {name}{extra}"
    return f"exited with code {code} (os._exit or a crash)"


def _child_path() -> list[str]:
    """Where the child finds this package and torch: absolute paths, never its own cwd."""
    package_root = str(Path(__file__).resolve().parent.parent)
    return [package_root] + [os.path.abspath(p) for p in sys.path if p]


def _set_limits(limits: Limits) -> None:  # runs in the child between fork and exec
    os.setsid()
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class _OutputSink(threading.Thread):
    """Drains the child's stderr, keeping the first ``cap`` bytes and counting the rest."""

    def __init__(self, fd: int, cap: int) -> None:
        super().__init__(daemon=True)
        self.fd, self.cap = fd, cap
        self.kept = bytearray()
        self.dropped = 0

    def run(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            room = self.cap - len(self.kept)
            self.kept += chunk[:max(room, 0)]
            self.dropped += max(len(chunk) - max(room, 0), 0)

    def text(self) -> str:
        text = self.kept.decode("utf-8", "replace")
        if self.dropped:
            text += f"\n... ({self.dropped:,} more bytes of output dropped: output limit)"
        return text


class SandboxSession:
    """One submission's child process: load the code once, then answer calls."""

    def __init__(self, code: str, filename: str, limits: Limits) -> None:
        self.code, self.filename, self.limits = code, filename, limits
        self.proc: subprocess.Popen[bytes] | None = None
        self.workdir: str | None = None
        self.sinks: list[_OutputSink] = []
        self.load_outcome: CallOutcome | None = None
        self.restarts = 0

    # -- process management -------------------------------------------------------------
    def _start(self) -> CallOutcome:
        self.workdir = tempfile.mkdtemp(prefix="bpg-child-")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.workdir,
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", "import sys; sys.path[:0] = " + repr(_child_path())
             + "; from grader._child import serve_on_stdio; serve_on_stdio()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=self.workdir, env=env, preexec_fn=lambda: _set_limits(self.limits),
            close_fds=True)
        assert self.proc.stderr is not None
        sink = _OutputSink(self.proc.stderr.fileno(), self.limits.output_bytes)
        sink.start()
        self.sinks.append(sink)
        return self._request({"op": "load", "code": self.code, "filename": self.filename},
                             None, self.limits.start_seconds)

    def _kill(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream:
                try:
                    stream.close()
                except OSError:
                    pass
        self.proc = None
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def _request(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor] | None,
                 seconds: float) -> CallOutcome:
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        try:
            self.proc.stdin.write(wire.encode_frame(meta, tensors))
            self.proc.stdin.flush()
            reply, out = wire.read_frame(self.proc.stdout.fileno(), limits=self.limits.wire,
                                         deadline=time.monotonic() + seconds)
        except TimeoutError:
            self._kill()
            return CallOutcome("timeout", message=f"took longer than {seconds:g} s (time limit)",
                               limit="wall time")
        except (EOFError, BrokenPipeError, ConnectionResetError):
            proc = self.proc
            code = proc.wait(timeout=5) if proc else None
            self._kill()
            return CallOutcome("error", message=f"the process running your code {_describe_exit(code)}",
                               limit="memory" if code == -signal.SIGKILL else None)
        except wire.FrameError as e:
            self._kill()
            return CallOutcome("error", message=f"sent back something that is not tensors: {e}")
        status = reply.get("status")
        if status not in ("ok", "missing", "error"):
            return CallOutcome("error", message=f"sent back an unknown status {str(status)[:40]!r}")
        message = reply.get("message")
        tb = reply.get("traceback")
        return CallOutcome(status, out, reply,
                           message=str(message) if message is not None else None,
                           traceback=str(tb) if tb is not None else None)

    # -- public ---------------------------------------------------------------------------
    def start(self) -> CallOutcome:
        self.load_outcome = self._start()
        return self.load_outcome

    def request(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor] | None = None,
                *, seconds: float | None = None) -> CallOutcome:
        """Send one request; restart the child first if an earlier request killed it."""
        if self.proc is None:
            self.restarts += 1
            outcome = self._start()
            if outcome.status != "ok":
                return outcome
        return self._request(meta, tensors, seconds or self.limits.call_seconds)

    def call(self, name: str, inputs: dict[str, Any], *, returns: str = "tensor",
             seconds: float | None = None) -> CallOutcome:
        scalars = {k: v for k, v in inputs.items() if not isinstance(v, torch.Tensor)}
        tensors = {k: v for k, v in inputs.items() if isinstance(v, torch.Tensor)}
        return self.request({"op": "call", "name": name, "scalars": scalars, "returns": returns},
                            tensors, seconds=seconds)

    def output(self) -> str:
        for sink in self.sinks:
            sink.join(timeout=1)
        return "".join(s.text() for s in self.sinks)

    def close(self) -> None:
        self._kill()

    def __enter__(self) -> "SandboxSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_session(code: str, *, filename: str, limits: Limits = Limits()) -> SandboxSession:
    """Start a child, run the submission's file in it, and return the session."""
    session = SandboxSession(code, filename, limits)
    session.start()
    return session
