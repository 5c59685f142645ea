"""A memory cgroup per child: ``Limits.memory_bytes`` holds for a submission as a whole.

Per-process limits (processes.set_limits) cap each process, not a child with helpers it forked,
nor memory files (memfd, tmpfs) that belong to no process. A cgroup counts all of it. Where the
kernel lets the grader make one:

* cgroup v1 with the grader as root: a folder under the grader's own memory cgroup
  (/sys/fs/cgroup/memory/<ours>/backprop-grader-<pid>-<n>, made by the runner for one worker,
  ``make_worker_group``), and in it one group per child (made by the worker, ``SessionGroup``)
  with memory.limit_in_bytes (and memory.memsw.limit_in_bytes where swap is counted);
* cgroup v2 where the grader's own group delegates the memory controller (its
  cgroup.subtree_control lists it, and we may write there): memory.max, memory.swap.max 0,
  memory.oom.group.

The worker makes a group for each child (forked ahead of time, a spare), which joins it before
it runs any student code. When the group runs out, the kernel kills one of its processes; the
worker is told (v1: an eventfd on memory.oom_control; v2: memory.oom.group kills them all) and
ends the whole session, which is then reported as the memory limit. Groups go when their
session's processes have, and a worker's folder when the worker stops; folders of graders that
died are removed when the next runner makes its own.

Where no group can be made (not root, cgroup v2 without delegation, no memory controller), the
runner says why (``SandboxRunner.memory_problem``) and the per-process limits hold alone.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from dataclasses import dataclass, field

__all__ = ["GroupFolder", "SessionGroup", "WorkerGroup", "make_worker_group",
           "no_group_for_child"]

_PREFIX = "backprop-grader-"
_V1_ROOT = "/sys/fs/cgroup/memory"
_V2_ROOT = "/sys/fs/cgroup"
_made = 0                      # worker folders this process has made (for distinct names)


def _own_cgroup(controller: str | None) -> str | None:
    """This process's cgroup path in the hierarchy of ``controller`` (v1), or the v2 one."""
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if (controller in controllers.split(",")) if controller else controllers == "":
                    return path
    except (OSError, ValueError):
        return None
    return None


def _parent() -> tuple[str, int] | str:
    """Where this process may make memory groups: (folder, cgroup version), or why nowhere."""
    own = _own_cgroup("memory")
    if own is not None and os.path.isfile(f"{_V1_ROOT}/memory.limit_in_bytes"):
        folder = _V1_ROOT + own.rstrip("/")
        if os.access(folder, os.W_OK):
            return folder, 1
        return f"the memory cgroup {folder} is not writable (the grader is not root)"
    own = _own_cgroup(None)
    if own is not None and os.path.isfile(f"{_V2_ROOT}/cgroup.controllers"):
        folder = _V2_ROOT + own.rstrip("/")
        try:
            with open(f"{folder}/cgroup.subtree_control") as f:
                delegated = "memory" in f.read().split()
        except OSError:
            delegated = False
        if delegated and os.access(folder, os.W_OK):
            return folder, 2
        return (f"cgroup v2 without a delegated memory controller at {folder} (its "
                "cgroup.subtree_control must list memory, and the grader may write there)")
    return "no memory cgroup controller is mounted"


def _remove_tree(folder: str) -> bool:
    """rmdir a worker's folder and the groups in it (a cgroup folder holds only kernel files,
    which go with it); False when a group still holds processes."""
    gone = True
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return not os.path.exists(folder)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            gone = _remove_tree(entry.path) and gone
    try:
        os.rmdir(folder)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return gone


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(parent: str) -> None:
    """Remove the folders of graders (runners) that are gone: one that crashed leaves its own."""
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    for entry in entries:
        owner = entry.name[len(_PREFIX):].split("-", 1)[0]
        if entry.name.startswith(_PREFIX) and owner.isdigit() and not _alive(int(owner)):
            _remove_tree(entry.path)


