"""The grader's handles on one sandboxed child: its protocol socket, its output pipe, and how to
lower, wait for and stop it.

A ``ForkedChild`` is the fork server's: stopped and lowered through the worker, which reports its
exit too. A ``DirectChild`` is a fresh interpreter of its own, where there is no fork server (not
Linux): a torch import per submission, the same protocol, the limits the platform has.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from typing import TYPE_CHECKING, Callable

from .launch import python_command
from .worker.processes import child_environment, lower_priority

if TYPE_CHECKING:
    from .limits import Limits

__all__ = ["Child", "DirectChild", "ForkedChild", "roomy", "start_direct_child"]

_SOCKET_BUFFER = 4 * 2**20


def roomy(*sockets: socket.socket) -> None:
    """Socket buffers that hold a whole batch of calls (a few hundred kB): the grader's send
    returns at once instead of waiting, chunk by chunk, for the child to read. The kernel caps
    the size (net.core.wmem_max); a smaller buffer only means more waits."""
    for s in sockets:
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            try:
                s.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER)
            except OSError:
                pass


class ForkedChild:
    """A child of the fork server, talked to on ``control`` (its lifetime) and ``proto`` (the
    requests); ``uid`` (its own, or None) goes to ``release`` once its stop is asked for."""

    def __init__(self, control: socket.socket, proto: socket.socket, output: int,
                 uid: int | None, *, release: Callable[[int], None]) -> None:
        self.control, self.proto, self.output, self.uid = control, proto, output, uid
        self.release = release
        self.limit: str | None = None   # "memory": the worker saw its memory cgroup run out

    def stop(self, *, wait: bool) -> tuple[int | None, int]:
        """Stop the child and all it started. ``wait`` (after a failure): until every one is
        gone and counted; returns (its exit code if it ended by itself, how many processes were
        killed). Otherwise the request is sent and (None, 0) returned at once: the worker kills
        the child and finishes in the background, and will not start a child with this uid
        before it has (forkserver.ForkServer._spawn), so the uid is free to take again now."""
        code: int | None = None
        processes = 0
        try:
            self.control.settimeout(15)
            self.control.send(json.dumps({"op": "stop", "wait": wait}).encode())
            while wait:
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
                self.release(self.uid)
        return code, processes

    def lower(self) -> None:
        """The least CPU priority for the child and what it started, from now on (the worker
        does it: processes.lower_priority, which says what a child can undo)."""
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
                    self.limit = message.get("limit")
                    return message.get("code")
                if not message:
                    return None
        except (OSError, ValueError):
            return None


class DirectChild:
    """A child that is a fresh interpreter of its own, leading a session of its own, in a
    working folder of its own."""

    uid = None
    limit = None        # no memory cgroup: a limit shows as the error it raised

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


Child = ForkedChild | DirectChild


def start_direct_child(limits: Limits) -> DirectChild | str:
    """Start a child as a fresh interpreter (grader.sandbox.worker.entry.serve_direct);
    the child, or why it could not start."""
    proto, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    roomy(proto, theirs)
    out_r, out_w = os.pipe()
    workdir = tempfile.mkdtemp(prefix="bpg-")
    command = python_command(use_bwrap=False, entry="serve_direct")
    try:
        proc = subprocess.Popen(
            command + [str(theirs.fileno()), json.dumps(limits.for_child())],
            stdin=subprocess.DEVNULL, stdout=out_w, stderr=out_w, pass_fds=(theirs.fileno(),),
            cwd=workdir, env=child_environment(workdir), start_new_session=True)
    except OSError as e:
        proto.close()
        os.close(out_r)
        shutil.rmtree(workdir, ignore_errors=True)
        return f"cannot start {sys.executable}: {e.strerror}"
    finally:
        theirs.close()
        os.close(out_w)
    return DirectChild(proc, proto, out_r, workdir)
