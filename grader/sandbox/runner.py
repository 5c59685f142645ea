"""The sandbox's worker: one long-lived process (grader.sandbox.worker.forkserver) that imported
torch once and forks a child per session, inside bubblewrap where it works
(grader.sandbox.bubblewrap).

``SandboxRunner`` starts it (grader.sandbox.launch), hands it spawn requests and gives uids out
(grader.sandbox.uids); ``attach()`` lends the same worker to another process (a batch's grading
workers share one). This module does not import torch: a command can start the worker first and
import torch while the worker starts.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import warnings
from typing import TYPE_CHECKING, Any, Callable

from .children import Child, ForkedChild, roomy, start_direct_child
from .launch import WorkerProcess, launch_worker
from .uids import UID_BASE, UidPool
from .worker.processes import can_drop_uid

if TYPE_CHECKING:
    from .limits import Limits

__all__ = ["SandboxRunner", "can_share_worker"]

_MIB = 2**20


def can_share_worker() -> bool:
    """Whether one worker can serve several grading processes: only where each child runs as a
    uid of its own (a grader running as root, with the whole uid range). Otherwise the worker
    cannot tell one student's stray processes from another's."""
    return can_drop_uid()


class SandboxRunner:
    """The worker that forks the sandboxed children: create once, share, close at the end.

    ``isolation``: "auto" (bubblewrap where it works, else a warning and process isolation),
    "bwrap" (bubblewrap or an error) or "process". ``tmp_bytes``: the size of each child's own
    /tmp where the kernel gives it one, else of the /tmp all children of bubblewrap's worker
    share. The worker starts on first use, or at
    ``launch()``, which returns at once: the worker imports torch while the caller goes on. Safe
    to use from several threads at once; each thread's sessions are independent. Another process
    (forked from this one) shares the worker through ``attach()``.
    """

    def __init__(self, *, isolation: str = "auto", uid_base: int = UID_BASE,
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
        # each child's own IPC and mount namespaces and /tmp (grader.sandbox.worker.isolation)
        self.namespaces = False
        # why the children have no memory cgroup of their own, when they have none
        # (grader.sandbox.worker.memory_groups): their memory limit is then per process
        self.memory_problem: str | None = None
        self._uids = UidPool(uid_base)
        self._lock = threading.Lock()
        self._worker: WorkerProcess | None = None     # ready
        self._launch: WorkerProcess | None = None     # started, "ready" not read yet
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
                launched = launch_worker(use_bwrap=self._wants_bwrap(),
                                         tmp_bytes=self.tmp_bytes)
                if isinstance(launched, WorkerProcess):
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
        twin._launch = WorkerProcess(ours, use_bwrap)
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

    def _start_worker(self, *, use_bwrap: bool, launch: WorkerProcess | None = None
                      ) -> str | None:
        """Start the worker (or take ``launch``, if it is the same kind) and wait until it is
        ready; None when it is, else why not."""
        if launch is not None and launch.use_bwrap != use_bwrap:
            launch.stop()
            launch = None
        if launch is None:
            launched = launch_worker(use_bwrap=use_bwrap, tmp_bytes=self.tmp_bytes)
            if isinstance(launched, str):
                return launched
            launch = launched
        ready = launch.wait_ready(self.start_seconds)
        if isinstance(ready, str):
            return ready
        self._worker = launch
        self.isolation = "bwrap" if use_bwrap else "process"
        self.can_drop_uid = bool(ready.get("can_drop_uid"))
        self.namespaces = bool(ready.get("namespaces"))
        self.memory_problem = None if ready.get("memory_groups") else (
            launch.group if isinstance(launch.group, str) else "the shared worker has none")
        self.worker_info = ready
        return None

    def _stop_worker(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop(grace=10)

    def worker_log(self) -> str:
        """The end of what the running worker wrote to stderr (its warnings and errors); empty
        once it is stopped."""
        return self._worker.log() if self._worker else ""

    def close(self) -> None:
        with self._lock:
            self._closed = True
            launch, self._launch = self._launch, None
            if launch is not None:
                launch.stop()
            self._stop_worker()
            self._uids.close()

    def __enter__(self) -> "SandboxRunner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- children -----------------------------------------------------------------------------
    def spawn(self, limits: Limits, *, seconds: float = 30.0) -> Child | str:
        """Fork a child with ``limits``; the child, or why it could not start."""
        if not self.forkserver:
            with self._lock:
                self._ensure_started()
            return start_direct_child(limits)
        control, control_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        proto, proto_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        roomy(proto, proto_theirs)
        out_r, out_w = os.pipe()
        try:
            uid = self._ask_for_child(limits, [control_theirs.fileno(), proto_theirs.fileno(),
                                               out_w])
        except BaseException:
            for s in (control, proto):
                s.close()
            os.close(out_r)
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
        if reply.get("event") == "started":
            return ForkedChild(control, proto, out_r, uid, release=self.release_uid)
        for s in (control, proto):
            s.close()
        os.close(out_r)
        if uid is not None:
            self.release_uid(uid)
        return str(reply.get("message") or "the sandbox worker did not answer"
                   + (f": {self.worker_log().strip()[-300:]}" if self.worker_log() else ""))

    def _ask_for_child(self, limits: Limits, fds: list[int]) -> int | None:
        """Send the worker (started first, if need be) a spawn request with the child's ends of
        its control socket, protocol socket and output pipe; the uid the child will run as."""
        with self._lock:
            self._ensure_started()
            uid = self._uids.take() if self.can_drop_uid else None
            message = json.dumps({"op": "spawn", "uid": uid, "limits": {
                **limits.for_child(), "tmp_bytes": self.tmp_bytes}}).encode()
            try:
                try:
                    socket.send_fds(self._worker.main, [message], fds)  # type: ignore[union-attr]
                except OSError:           # the worker died since: start a new one, once
                    self._stop_worker()
                    self._ensure_started()
                    socket.send_fds(self._worker.main, [message], fds)  # type: ignore[union-attr]
            except BaseException:
                if uid is not None:
                    self._uids.give_back(uid)
                raise
        return uid

    @property
    def uids(self) -> tuple[int, ...]:
        """The uids this runner's children run as (held until close; none without root)."""
        return tuple(self._uids.held)

    def release_uid(self, uid: int) -> None:
        with self._lock:
            self._uids.give_back(uid)
