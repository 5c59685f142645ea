"""A spare child: forked from the worker ahead of time, it becomes the next session's child.

It waits on its orders socket (already in its memory group, where there is one: the fork server
moved it there); the fork server sends the session's limits, uid and working folder, with the
protocol socket and the output pipe attached. The spare then isolates itself (a session of its
own, only those descriptors open, and where the kernel allows, IPC and mount namespaces of its
own with a fresh tmpfs for /tmp: grader.sandbox.worker.isolation), sets its limits, drops to the
session's uid, and serves grader.sandbox.worker.child's protocol until the grader closes the
socket.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import signal
import socket
import sys
import tempfile
import traceback
from typing import TYPE_CHECKING, Any, NoReturn

from .isolation import enter_own_namespaces
from .processes import child_environment, die_with_parent, forbid_new_privileges, set_limits

if TYPE_CHECKING:
    from .guard import AutogradWatch

__all__ = ["serve_as_spare"]

_PROTOCOL_FD = 3


def serve_as_spare(orders: socket.socket, watch: AutogradWatch, *, worker: int) -> NoReturn:
    """In the forked child of the worker (pid ``worker``): wait for a session and serve it;
    whatever happens, never return into the worker's loop."""
    code = 71
    try:
        _wait_for_session(orders, watch, worker)
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def _wait_for_session(orders: socket.socket, watch: AutogradWatch, worker: int) -> None:
    _reset_signals()
    _place_fds({0: os.open(os.devnull, os.O_RDWR), 1: 2, 2: 2, _PROTOCOL_FD: orders.detach()})
    orders = socket.socket(fileno=_PROTOCOL_FD)
    data, fds, _, _ = socket.recv_fds(orders, 1 << 16, 2)
    if not data or len(fds) != 2:       # the worker is gone, or stops: no session will come
        os._exit(0)
    spec = json.loads(data)
    orders.detach()
    _become_child(spec["limits"], spec["uid"], spec["workdir"], fds[0], fds[1], watch, worker)


def _reset_signals() -> None:
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)       # a too-large write fails with EFBIG


def _place_fds(targets: dict[int, int]) -> None:
    """dup2 each source onto its target without clobbering a source that sits on a target;
    close every other descriptor."""
    high = {target: fcntl.fcntl(source, fcntl.F_DUPFD, 64) for target, source in targets.items()}
    for target, source in high.items():
        os.dup2(source, target)
    os.closerange(max(targets) + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def _become_child(limits: dict[str, Any], uid: int | None, workdir: str, proto_fd: int, out_fd: int,
                  watch: AutogradWatch, worker: int) -> None:
    """Isolate, limit, drop privileges, then serve until the grader closes the socket."""
    os.setsid()
    _place_fds({0: os.open(os.devnull, os.O_RDWR), 1: out_fd, 2: out_fd, _PROTOCOL_FD: proto_fd})
    if limits.get("own_namespaces"):   # the worker found that the kernel allows them
        enter_own_namespaces(workdir, size_bytes=int(limits["tmp_bytes"]), uid=uid)
    os.chdir(workdir)
    set_limits(limits)
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        if os.getuid() != uid or os.geteuid() != uid:
            raise OSError("could not drop privileges")
    forbid_new_privileges()
    die_with_parent(worker)             # after setuid, which clears it
    os.environ.clear()
    os.environ.update(child_environment(workdir))
    tempfile.tempdir = workdir
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    from .child import serve    # torch: the worker's main() imports it, with the collector off

    serve(_PROTOCOL_FD, limits, watch)
