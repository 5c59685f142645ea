"""Runs student code in a separate, limited process: tensors in, tensors out.

The grader process never imports or executes a submission. A ``SandboxRunner`` keeps one
long-lived worker (grader.forkserver) that imported torch once; the worker runs inside bubblewrap
where it works (grader.bubblewrap) and forks one child per ``SandboxSession``. A session's child
runs the submission's file, then answers one request per stub: ``call`` sends the inputs, the
child runs the stub and the reply (tensors only, checked by grader.wire) comes back before the
next inputs go out, so a stub never sees the gradient it is asked for. A child that hangs, dies,
breaks a limit or answers garbage is killed with everything it started, and the outcome names
what happened; the next request starts a fresh child.

``run_in_sandbox(code, inputs, limits, function=...)`` is the one-call form.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from . import bubblewrap, wire

__all__ = ["Call", "CallOutcome", "Limits", "SandboxRunner", "SandboxSession", "open_session",
           "run_in_sandbox"]

_MIB = 2**20
_UID_BASE = 1_900_000_000        # far above any account: children run as base + slot
_UID_RANGE = 4096
_INTEGRITY_KINDS = ("autograd", "requires_grad", "grad")
_WORKER_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8",
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Limits:
    """Resource limits for one submission's child; each reported by name when hit."""

    call_seconds: float = 20.0        # wall time: one request ("wall time")
    start_seconds: float = 60.0       # wall time: start the child and run the file ("wall time")
    total_seconds: float = 900.0      # wall time: the whole submission ("total time")
    cpu_seconds: int = 300            # CPU time of one child ("CPU time")
    memory_bytes: int = 2 * 2**30     # heap and private memory of the child, torch's own ~250 MiB
                                      # included ("memory")
    max_processes: int = 32           # processes and threads of the child's uid ("processes")
    output_bytes: int = 64 * 1024     # stdout+stderr kept ("output bytes")
    file_bytes: int = 16 * 2**20      # largest file the child may write ("file size")
    wire: wire.WireLimits = field(default_factory=wire.WireLimits)  # returned tensors

    def for_child(self) -> dict[str, Any]:
        return {"cpu_seconds": self.cpu_seconds, "memory_bytes": self.memory_bytes,
                "max_processes": self.max_processes, "file_bytes": self.file_bytes,
                "max_tensor_bytes": self.wire.max_tensor_bytes,
                "max_tensors": self.wire.max_tensors}


@dataclass(frozen=True)
class CallOutcome:
    status: str                       # "ok" | "missing" | "error" | "timeout"
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    traceback: str | None = None
    limit: str | None = None          # the limit that was hit, by name
    integrity: tuple[dict[str, str], ...] = ()   # autograd use seen while this request ran
    output: str = ""                  # what the code printed (run_in_sandbox only)


def _describe_exit(code: int | None, limits: Limits) -> tuple[str, str | None]:
    """(message, limit) for a child that ended with ``code`` (subprocess style)."""
    if code is None:
        return "stopped answering", None
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if name == "SIGXCPU":
            return (f"used more than {limits.cpu_seconds} s of CPU time (limit: CPU time)",
                    "CPU time")
        extra = {"SIGSEGV": " (a segmentation fault)", "SIGBUS": " (a bus error)",
                 "SIGKILL": " (the machine ran out of memory, or something killed it)",
                 "SIGABRT": " (an abort, e.g. a failed assertion in C code)"}.get(name, "")
        return f"was killed by {name}{extra}", None
    return f"exited with code {code} (os._exit, sys.exit in a thread, or a crash)", None


# -- the worker ------------------------------------------------------------------------------

_SOCKET_BUFFER = 4 * 2**20


