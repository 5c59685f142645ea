"""The uids sandboxed children run as, when the grader runs as root: one per concurrent child.

Each uid is claimed with a lock file, so that two runners on one machine (two grading jobs, two
test runs) never share one: the worker kills a session's processes by its uid, and cleans a uid
before it reuses it.
"""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["UID_BASE", "UidPool"]

UID_BASE = 1_900_000_000        # far above any account: children run as base + slot
_UID_RANGE = 4096


class UidPool:
    """Distinct uids for concurrent children, from ``base`` on; held until ``close()``."""

    def __init__(self, base: int) -> None:
        self.base = base
        self.free: list[int] = []
        self.held: dict[int, int] = {}     # uid -> lock file descriptor
        self.folder = Path(tempfile.gettempdir()) / "backprop-grader-uids"

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

    def _open_folder(self) -> None:
        """The lock folder, made and checked: ours, a real folder, not a planted symlink."""
        try:
            self.folder.mkdir(mode=0o700)
        except FileExistsError:
            pass
        st = os.lstat(self.folder)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise RuntimeError(f"{self.folder} is not a private folder of this user: remove it")

    def give_back(self, uid: int) -> None:
        if uid in self.held and uid not in self.free:
            self.free.append(uid)

    def close(self) -> None:
        for fd in self.held.values():
            os.close(fd)
        self.held.clear()
        self.free.clear()
