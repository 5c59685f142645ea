"""Starting the sandbox's worker process and stopping it: its command line (in bubblewrap where
asked), its environment, the end of its stderr, the wait for its "ready".

The worker is ``grader.sandbox.worker.entry.main`` in a fresh, isolated interpreter (``-I``)
that sees only the package and the installed libraries, never the current folder. Torch-free: a
command can start the worker first and import torch while the worker starts.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import bubblewrap
from .worker.memory_groups import WorkerGroup, make_worker_group
from .worker.processes import WORKER_ENV

__all__ = ["StderrTail", "WorkerProcess", "launch_worker", "python_command"]

_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)


class StderrTail(threading.Thread):
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


@dataclass
class WorkerProcess:
    """A worker process: on its way up, it answers "ready" on ``main`` once torch is imported;
    then the runner sends it requests there."""

    main: socket.socket
    use_bwrap: bool
    proc: subprocess.Popen[bytes] | None = None     # None: a worker another runner started
    tail: StderrTail | None = None
    # the folder of its children's memory cgroups, removed when it stops; or why there is none
    group: WorkerGroup | str | None = None

    def wait_ready(self, seconds: float) -> dict[str, Any] | str:
        """The worker's "ready" message, within ``seconds``; else why not (it is then
        stopped)."""
        self.main.settimeout(seconds)
        try:
            ready = json.loads(self.main.recv(4096) or b"{}")
        except (OSError, ValueError):
            ready = {}
        if ready.get("event") == "ready":
            self.main.settimeout(None)
            return ready
        self.stop()
        if self.proc is None:
            return "the shared sandbox worker is gone"
        last = self.log().strip().splitlines()
        why = last[-1] if last else f"exit code {self.proc.returncode}"
        return ("bubblewrap is installed but the sandbox did not start" if self.use_bwrap
                else "the worker did not start") + f" ({why})"

    def log(self) -> str:
        """The end of what the worker wrote to stderr (its warnings and errors)."""
        return self.tail.text() if self.tail else ""

    def stop(self, *, grace: float = 0.0) -> None:
        """Close our end of the worker's socket. A worker we started sees EOF, kills its
        children and exits; its process group is killed if it has not after ``grace`` seconds,
        and at once with no grace (a worker not wanted, or not ready). A worker another runner
        started (no ``proc``) only loses this connection: it is that runner's to stop."""
        self.main.close()
        if self.proc is not None:
            if grace:
                try:
                    self.proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    pass
            if not grace or self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                self.proc.wait()
            if isinstance(self.group, WorkerGroup):     # its children are gone with it
                self.group.remove()
        if self.tail is not None:
            self.tail.join(timeout=1)


def python_command(*, use_bwrap: bool, entry: str) -> list[str]:
    """A fresh interpreter that runs ``grader.sandbox.worker.entry``'s ``entry`` with the
    rest of its command line as arguments; in bubblewrap, it finds only the package and the
    installed libraries."""
    paths = [str(Path(_PACKAGE_DIR).parent)]
    paths += [p for p in (bubblewrap.library_paths() if use_bwrap else
                          [os.path.abspath(p) for p in sys.path if p]) if p not in paths]
    return [sys.executable, "-I", "-c",
            f"import sys; sys.path[:0] = {paths!r}; "
            f"from grader.sandbox.worker.entry import {entry}; {entry}(*sys.argv[1:])"]


def launch_worker(*, use_bwrap: bool, tmp_bytes: int) -> WorkerProcess | str:
    """Start a worker process, without waiting for it; the process, or why it could not start.
    ``tmp_bytes``: the size of bubblewrap's /tmp."""
    env = dict(WORKER_ENV)
    command = python_command(use_bwrap=use_bwrap, entry="main")
    if use_bwrap:
        bwrap = bubblewrap.find_bwrap()
        if bwrap is None:
            return "bubblewrap (bwrap) is not installed"
        command = bubblewrap.sandbox_command(command, bwrap=bwrap, package_dir=_PACKAGE_DIR,
                                             tmp_bytes=tmp_bytes, env=env)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    err_r, err_w = os.pipe()
    group = make_worker_group()
    arguments, fds = [str(theirs.fileno())], [theirs.fileno()]
    if isinstance(group, WorkerGroup):      # the worker may not see /sys: it gets the folder
        arguments.append(group.argument())
        fds.append(group.fd)
    try:
        proc = subprocess.Popen(command + arguments, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err_w, pass_fds=fds, env=env,
                                cwd=tempfile.gettempdir(), start_new_session=True)
    except OSError as e:
        ours.close()
        os.close(err_r)
        if isinstance(group, WorkerGroup):
            group.remove()
        return f"cannot start {command[0]}: {e.strerror}"
    finally:
        theirs.close()
        os.close(err_w)
        if isinstance(group, WorkerGroup):
            group.close()               # the worker has its own descriptor of the folder
    tail = StderrTail(err_r)
    tail.start()
    return WorkerProcess(ours, use_bwrap, proc, tail, group)