class _UidPool:
    """Distinct uids for concurrent children, claimed with a lock file each so that two runners
    on one machine (two grading jobs, two test runs) never share one."""

    def __init__(self, base: int) -> None:
        self.base = base
        self.free: list[int] = []
        self.held: dict[int, int] = {}     # uid -> lock file descriptor
        self.folder = Path(tempfile.gettempdir()) / "backprop-grader-uids"

    def _open_folder(self) -> None:
        """The lock folder, made and checked: ours, a real folder, not a planted symlink."""
        try:
            self.folder.mkdir(mode=0o700)
        except FileExistsError:
            pass
        st = os.lstat(self.folder)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise RuntimeError(f"{self.folder} is not a private folder of this user: remove it")

    def take(self) -> int:
        """A uid for a new child: the longest-free one, so that the worker has had time to finish
        off the processes of its last session; a new one while fewer than two are free."""
        if len(self.free) >= 2 or (self.free and len(self.held) >= 64):
            return self.free.pop(0)
        self._open_folder()
        for uid in range(self.base, self.base + _UID_RANGE):
            if uid in self.held:
                continue
            fd = os.open(self.folder / str(uid), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.held[uid] = fd
            return uid
        raise RuntimeError(f"all {_UID_RANGE} sandbox uids from {self.base} are in use")

    def give_back(self, uid: int) -> None:
        if uid in self.held and uid not in self.free:
            self.free.append(uid)

    def close(self) -> None:
        for fd in self.held.values():
            os.close(fd)
        self.held.clear()
        self.free.clear()


def _roomy(*sockets: socket.socket) -> None:
    """Socket buffers that hold a whole batch of calls (a few hundred kB): the grader's send
    returns at once instead of waiting, chunk by chunk, for the child to read. The kernel caps
    the size (net.core.wmem_max); a smaller buffer only means more waits."""
    for s in sockets:
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            try:
                s.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER)
            except OSError:
                pass