@dataclass
class WorkerGroup:
    """A runner's folder of memory groups for one worker: the worker gets ``fd`` (it may not
    see /sys, inside bubblewrap) and makes a group per child in it."""

    path: str
    version: int
    fd: int = field(default=-1)

    def argument(self) -> str:
        """How the worker is told: "<fd>:<version>" (entry.main)."""
        return f"{self.fd}:{self.version}"

    def close(self) -> None:
        """Close our descriptor of the folder (once the worker has its own)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def remove(self) -> None:
        """After the worker is gone: the folder and any group left in it."""
        self.close()
        for _ in range(50):         # the worker's last processes may take a moment to leave
            if _remove_tree(self.path):
                return
            time.sleep(0.02)


def make_worker_group() -> WorkerGroup | str:
    """A new folder for one worker's memory groups (stale ones of dead graders removed
    first), or why none can be made."""
    global _made
    found = _parent()
    if isinstance(found, str):
        return found
    parent, version = found
    _remove_stale(parent)
    _made += 1
    path = f"{parent}/{_PREFIX}{os.getpid()}-{_made}"
    try:
        os.mkdir(path, 0o755)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        return f"cannot make a memory cgroup under {parent}: {e.strerror}"
    return WorkerGroup(path, version, fd)


class SessionGroup:
    """One child's memory group, in the folder ``parent_fd`` (a WorkerGroup's): made by the
    worker for a spare, which joins it first thing; the limit is set when a session takes it."""

    def __init__(self, parent_fd: int, version: int, name: str) -> None:
        self.parent_fd, self.version, self.name = parent_fd, version, name
        self.oom_event: int | None = None     # v1: an eventfd the kernel signals on OOM
        self.out_of_memory = False            # the worker was told of an OOM in the group
        os.mkdir(name, dir_fd=parent_fd)
        if version == 1:
            self.oom_event = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            control = os.open(f"{name}/memory.oom_control", os.O_RDONLY, dir_fd=parent_fd)
            try:
                self._write("cgroup.event_control", f"{self.oom_event} {control}")
            finally:
                os.close(control)
        else:
            self._write("memory.oom.group", "1")       # an OOM ends every process of it

    def _write(self, file: str, value: str, *, optional: bool = False) -> None:
        try:
            fd = os.open(f"{self.name}/{file}", os.O_WRONLY, dir_fd=self.parent_fd)
        except FileNotFoundError:
            if optional:        # memsw: only where the kernel counts swap
                return
            raise
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)

    def _read(self, file: str) -> str:
        try:
            fd = os.open(f"{self.name}/{file}", os.O_RDONLY, dir_fd=self.parent_fd)
        except OSError:
            return ""
        try:
            return os.read(fd, 4096).decode()
        finally:
            os.close(fd)

    def join(self) -> None:
        """Move the calling process in (a spare, before anything else). Moving a process waits
        for the kernel (an RCU grace period: milliseconds), which the spare does rather than
        the worker, whose loop serves every runner."""
        self._write("cgroup.procs", str(os.getpid()))

    def limit(self, memory_bytes: int) -> None:
        """At most ``memory_bytes`` for all the group's processes, memory files and tmpfs pages
        together, swap included."""
        if self.version == 1:
            self._write("memory.limit_in_bytes", str(memory_bytes))
            self._write("memory.memsw.limit_in_bytes", str(memory_bytes), optional=True)
        else:
            self._write("memory.max", str(memory_bytes))
            self._write("memory.swap.max", "0", optional=True)

    def notified(self) -> bool:
        """Drain the OOM eventfd (v1); True if the kernel signalled it since the last look."""
        if self.oom_event is None:
            return False
        try:
            os.eventfd_read(self.oom_event)
        except BlockingIOError:
            return False
        self.out_of_memory = True
        return True

    def ran_out(self) -> bool:
        """Whether the kernel had to kill a process of the group for want of memory."""
        if self.out_of_memory:
            return True
        text = self._read("memory.oom_control" if self.version == 1 else "memory.events")
        counts = dict(line.split() for line in text.splitlines() if len(line.split()) == 2)
        self.out_of_memory = any(int(counts.get(k, "0")) > 0
                                 for k in ("oom_kill", "oom_group_kill"))
        return self.out_of_memory

    def remove(self) -> bool:
        """Once its processes are gone: the group (and its eventfd). False while it is busy."""
        if self.oom_event is not None:
            os.close(self.oom_event)
            self.oom_event = None
        try:
            os.rmdir(self.name, dir_fd=self.parent_fd)
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno == errno.EBUSY:
                return False
            raise
        return True


def no_group_for_child(error: OSError) -> None:
    print(f"backprop-grader worker: no memory cgroup for a child ({error}); its memory limit "
          "is per process only", file=sys.stderr)


class GroupFolder:
    """In the worker: the runner's folder for its children's groups (``argument``:
    WorkerGroup.argument(), or "" where there is none), and the groups still to remove."""

    def __init__(self, argument: str) -> None:
        fd, version = argument.split(":") if argument else ("-1", "0")
        self.fd, self.version = int(fd), int(version)
        self.busy: list[SessionGroup] = []      # to remove once their processes are gone
        self.made = 0                           # groups made, for distinct names

    def new_group(self) -> SessionGroup | None:
        """A memory group for the next spare, which joins it (SessionGroup.join) before it can
        run any student code; its limit is set when a session takes it. None where there is
        none."""
        if self.fd < 0:
            return None
        self.made += 1
        try:
            return SessionGroup(self.fd, self.version, f"child-{self.made}")
        except OSError as e:
            no_group_for_child(e)
            return None

    def drop(self, group: SessionGroup | None) -> None:
        """Remove ``group`` now, or once its last process is gone (``tidy``)."""
        if group is not None and not group.remove():
            self.busy.append(group)

    def tidy(self) -> None:
        self.busy = [g for g in self.busy if not g.remove()]
