"""The process-level helpers of the sandbox: environment, limits, priorities, killing.

Torch-free, so that the grader side may import it too: the runner starts the worker with
``WORKER_ENV`` and lowers a child without a fork server with ``lower_priority``, and a batch's
grading processes ``die_with_parent``. Linux facts (prctl, /proc, a uid of one's own) are read
here; the fork server decides what to do with them.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
from typing import Any, Callable

__all__ = ["SINGLE_THREAD_ENV", "WORKER_ENV", "as_uid", "become_subreaper", "can_drop_uid",
           "children", "child_environment", "die_with_parent", "forbid_new_privileges",
           "forbid_new_processes", "kill_uid", "lower_priority", "processes_of", "set_limits",
           "status_number"]

# torch and its BLAS libraries start one thread each, not a pool per core: a process whose
# thread pools are running cannot be forked safely (a child may inherit a lock held forever),
# and each child is one core's share of the machine
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
# glibc's heap in 2 MB pages where the kernel has them on request (madvise): torch leaves the
# worker ~150 MB of heap, and every child's fork and exit copy and free its page table, one
# entry a page. In 2 MB pages that is a 512th: fork and exit of the worker cost ~3 ms of kernel
# time instead of ~7.5. glibc reads the kernel's settings in /sys (bubblewrap.sandbox_command).
# A child's own allocations of 2 MB and more too: memory it touches sparsely counts in whole
# 2 MB pages, within the same limits (set_limits, the memory cgroups)
_HUGE_PAGES = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
# the worker's whole environment: nothing of the grader's reaches the sandbox
WORKER_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", **SINGLE_THREAD_ENV,
              **_HUGE_PAGES}

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38
_OPEN_FILES = 256
_LOWEST_PRIORITY = 19      # nice


def child_environment(workdir: str) -> dict[str, str]:
    """A child's whole environment: the worker's, at home in its working folder."""
    return {**WORKER_ENV, "HOME": workdir, "TMPDIR": workdir}


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def die_with_parent(parent: int) -> None:
    """This process gets SIGKILL when ``parent`` (the process it was forked from) ends, even by
    kill -9; if ``parent`` is gone already, it exits now. Linux only (elsewhere only the check
    that ``parent`` is still there). Dropping to another uid clears the kernel's setting:
    call it after."""
    if sys.platform.startswith("linux"):
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:          # it ended before the kernel's setting took effect
        os._exit(1)


def become_subreaper() -> None:
    """Orphans of this process's descendants are re-parented to it, not to init: every process
    a child starts stays this process's descendant (Linux)."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def forbid_new_privileges() -> None:
    """No setuid program or file capability gives this process or its descendants more
    privileges than it has (Linux)."""
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)


def status_number(field: str, pid: int | str = "self") -> int | None:
    """A number from /proc/PID/status (kB fields in bytes; Uid: the real uid)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    parts = line.split()
                    return int(parts[1]) * (1024 if parts[-1] == "kB" else 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def children() -> list[int]:
    """This process's children (a subreaper's include the orphans of its descendants)."""
    try:
        with open(f"/proc/self/task/{os.getpid()}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:   # kernel without CONFIG_PROC_CHILDREN: scan
        mine, found = os.getpid(), []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except (OSError, IndexError):
                    continue
                if int(fields[1]) == mine:
                    found.append(int(entry))
        return found


def processes_of(uid: int) -> list[int]:
    """Every process (in this pid namespace) whose real uid is ``uid``."""
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and status_number("Uid", e) == uid]


def as_uid(uid: int, action: Callable[[], object]) -> None:
    """Run ``action`` in a fork that becomes ``uid`` (no groups) and wait for it: what only the
    owner may do (signal all its processes, remove its IPC objects without CAP_SYS_ADMIN)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            action()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def kill_uid(uid: int) -> None:
    """SIGKILL every process of ``uid`` in one go: a fork becomes ``uid`` and calls
    kill(-1), which the kernel applies to all of that uid's processes at once, so that no fork
    slips through between a scan and a kill."""
    as_uid(uid, lambda: os.kill(-1, signal.SIGKILL))


def lower_priority(pid: int, uid: int | None) -> None:
    """Give a session's processes the least CPU priority: those of ``uid`` when it has one of
    its own, else the process group (session) that ``pid`` leads. Its autogroup too, where the
    kernel groups processes by session: niceness counts only within a group, and each session
    (a child calls setsid) is one. Raising niceness needs no privilege; a failure leaves the
    priority as it was (without CAP_SYS_ADMIN the kernel takes one autogroup change per 100 ms).

    A help, not a limit: code that wants the CPU back can start a session of its own (a new
    autogroup, at the default weight) or reset its autogroup; it then costs its wall time at
    full speed, and no more. Nothing of another student's depends on it."""
    try:
        if uid is not None:
            os.setpriority(os.PRIO_USER, uid, _LOWEST_PRIORITY)
        else:
            os.setpriority(os.PRIO_PGRP, pid, _LOWEST_PRIORITY)
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/autogroup", "w") as f:
            f.write(str(_LOWEST_PRIORITY))
    except OSError:         # no autogroups here (or the process is gone)
        pass


def can_drop_uid() -> bool:
    """Root with the whole uid range (not root inside a user namespace mapping one uid)."""
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/uid_map") as f:
            return any(int(line.split()[2]) > 1 for line in f if line.strip())
    except (OSError, ValueError, IndexError):
        return False


def set_limits(limits: dict[str, Any]) -> None:
    """This process's resource limits, from ``Limits.for_child()``; on Linux each must hold,
    elsewhere those the platform refuses (macOS: RLIMIT_AS, RLIMIT_DATA) are gone without."""
    vm = status_number("VmSize")
    memory = int(limits["memory_bytes"])
    cpu = int(limits["cpu_seconds"])
    wanted = [("RLIMIT_CORE", 0), ("RLIMIT_CPU", (cpu, cpu + 1)), ("RLIMIT_DATA", memory),
              ("RLIMIT_NPROC", int(limits["max_processes"])),
              ("RLIMIT_FSIZE", int(limits["file_bytes"])), ("RLIMIT_NOFILE", _OPEN_FILES),
              # no POSIX message queue can be made: none is needed, and a queue outlives its
              # maker where the child shares the worker's IPC namespace (isolation.py)
              ("RLIMIT_MSGQUEUE", 0)]
    if vm is not None:       # a backstop: what torch has mapped, plus the memory limit
        wanted.append(("RLIMIT_AS", vm + memory))
    for name, value in wanted:
        if not hasattr(resource, name):       # RLIMIT_MSGQUEUE: Linux only
            continue
        soft, hard = value if isinstance(value, tuple) else (value, value)
        try:
            resource.setrlimit(getattr(resource, name), (soft, hard))
        except (ValueError, OSError):
            if sys.platform.startswith("linux"):
                raise


def forbid_new_processes(*, own_uid: bool) -> None:
    """From now on this process can start no process or thread (RLIMIT_NPROC 0: fork, clone
    and thread starts fail with EAGAIN), and with ``own_uid`` (the session's uid is its alone)
    every other process of that uid is killed: a helper forked while the file loaded cannot
    answer for it later. The exercise needs neither; the child's own replies need no new thread.
    Elsewhere than Linux, as far as the platform allows."""
    try:
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    except (ValueError, OSError):
        if sys.platform.startswith("linux"):
            raise
    if own_uid:
        # kill(-1) reaches every process this uid may signal but the caller: in one go, so
        # that no fork slips through (see kill_uid)
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:      # there was none
            pass
