"""A spare child: forked from the worker ahead of time, it becomes the next session's child.

It first joins the memory group the fork server made for it, where there is one, and says on its
orders socket whether it did; then it waits there for orders. The fork server sends the
session's limits, uid and working folder, with the protocol socket and the output pipe attached.
The spare then isolates itself (a session of its own, only those descriptors open, and where the
kernel allows, IPC and mount namespaces of its own with a fresh tmpfs for /tmp:
grader.sandbox.worker.isolation), sets its limits, drops to the session's uid, and serves
grader.sandbox.worker.child's protocol until the grader closes the socket.
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
from .memory_groups import SessionGroup, no_group_for_child
from .processes import child_environment, die_with_parent, forbid_new_privileges, set_limits

if TYPE_CHECKING:
    from .guard import AutogradWatch

__all__ = ["fork_spare", "joined_group", "serve_as_spare"]

_PROTOCOL_FD = 3
_JOIN_SECONDS = 5.0     # a join takes milliseconds: a spare silent for longer is given up


def fork_spare(watch: AutogradWatch, group: SessionGroup | None) -> tuple[int, socket.socket]:
    """In the worker: fork a spare that joins ``group`` (where there is one) and then waits for
    its orders; its pid and the worker's end of its orders socket."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sys.stderr.flush()
    worker = os.getpid()
    try:
        pid = os.fork()
    except OSError:
        ours.close()
        theirs.close()
        raise
    if pid == 0:
        ours.close()
        serve_as_spare(theirs, watch, worker=worker, group=group)
    theirs.close()
    return pid, ours


def joined_group(orders: socket.socket) -> bool:
    """In the worker, before it gives a spare made with a group its orders: whether the spare
    joined the group (it says so before anything else); OSError where it ended first."""
    orders.settimeout(_JOIN_SECONDS)
    said = orders.recv(16)
    if said not in (b"0", b"1"):
        raise OSError("the spare ended before it joined its memory group")
    return said == b"1"


def serve_as_spare(orders: socket.socket, watch: AutogradWatch, *, worker: int,
                   group: SessionGroup | None) -> NoReturn:
    """In the forked child of the worker (pid ``worker``): join ``group``, then wait for a
    session and serve it; whatever happens, never return into the worker's loop."""
    code = 71
    try:
        if group is not None:
            orders.send(b"1" if _joined(group) else b"0")
        _wait_for_session(orders, watch, worker)
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def _joined(group: SessionGroup) -> bool:
    """Whether this spare is now in ``group`` (else its memory limit is per process only)."""
    try:
        group.join()
        return True
    except OSError as e:
        no_group_for_child(e)
        return False


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