class _Tail(threading.Thread):
    """Keeps the last ``cap`` bytes of the worker's stderr, for error messages."""

    def __init__(self, fd: int, cap: int = 16384) -> None:
        super().__init__(daemon=True)
        self.fd, self.buffer = fd, deque[bytes]()
        self.cap = cap

    def run(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.buffer.append(chunk)
            while sum(map(len, self.buffer)) > self.cap and len(self.buffer) > 1:
                self.buffer.popleft()

    def text(self) -> str:
        return b"".join(self.buffer).decode("utf-8", "replace")[-self.cap:]


class _ForkedChild:
    """A child of the fork server: stopped through the worker, which reports its exit too."""

    def __init__(self, runner: "SandboxRunner", control: socket.socket, proto: socket.socket,
                 output: int, uid: int | None) -> None:
        self.runner, self.control, self.proto, self.output, self.uid = (
            runner, control, proto, output, uid)

    def stop(self, *, wait: bool) -> tuple[int | None, int]:
        """Stop the child and all it started: (its exit code if it ended by itself, how many
        processes were killed). ``wait``: until every one is gone and counted (after a failure);
        otherwise the worker finishes in the background and the count is 0."""
        code: int | None = None
        processes = 0
        try:
            self.control.settimeout(15)
            self.control.send(json.dumps({"op": "stop", "wait": wait}).encode())
            while True:
                message = json.loads(self.control.recv(4096) or b"{}")
                if message.get("event") == "exited" and code is None:
                    code = message.get("code")
                if message.get("event") in ("stopped", None):
                    processes = int(message.get("processes") or 0)
                    break
        except (OSError, ValueError):
            pass
        finally:
            self.control.close()
            self.proto.close()
            if self.uid is not None:
                self.runner.release_uid(self.uid)
        return code, processes

    def exit_code(self, seconds: float) -> int | None:
        """Wait briefly for the worker to report that the child ended."""
        self.control.settimeout(seconds)
        try:
            while True:
                message = json.loads(self.control.recv(4096) or b"{}")
                if message.get("event") == "exited":
                    return message.get("code")
                if not message:
                    return None
        except (OSError, ValueError):
            return None


class _DirectChild:
    """A child that is a fresh interpreter of its own, where there is no fork server (not
    Linux): a torch import per submission, the same protocol, the limits the platform has."""

    uid = None

    def __init__(self, proc: subprocess.Popen[bytes], proto: socket.socket, output: int,
                 workdir: str) -> None:
        self.proc, self.proto, self.output, self.workdir = proc, proto, output, workdir

    def stop(self, *, wait: bool) -> tuple[int | None, int]:
        code = self.proc.poll()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        self.proto.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
        return code, 1

    def exit_code(self, seconds: float) -> int | None:
        try:
            return self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return None


_Child = _ForkedChild | _DirectChild


class SandboxRunner:
    """The worker that forks the sandboxed children: create once, share, close at the end.

    ``isolation``: "auto" (bubblewrap where it works, else a warning and process isolation),
    "bwrap" (bubblewrap or an error) or "process". The worker starts on first use. Safe to use
    from several threads at once; each thread's sessions are independent.
    """

    def __init__(self, *, isolation: str = "auto", uid_base: int = _UID_BASE,
                 tmp_bytes: int = 512 * _MIB, start_seconds: float = 120.0,
                 forkserver: bool | None = None) -> None:
        if isolation not in ("auto", "bwrap", "process"):
            raise ValueError(f"isolation must be 'auto', 'bwrap' or 'process', not {isolation!r}")
        self.requested = isolation
        # the fork server needs Linux (prctl, /proc); elsewhere each child is a fresh interpreter
        self.forkserver = sys.platform.startswith("linux") if forkserver is None else forkserver
        self.isolation: str | None = None       # what runs: "bwrap" or "process", once started
        self.tmp_bytes, self.start_seconds = tmp_bytes, start_seconds
        self.can_drop_uid = False
        self.worker_data_bytes = 0              # the worker's own heap: torch imported
        self.worker_info: dict[str, Any] = {}   # its "ready" message: pid, threads, ...
        self.bwrap_problem: str | None = None   # why bubblewrap is not used, when it is not
        self._uids = _UidPool(uid_base)
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._main: socket.socket | None = None
        self._tail: _Tail | None = None
        self._closed = False
        self._pid = os.getpid()

    # -- worker lifetime ----------------------------------------------------------------------
    def start(self) -> "SandboxRunner":
        with self._lock:
            self._ensure_started()
        return self

    def _ensure_started(self) -> None:
        if self._closed:
            raise RuntimeError("this SandboxRunner is closed")
        if os.getpid() != self._pid:
            raise RuntimeError("a SandboxRunner cannot cross a fork: create one in each process")
        if not self.forkserver:
            if self.isolation is None:
                self._fall_back("bubblewrap needs Linux and the fork server")
                self.isolation = "process"
            return
        if self._proc is not None and self._proc.poll() is None:
            return
        self._stop_worker()
        if self.requested in ("auto", "bwrap") and self.isolation != "process":
            problem = self._start_worker(use_bwrap=True)
            if problem is None:
                return
            self._fall_back(problem)
        problem = self._start_worker(use_bwrap=False)
        if problem is not None:
            raise RuntimeError(f"the sandbox worker did not start: {problem}")

    def _fall_back(self, problem: str) -> None:
        """No bubblewrap: an error if it was asked for, else one warning."""
        self.bwrap_problem = problem
        if self.requested == "bwrap":
            raise RuntimeError(f"bubblewrap sandbox unavailable: {problem}")
        if self.requested == "auto":
            warnings.warn(f"backprop-grader: {problem}; falling back to process isolation "
                          "(student code can read any file this user can read; see the README, "
                          "'Security model')", RuntimeWarning, stacklevel=5)

    def _python_command(self, use_bwrap: bool, entry: str) -> list[str]:
        package_dir = str(Path(__file__).resolve().parent)
        paths = [str(Path(package_dir).parent)]
        paths += [p for p in (bubblewrap.library_paths() if use_bwrap else
                              [os.path.abspath(p) for p in sys.path if p]) if p not in paths]
        return [sys.executable, "-I", "-c",
                f"import sys; sys.path[:0] = {paths!r}; from grader.forkserver import {entry}; "
                f"{entry}(*sys.argv[1:])"]

    def _worker_command(self, use_bwrap: bool) -> list[str] | str:
        package_dir = str(Path(__file__).resolve().parent)
        command = self._python_command(use_bwrap, "main")
        if not use_bwrap:
            return command
        bwrap = bubblewrap.find_bwrap()
        if bwrap is None:
            return "bubblewrap (bwrap) is not installed"
        return bubblewrap.sandbox_command(command, bwrap=bwrap, package_dir=package_dir,
                                          tmp_bytes=self.tmp_bytes, env=_WORKER_ENV)

    def _start_worker(self, *, use_bwrap: bool) -> str | None:
        """Start the worker; None when it is ready, else why not."""
        command = self._worker_command(use_bwrap)
        if isinstance(command, str):
            return command
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        err_r, err_w = os.pipe()
        try:
            proc = subprocess.Popen(command + [str(theirs.fileno())], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err_w,
                                    pass_fds=(theirs.fileno(),), env=_WORKER_ENV,
                                    cwd=tempfile.gettempdir(), start_new_session=True)
        except OSError as e:
            ours.close()
            os.close(err_r)
            return f"cannot start {command[0]}: {e.strerror}"
        finally:
            theirs.close()
            os.close(err_w)
        tail = _Tail(err_r)
        tail.start()
        ours.settimeout(self.start_seconds)
        try:
            ready = json.loads(ours.recv(4096) or b"{}")
        except (OSError, ValueError):
            ready = {}
        if ready.get("event") != "ready":
            ours.close()
            proc.kill()
            proc.wait()
            tail.join(timeout=1)
            last = tail.text().strip().splitlines()
            why = last[-1] if last else f"exit code {proc.returncode}"
            return ("bubblewrap is installed but the sandbox did not start" if use_bwrap
                    else "the worker did not start") + f" ({why})"
        ours.settimeout(None)
        self._proc, self._main, self._tail = proc, ours, tail
        self.isolation = "bwrap" if use_bwrap else "process"
        self.can_drop_uid = bool(ready.get("can_drop_uid"))
        self.worker_data_bytes = int(ready.get("data_bytes", 0))
        self.worker_info = ready
        return None

    def _stop_worker(self) -> None:
        if self._main is not None:
            self._main.close()       # the worker sees EOF, kills its children and exits
            self._main = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
            self._proc = None

    @property
    def worker_pid(self) -> int | None:
        """The worker's pid as this machine sees it (inside bwrap it is a grandchild); its
        /proc/PID/root shows the sandbox's file system, children's working folders included."""
        if self._proc is None:
            return None
        queue = [self._proc.pid]
        while queue:
            pid = queue.pop(0)
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if argv[0] == sys.executable.encode() and any(
                        b"grader.forkserver" in a for a in argv):
                    return pid
                for task in os.listdir(f"/proc/{pid}/task"):
                    queue += map(int, Path(f"/proc/{pid}/task/{task}/children").read_text().split())
            except OSError:
                continue
        return None

    def worker_log(self) -> str:
        """The end of what the worker wrote to stderr (its warnings and errors)."""
        return self._tail.text() if self._tail else ""

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._stop_worker()
            self._uids.close()

    def __enter__(self) -> "SandboxRunner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- children -----------------------------------------------------------------------------
    def spawn(self, limits: Limits, *, seconds: float = 30.0) -> _Child | str:
        """Fork a child with ``limits``; the child, or why it could not start."""
        if not self.forkserver:
            with self._lock:
                self._ensure_started()
            return self._spawn_direct(limits)
        control, control_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        proto, proto_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        _roomy(proto, proto_theirs)
        out_r, out_w = os.pipe()
        uid = None
        try:
            with self._lock:
                self._ensure_started()
                uid = self._uids.take() if self.can_drop_uid else None
                message = json.dumps({"op": "spawn", "uid": uid,
                                      "limits": limits.for_child()}).encode()
                fds = [control_theirs.fileno(), proto_theirs.fileno(), out_w]
                try:
                    socket.send_fds(self._main, [message], fds)   # type: ignore[arg-type]
                except OSError:           # the worker died since: start a new one, once
                    self._ensure_started()
                    socket.send_fds(self._main, [message], fds)   # type: ignore[arg-type]
        except BaseException:
            for s in (control, proto):
                s.close()
            os.close(out_r)
            if uid is not None:
                self.release_uid(uid)
            raise
        finally:
            control_theirs.close()
            proto_theirs.close()
            os.close(out_w)
        control.settimeout(seconds)
        try:
            reply = json.loads(control.recv(4096) or b"{}")
        except (OSError, ValueError):
            reply = {}
        if reply.get("event") != "started":
            for s in (control, proto):
                s.close()
            os.close(out_r)
            if uid is not None:
                self.release_uid(uid)
            return str(reply.get("message") or "the sandbox worker did not answer"
                       + (f": {self.worker_log().strip()[-300:]}" if self.worker_log() else ""))
        return _ForkedChild(self, control, proto, out_r, uid)

    def _spawn_direct(self, limits: Limits) -> _Child | str:
        proto, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        _roomy(proto, theirs)
        out_r, out_w = os.pipe()
        workdir = tempfile.mkdtemp(prefix="bpg-")
        command = self._python_command(False, "serve_direct")
        try:
            proc = subprocess.Popen(
                command + [str(theirs.fileno()), json.dumps(limits.for_child())],
                stdin=subprocess.DEVNULL, stdout=out_w, stderr=out_w, pass_fds=(theirs.fileno(),),
                cwd=workdir, env={**_WORKER_ENV, "HOME": workdir, "TMPDIR": workdir},
                start_new_session=True)
        except OSError as e:
            proto.close()
            os.close(out_r)
            shutil.rmtree(workdir, ignore_errors=True)
            return f"cannot start {sys.executable}: {e.strerror}"
        finally:
            theirs.close()
            os.close(out_w)
        return _DirectChild(proc, proto, out_r, workdir)

    @property
    def uids(self) -> tuple[int, ...]:
        """The uids this runner's children run as (held until close; none without root)."""
        return tuple(self._uids.held)

    def release_uid(self, uid: int) -> None:
        with self._lock:
            self._uids.give_back(uid)


# -- one submission ------------------------------------------------------------------------------

class _OutputSink(threading.Thread):
    """Drains the child's stdout+stderr, keeping the first ``cap`` bytes and counting the rest.

    ``finish()`` ends it without waiting for the pipe to close: a stopped child has written
    (and flushed, before its last reply) everything it will, and its exit may take a while."""

    def __init__(self, fd: int, cap: int) -> None:
        super().__init__(daemon=True)
        self.fd, self.cap = fd, cap
        self.kept = bytearray()
        self.dropped = 0
        self._wake_r, self._wake_w = os.pipe()

    def _take(self, chunk: bytes) -> None:
        room = max(self.cap - len(self.kept), 0)
        self.kept += chunk[:room]
        self.dropped += max(len(chunk) - room, 0)

    def run(self) -> None:
        try:
            while True:
                ready, _, _ = select.select([self.fd, self._wake_r], [], [])
                if self.fd in ready:
                    chunk = os.read(self.fd, 1 << 20)
                    if not chunk:
                        return
                    self._take(chunk)
                elif self._wake_r in ready:       # finish(): take what is there, then stop
                    os.set_blocking(self.fd, False)
                    while chunk := os.read(self.fd, 1 << 20):
                        self._take(chunk)
                    return
        except OSError:     # BlockingIOError included: nothing more to take
            return
        finally:
            for fd in (self.fd, self._wake_r, self._wake_w):
                os.close(fd)

    def finish(self) -> None:
        if self.is_alive():
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass
        self.join(timeout=2.0)

    def text(self) -> str:
        text = self.kept.decode("utf-8", "replace")
        if self.dropped:
            text += f"\n... ({self.dropped:,} more bytes of output dropped (limit: output bytes))"
        return text


def _integrity_events(meta: dict[str, Any]) -> tuple[dict[str, str], ...]:
    """The child's integrity records, checked: the child is the student's process."""
    raw = meta.get("integrity")
    if not isinstance(raw, list):
        return ()
    events = []
    for item in raw[:20]:
        if isinstance(item, dict) and item.get("kind") in _INTEGRITY_KINDS \
                and isinstance(item.get("detail"), str):
            events.append({"kind": str(item["kind"]), "detail": item["detail"][:300]})
    return tuple(events)


@dataclass(frozen=True)
class Call:
    """One call of a student's function: ``name(**inputs)``; ``returns`` "tensor" or "list";
    ``group`` ties calls of one function together (see SandboxSession.call_many)."""

    name: str
    inputs: dict[str, Any]
    returns: str = "tensor"
    group: str | None = None


def _calls_frame(calls: Sequence[Call]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The request for several calls: each tensor once (by identity), named by position."""
    tensors: dict[str, torch.Tensor] = {}
    keys: dict[int, str] = {}
    described = []
    for call in calls:
        refs = {}
        for param, value in call.inputs.items():
            if isinstance(value, torch.Tensor):
                key = keys.get(id(value))
                if key is None:
                    key = keys[id(value)] = str(len(tensors))
                    tensors[key] = value
                refs[param] = key
        described.append({"name": call.name, "returns": call.returns, "tensors": refs,
                          "scalars": {k: v for k, v in call.inputs.items()
                                      if not isinstance(v, torch.Tensor)}})
    return {"op": "calls", "calls": described}, tensors


class SandboxSession:
    """One submission's child: load the code once, then answer calls.

    Uses ``runner``'s worker, or starts (and at ``close()`` stops) a runner of its own.
    """

    def __init__(self, code: str, filename: str, limits: Limits, *,
                 runner: SandboxRunner | None = None) -> None:
        self.code, self.filename, self.limits = code, filename, limits
        self._own_runner = runner is None
        self.runner = runner if runner is not None else SandboxRunner()
        self.child: _Child | None = None
        self.sinks: list[_OutputSink] = []
        self.load_outcome: CallOutcome | None = None
        self.restarts = 0
        self.integrity: list[dict[str, str]] = []   # every integrity record, load included
        self.load_integrity: tuple[dict[str, str], ...] = ()
        self.processes_killed = 0                   # beyond the child itself, over all restarts
        self._deadline: float | None = None

    @property
    def uid(self) -> int | None:
        return self.child.uid if self.child else None

    # -- process management -------------------------------------------------------------------
    def _start(self) -> CallOutcome:
        if self._deadline is None:
            self._deadline = time.monotonic() + self.limits.total_seconds
        try:
            spawned = self.runner.spawn(self.limits)
        except RuntimeError as e:       # no sandbox at all (e.g. isolation="bwrap" without it)
            spawned = str(e)
        if isinstance(spawned, str):
            return CallOutcome("error", message=f"the sandbox could not start: {spawned}")
        self.child = spawned
        kept = sum(len(s.kept) for s in self.sinks)
        sink = _OutputSink(spawned.output, max(self.limits.output_bytes - kept, 0))
        sink.start()
        self.sinks.append(sink)
        outcome = self._request({"op": "load", "code": self.code, "filename": self.filename},
                                None, self.limits.start_seconds)
        self.load_integrity = outcome.integrity
        return outcome

    def _stop(self, *, wait: bool = False) -> tuple[int | None, int]:
        """Stop the child and all it started: (its exit code if it ended by itself, how many
        processes were killed; 0 unless ``wait``)."""
        child, self.child = self.child, None
        if child is None:
            return None, 0
        code, processes = child.stop(wait=wait)
        self.processes_killed += max(processes - 1, 0)
        return code, processes

    def _send(self, frame: bytes, deadline: float) -> None:
        assert self.child is not None
        self.child.proto.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            self.child.proto.sendall(frame)
        finally:
            self.child.proto.settimeout(None)

    def _request(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor] | None,
                 seconds: float) -> CallOutcome:
        deadline = time.monotonic() + seconds
        failed = self._send_request(meta, tensors, seconds, deadline)
        return failed if failed is not None else self._reply(seconds, deadline)

    def _send_request(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor] | None,
                      seconds: float, deadline: float) -> CallOutcome | None:
        """Send one frame; None when it went, else the outcome (the child hung or died)."""
        assert self.child is not None
        try:
            self._send(wire.encode_frame(meta, tensors), deadline)
        except TimeoutError:
            return self._timed_out(seconds)
        except (ConnectionError, BrokenPipeError):
            return self._died()
        return None

    def _timed_out(self, seconds: float) -> CallOutcome:
        _, processes = self._stop(wait=True)
        if processes > self.limits.max_processes // 2:
            return CallOutcome("timeout", limit="processes", message=(
                f"started {processes} processes (at most {self.limits.max_processes} are "
                f"allowed) and took longer than {seconds:g} s (limit: processes)"))
        return CallOutcome("timeout", message=f"took longer than {seconds:g} s (limit: wall "
                                              "time)", limit="wall time")

    def _died(self) -> CallOutcome:
        assert self.child is not None
        code = self.child.exit_code(2.0)
        self._stop(wait=True)
        message, limit = _describe_exit(code, self.limits)
        return CallOutcome("error", message=f"the process running your code {message}",
                           limit=limit)

    def _reply(self, seconds: float, deadline: float, *, index: int | None = None
               ) -> CallOutcome:
        """Read one reply (the ``index``-th of a batch of calls, if given)."""
        assert self.child is not None
        try:
            reply, out = wire.read_frame(self.child.proto.fileno(), limits=self.limits.wire,
                                         deadline=deadline)
        except TimeoutError:
            return self._timed_out(seconds)
        except (EOFError, ConnectionError, BrokenPipeError):
            return self._died()
        except wire.FrameError as e:
            self._stop(wait=True)
            return CallOutcome("error", message=f"sent back something that is not tensors: {e}",
                               limit=e.limit)
        if index is not None and reply.get("index") != index:
            self._stop(wait=True)        # out of step with the calls: start afresh
            return CallOutcome("error", message="sent back more or fewer answers than calls")
        integrity = _integrity_events(reply)
        self.integrity += [e for e in integrity if e not in self.integrity]
        status = reply.get("status")
        if status not in ("ok", "missing", "error"):
            return CallOutcome("error", message=f"sent back an unknown status {str(status)[:40]!r}",
                               integrity=integrity)
        message = reply.get("message")
        tb = reply.get("traceback")
        limit = reply.get("limit")
        return CallOutcome(status, out, reply,
                           message=str(message)[:2000] if message is not None else None,
                           traceback=str(tb)[:8000] if tb is not None else None,
                           limit=str(limit)[:40] if limit else None, integrity=integrity)

    # -- public -------------------------------------------------------------------------------
    def start(self) -> CallOutcome:
        self.load_outcome = self._start()
        return self.load_outcome

    def _ready(self) -> CallOutcome | None:
        """None when a child is there to take a request (restarted if an earlier request killed
        it); else the outcome every request gets now."""
        if self._deadline is not None and time.monotonic() > self._deadline:
            self._stop()
            return CallOutcome("timeout", limit="total time", message=(
                f"the whole submission took longer than {self.limits.total_seconds:g} s "
                "(limit: total time)"))
        if self.child is None:
            self.restarts += 1
            outcome = self._start()
            if outcome.status != "ok":
                return outcome
        return None

    def request(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor] | None = None,
                *, seconds: float | None = None) -> CallOutcome:
        """Send one request; restart the child first if an earlier request killed it."""
        problem = self._ready()
        if problem is not None:
            return problem
        return self._request(meta, tensors, seconds or self.limits.call_seconds)

    def call(self, name: str, inputs: dict[str, Any], *, returns: str = "tensor",
             seconds: float | None = None) -> CallOutcome:
        return self.call_many([Call(name, inputs, returns)], seconds=seconds)[0]

    def call_many(self, calls: Sequence[Call], *, seconds: float | None = None
                  ) -> list[CallOutcome]:
        """Several calls in one request; the child answers each in turn, within ``seconds``
        (the call limit) of the answer before. The same outcomes as calling them one by one,
        with one round trip: a call that kills the child or runs out of time ends the request,
        and the calls after it go to a restarted child. A call after one of the same ``group``
        that ended the child (out of time, crashed, killed at a limit) gets that outcome without
        running: it would only wait, or crash, again.
        Each tensor is sent once per request, however many calls take it; every call gets
        copies of its own."""
        seconds = seconds or self.limits.call_seconds
        outcomes: list[CallOutcome] = []
        ended: dict[str, CallOutcome] = {}       # group -> the outcome that ended the child
        while len(outcomes) < len(calls):
            rest = []
            for call in calls[len(outcomes):]:
                if call.group is not None and call.group in ended:
                    if rest:
                        break
                    outcomes.append(ended[call.group])
                    continue
                rest.append(call)
            if not rest:
                continue
            problem = self._ready()
            if problem is not None:                 # every call left gets it
                outcomes += [problem] * (len(calls) - len(outcomes))
                break
            deadline = time.monotonic() + seconds
            failed = self._send_request(*_calls_frame(rest), seconds, deadline)
            if failed is not None:
                outcomes.append(failed)
                continue
            for i, call in enumerate(rest):
                outcome = self._reply(seconds, deadline, index=i)
                outcomes.append(outcome)
                if self.child is None:          # killed, crashed or out of step: restart
                    if call.group is not None:
                        ended[call.group] = outcome
                    break
                deadline = time.monotonic() + seconds
        return outcomes

    def output(self) -> str:
        """What the code printed so far (all of it once the session is closed)."""
        for sink in self.sinks:
            if self.child is None:
                sink.finish()
            else:
                sink.join(timeout=0.05)
        return "".join(s.text() for s in self.sinks)

    @property
    def output_dropped(self) -> int:
        return sum(s.dropped for s in self.sinks)

    def close(self) -> None:
        self._stop()
        if self._own_runner:
            self.runner.close()

    def __enter__(self) -> "SandboxSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_session(code: str, *, filename: str, limits: Limits = Limits(),
                 runner: SandboxRunner | None = None) -> SandboxSession:
    """Start a child, run the submission's file in it, and return the session."""
    session = SandboxSession(code, filename, limits, runner=runner)
    session.start()
    return session


def run_in_sandbox(code: str, inputs: Mapping[str, Any], limits: Limits = Limits(), *,
                   function: str, filename: str = "<submission>", returns: str = "tensor",
                   runner: SandboxRunner | None = None) -> CallOutcome:
    """Run ``code`` in a fresh sandboxed child, call ``function(**inputs)`` there, and return
    the outcome with what the code printed (``output``) and any integrity records."""
    with SandboxSession(code, filename, limits, runner=runner) as session:
        outcome = session.start()
        if outcome.status == "ok":
            outcome = session.call(function, dict(inputs), returns=returns)
        integrity = tuple(session.integrity)
    return replace(outcome, output=session.output(), integrity=integrity)
