"""Nothing one student's child makes reaches another: namespaces and temporary space per child.

Where the kernel lets the worker (root, or CAP_SYS_ADMIN: bubblewrap run as root keeps it), each
child, before it drops its privileges, enters an IPC namespace of its own (SysV shared memory,
semaphores and message queues, POSIX message queues) and a mount namespace of its own, where a
fresh size-capped tmpfs is its /tmp, its /dev/shm (POSIX shared memory) and its /var/tmp: one
student filling it leaves another's untouched, and all of it is gone with the child's last
process. Nothing of it needs cleaning up, and nothing is seen by a child graded at the same time.

Where the kernel refuses (no CAP_SYS_ADMIN: root in a container without it, say), the children
share the worker's: the fork server then removes, once a session's processes are gone and
before its uid serves again, every SysV object of that uid and its files in the shared
temporary folders (``remove_leftovers``). POSIX message queues cannot be made at all
(RLIMIT_MSGQUEUE 0, processes.set_limits).
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import stat

from .processes import as_uid

__all__ = ["TEMPORARY_FOLDERS", "can_unshare", "enter_own_namespaces", "remove_leftovers"]

_CLONE_NEWNS = 0x00020000
_CLONE_NEWIPC = 0x08000000
_MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_PRIVATE = 0x2, 0x4, 0x1000, 0x4000, 0x40000
_IPC_RMID = 0
# the folders every uid may write in: a child's own tmpfs covers them (the first one holds
# the others' contents), or, without one, they are swept of the uid's files
TEMPORARY_FOLDERS = ("/tmp", "/dev/shm", "/var/tmp")
_SYSV = (("shm", "shmid", "shmctl"), ("sem", "semid", "semctl"), ("msg", "msqid", "msgctl"))


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    _check(_libc().mount(source.encode(), target.encode(),
                         fstype.encode() if fstype else None, flags,
                         data.encode() if data else None), f"mount {target}")


def can_unshare() -> bool:
    """Whether a child forked from here gets namespaces of its own: tried in a throwaway fork,
    since a capability can be there and a seccomp filter still refuse (containers)."""
    pid = os.fork()
    if pid == 0:
        try:
            ok = _libc().unshare(_CLONE_NEWIPC | _CLONE_NEWNS) == 0
            if ok:
                _mount("none", "/", None, _MS_REC | _MS_PRIVATE, None)
                _mount("tmpfs", "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, "size=4096")
        except BaseException:  # noqa: BLE001  any failure means no: the exit code says it
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def enter_own_namespaces(workdir: str, *, size_bytes: int, uid: int | None) -> bool:
    """In the child, before it drops its privileges: an IPC and a mount namespace of its own, a
    fresh tmpfs of ``size_bytes`` on /tmp (/dev/shm and /var/tmp are folders of it), and
    ``workdir`` (a path under /tmp) made again inside it, owned by ``uid``. False, with nothing
    changed, where the kernel refuses the namespaces; an error if a mount then fails (a child
    half isolated must not run)."""
    if _libc().unshare(_CLONE_NEWIPC | _CLONE_NEWNS) != 0:
        if ctypes.get_errno() in (errno.EPERM, errno.EINVAL, errno.ENOSYS):
            return False
        _check(-1, "unshare")
    # our mounts must not propagate back to the worker's namespace (a shared / would)
    _mount("none", "/", None, _MS_REC | _MS_PRIVATE, None)
    _mount("tmpfs", "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={size_bytes},mode=1777")
    for folder in TEMPORARY_FOLDERS[1:]:
        if os.path.isdir(folder) and not os.path.islink(folder):
            inside = "/tmp/." + folder.strip("/").replace("/", "-")
            os.mkdir(inside)
            os.chmod(inside, 0o1777)            # mkdir's mode is masked by the umask
            _mount(inside, folder, None, _MS_BIND, None)
    os.makedirs(workdir, mode=0o700)
    if uid is not None:
        os.chown(workdir, uid, uid)
    return True


def _sysv_objects(kind: str, id_column: str, uid: int) -> list[int]:
    """The ids of the SysV objects (``kind``: shm, sem or msg) owned or made by ``uid``."""
    try:
        with open(f"/proc/sysvipc/{kind}") as f:
            header = f.readline().split()
            rows = [line.split() for line in f]
    except OSError:
        return []
    column = header.index
    return [int(row[column(id_column)]) for row in rows
            if uid in (int(row[column("uid")]), int(row[column("cuid")]))]


def _remove_sysv_as(uid: int, objects: list[tuple[str, str, int]]) -> None:
    """IPC_RMID each object, in a fork that becomes ``uid``, their owner: without CAP_SYS_ADMIN
    (the very case that needs this) root may not remove another uid's objects."""
    def remove() -> None:
        libc = _libc()
        for kind, control, ident in objects:
            getattr(libc, control)(*((ident, 0, _IPC_RMID) if kind == "sem"
                                     else (ident, _IPC_RMID, None)))
    as_uid(uid, remove)


def remove_leftovers(uid: int) -> int:
    """Remove what ``uid`` may have left in the worker's IPC namespace and temporary folders:
    its SysV shared memory, semaphores and message queues, and its files at the top of
    TEMPORARY_FOLDERS (the only folders a child can write in outside its working folder). How
    many were removed. Only for a uid of the session's own: never the grader's."""
    objects = [(kind, control, ident) for kind, id_column, control in _SYSV
               for ident in _sysv_objects(kind, id_column, uid)]
    removed = len(objects)
    if objects:
        _remove_sysv_as(uid, objects)
    for folder in TEMPORARY_FOLDERS:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
                if st.st_uid != uid:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
                removed += 1
            except OSError:
                pass
    return removed
