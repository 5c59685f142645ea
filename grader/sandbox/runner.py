"""The sandbox's worker: one long-lived process (grader.sandbox.worker.forkserver) that imported torch once and
forks a child per session, inside bubblewrap where it works (grader.sandbox.bubblewrap).

``SandboxRunner`` starts it, hands it spawn requests and gives uids out; ``attach()`` lends the
same worker to another process (a batch's grading workers share one). This module does not import
torch: a command can start the worker first and import torch while the worker starts.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from . import bubblewrap
from .worker.forkserver import lower_priority

if TYPE_CHECKING:
    from .limits import Limits

__all__ = ["SandboxRunner", "can_share_worker"]

_MIB = 2**20
_UID_BASE = 1_900_000_000        # far above any account: children run as base + slot
_UID_RANGE = 4096
_WORKER_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8",
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

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
                os.close(self.fd)           # the worker is gone: its pipe with it
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

    def lower(self) -> None:
        """The least CPU priority for the child and what it started, from now on (the worker
        does it: forkserver.lower_priority, which says what a child can undo)."""
        try:
            self.control.send(b'{"op": "lower"}')
        except OSError:
            pass                # the worker is gone: the child with it

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

    def lower(self) -> None:
        lower_priority(self.proc.pid, None)       # it leads a session of its own

    def exit_code(self, seconds: float) -> int | None:
        try:
            return self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return None


_Child = _ForkedChild | _DirectChild


def _stop(worker: _Worker, *, grace: float = 0.0) -> None:
    """Close our end of the worker's socket. A worker we started sees EOF, kills its children
    and exits; its process group is killed if it has not after ``grace`` seconds, and at once
    with no grace (a worker not wanted, or not ready). A worker another runner started (no
    ``proc``) only loses this connection: it is that runner's to stop."""
    worker.main.close()
    if worker.proc is not None:
        if grace:
            try:
                worker.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        if not grace or worker.proc.poll() is None:
            try:
                os.killpg(worker.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            worker.proc.wait()
    if worker.tail is not None:
        worker.tail.join(timeout=1)


def _descendants(root: int) -> Iterator[tuple[int, list[bytes]]]:
    """``root`` and the processes under it, nearest first, with their command lines (Linux
    /proc; a process gone meanwhile is left out)."""
    queue = [root]
    while queue:
        pid = queue.pop(0)
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            for task in os.listdir(f"/proc/{pid}/task"):
                queue += map(int, Path(f"/proc/{pid}/task/{task}/children").read_text().split())
        except OSError:
            continue
        yield pid, argv


def _is_worker(argv: list[bytes]) -> bool:
    """Whether a command line is a sandbox worker's (grader.sandbox.worker.forkserver's main)."""
    return argv[0] == sys.executable.encode() and any(
        b"from grader.sandbox.worker.forkserver import main" in a for a in argv)


@dataclass
class _Worker:
    """A worker process: on its way up, it answers "ready" on ``main`` once torch is imported;
    then the runner sends it requests there."""

    main: socket.socket
    use_bwrap: bool
    proc: subprocess.Popen[bytes] | None = None     # None: a worker another runner started
    tail: _Tail | None = None


def can_share_worker() -> bool:
    """Whether one worker can serve several grading processes: only where each child runs as a
    uid of its own (a grader running as root, with the whole uid range). Otherwise the worker
    cannot tell one student's stray processes from another's."""
    from .worker.forkserver import can_drop_uid     # torch-free, as this module

    return can_drop_uid()


class SandboxRunner:
    """The worker that forks the sandboxed children: create once, share, close at the end.

    ``isolation``: "auto" (bubblewrap where it works, else a warning and process isolation),
    "bwrap" (bubblewrap or an error) or "process". The worker starts on first use, or at
    ``launch()``, which returns at once: the worker imports torch while the caller goes on. Safe
    to use from several threads at once; each thread's sessions are independent. Another process
    (forked from this one) shares the worker through ``attach()``.
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
        self.worker_info: dict[str, Any] = {}   # its "ready" message: pid, threads, ...
        self.bwrap_problem: str | None = None   # why bubblewrap is not used, when it is not
        self._uids = _UidPool(uid_base)
        self._lock = threading.Lock()
        self._worker: _Worker | None = None     # ready
        self._launch: _Worker | None = None     # started, "ready" not read yet
        self._closed = False
        self._pid: int | None = os.getpid()     # None: the first process to use it (attach)
        # called (on the session's thread) when a child's stub call runs past its limits'
        # slow_seconds and the child is lowered to the least CPU priority: a batch then lets
        # another grading use the core it would hold
        self.on_slow_call: Callable[[], None] | None = None

    # -- worker lifetime ----------------------------------------------------------------------
    def start(self) -> "SandboxRunner":
        """Start the worker (if it is not running) and wait until it is ready."""
        with self._lock:
            self._ensure_started()
        return self

    def launch(self) -> "SandboxRunner":
        """Start the worker without waiting for it; the first spawn (or ``start()``) waits."""
        with self._lock:
            self._check_usable()
            if self.forkserver and self._worker is None and self._launch is None:
                launched = self._launch_worker(use_bwrap=self._wants_bwrap())
                if isinstance(launched, _Worker):
                    self._launch = launched     # a problem shows again at the first start
        return self

    def attach(self) -> "SandboxRunner":
        """A runner for a process forked after this call, sharing this runner's worker (launched
        now if it is not running): a connection and uids of its own. Closing it leaves the worker
        to this runner; should the worker die, it starts one of its own."""
        twin = SandboxRunner(isolation=self.requested, uid_base=self._uids.base,
                             tmp_bytes=self.tmp_bytes, start_seconds=self.start_seconds,
                             forkserver=self.forkserver)
        twin._pid = None
        if not self.forkserver:
            return twin
        self.launch()
        with self._lock:
            worker = self._worker or self._launch       # ready, or not yet
            if worker is None:
                return twin
            main, use_bwrap = worker.main, worker.use_bwrap
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                socket.send_fds(main, [b'{"op": "attach"}'], [theirs.fileno()])
            except OSError:
                ours.close()
                return twin
            finally:
                theirs.close()
        twin._launch = _Worker(ours, use_bwrap)
        return twin

    def detach(self) -> None:
        """Close this process's copy of an attached runner (after forking the process that uses
        it): the worker stays, for the other copy."""
        for worker in (self._worker, self._launch):
            if worker is not None:
                worker.main.close()
        self._worker = self._launch = None
        self._closed = True

    def _check_usable(self) -> None:
        if self._closed:
            raise RuntimeError("this SandboxRunner is closed")
        if self._pid is None:
            self._pid = os.getpid()
        if os.getpid() != self._pid:
            raise RuntimeError("a SandboxRunner cannot cross a fork: create one in each process "
                               "(or attach() one before the fork)")

    def _wants_bwrap(self) -> bool:
        return self.requested in ("auto", "bwrap") and self.isolation != "process"

    def _running(self) -> bool:
        if self._worker is None:
            return False
        proc = self._worker.proc
        return proc is None or proc.poll() is None   # an attached one: till it fails

    def _ensure_started(self) -> None:
        self._check_usable()
        if not self.forkserver:
            if self.isolation is None:
                self._fall_back("bubblewrap needs Linux and the fork server")
                self.isolation = "process"
            return
        if self._running():
            return
        self._stop_worker()
        launch, self._launch = self._launch, None
        if launch is not None and launch.proc is None:      # attached: the shared worker
            if self._start_worker(use_bwrap=launch.use_bwrap, launch=launch) is None:
                return
            launch = None                                   # gone: start one of our own
        if self._wants_bwrap():
            problem = self._start_worker(use_bwrap=True, launch=launch)
            if problem is None:
                return
            launch = None
            self._fall_back(problem)
        problem = self._start_worker(use_bwrap=False, launch=launch)
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
        package_dir = str(Path(__file__).resolve().parent.parent)
        paths = [str(Path(package_dir).parent)]
        paths += [p for p in (bubblewrap.library_paths() if use_bwrap else
                              [os.path.abspath(p) for p in sys.path if p]) if p not in paths]
        return [sys.executable, "-I", "-c",
                f"import sys; sys.path[:0] = {paths!r}; from grader.sandbox.worker.forkserver import {entry}; "
                f"{entry}(*sys.argv[1:])"]

    def _worker_command(self, use_bwrap: bool, env: dict[str, str]) -> list[str] | str:
        package_dir = str(Path(__file__).resolve().parent.parent)
        command = self._python_command(use_bwrap, "main")
        if not use_bwrap:
            return command
        bwrap = bubblewrap.find_bwrap()
        if bwrap is None:
            return "bubblewrap (bwrap) is not installed"
        return bubblewrap.sandbox_command(command, bwrap=bwrap, package_dir=package_dir,
                                          tmp_bytes=self.tmp_bytes, env=env)

    def _launch_worker(self, *, use_bwrap: bool) -> _Worker | str:
        """Start a worker process; the launch, or why it could not start."""
        env = dict(_WORKER_ENV)
        command = self._worker_command(use_bwrap, env)
        if isinstance(command, str):
            return command
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        err_r, err_w = os.pipe()
        try:
            proc = subprocess.Popen(command + [str(theirs.fileno())], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err_w,
                                    pass_fds=(theirs.fileno(),), env=env,
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
        return _Worker(ours, use_bwrap, proc, tail)

    def _start_worker(self, *, use_bwrap: bool, launch: _Worker | None = None) -> str | None:
        """Start the worker (or take ``launch``, if it is the same kind) and wait until it is
        ready; None when it is, else why not."""
        if launch is not None and launch.use_bwrap != use_bwrap:
            _stop(launch)
            launch = None
        if launch is None:
            launched = self._launch_worker(use_bwrap=use_bwrap)
            if isinstance(launched, str):
                return launched
            launch = launched
        launch.main.settimeout(self.start_seconds)
        try:
            ready = json.loads(launch.main.recv(4096) or b"{}")
        except (OSError, ValueError):
            ready = {}
        if ready.get("event") != "ready":
            _stop(launch)
            if launch.proc is None:
                return "the shared sandbox worker is gone"
            last = launch.tail.text().strip().splitlines() if launch.tail else []
            why = last[-1] if last else f"exit code {launch.proc.returncode}"
            return ("bubblewrap is installed but the sandbox did not start" if use_bwrap
                    else "the worker did not start") + f" ({why})"
        launch.main.settimeout(None)
        self._worker = launch
        self.isolation = "bwrap" if use_bwrap else "process"
        self.can_drop_uid = bool(ready.get("can_drop_uid"))
        self.worker_info = ready
        return None

    def _stop_worker(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            _stop(worker, grace=10)

    @property
    def worker_pid(self) -> int | None:
        """The worker's pid as this machine sees it (inside bwrap it is a grandchild); its
        /proc/PID/root shows the sandbox's file system, children's working folders included."""
        if self._worker is None or self._worker.proc is None:
            return None
        return next((pid for pid, argv in _descendants(self._worker.proc.pid)
                     if _is_worker(argv)), None)

    def worker_log(self) -> str:
        """The end of what the running worker wrote to stderr (its warnings and errors); empty
        once it is stopped."""
        tail = self._worker.tail if self._worker else None
        return tail.text() if tail else ""

    def close(self) -> None:
        with self._lock:
            self._closed = True
            launch, self._launch = self._launch, None
            if launch is not None:
                _stop(launch)
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
                    socket.send_fds(self._worker.main, [message], fds)  # type: ignore[union-attr]
                except OSError:           # the worker died since: start a new one, once
                    self._stop_worker()
                    self._ensure_started()
                    socket.send_fds(self._worker.main, [message], fds)  # type: ignore[union-attr]
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
