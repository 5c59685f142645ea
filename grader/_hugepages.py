"""The sandbox's worker, before it forks: its memory in 2 MB pages where the kernel allows it.

Each child is a fresh fork of the worker (grader.forkserver), and on this kind of machine (a VM,
where a page fault costs some 5 us) a child's own start costs as much as the work it does: the
fork copies a page table entry for every 4 kB page of the worker's writable memory, and the child
then faults in, one 64 kB window at a time, every piece of torch's code it runs (a fork copies no
entries for a file's pages). Two things make both cheaper, each done once, in the worker:

* ``collapse_anonymous_memory``: the worker's writable anonymous memory (mostly what importing
  torch allocated, ~150 MB) in huge pages: a fork copies a few hundred entries instead of tens of
  thousands, and a child's exit frees as few.
* ``move_text_to_huge_pages``: the parts of torch's code the worker has run, copied into
  anonymous huge pages mapped read-only and executable at the very same addresses. A child
  inherits them already mapped: measured over 150 sandboxed gradings of a correct submission
  (2-core VM, two alternating pairs), 1,840 -> 1,520 page faults and 32.7 -> 29.9 ms of CPU per
  child. The cost: that much memory in the worker (~190 MB, once per batch), and a debugger or
  profiler no longer names the functions in the moved code. The grade command does the same in
  its own process before forking its grading processes (grader.batch, ``huge_pages``): fewer
  misses in the processor's page caches, a few percent more submissions a second.

Linux only, best effort: each step that the kernel refuses is skipped, and nothing is moved
where transparent huge pages are off or memory is short (under 1 GiB left available, the
system's or a container's). Worth it for a process that forks many children or lives long: the
grade command turns it on (``SandboxRunner(huge_pages=True)``, ``grade_many(huge_pages=True)``);
grading one submission does not.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["HUGE_PAGES_ENV", "KEEP_FREE", "TORCH_LIBRARIES", "available_bytes", "can_spare",
           "collapse_anonymous_memory", "move_text_to_huge_pages"]

# the worker's environment: "1" where its runner asks for torch's code in huge pages
# (SandboxRunner(huge_pages=True): the grade command's, unless --no-huge-pages) and the memory
# can be spared; "0" otherwise
HUGE_PAGES_ENV = "BACKPROP_GRADER_HUGE_PAGES"
KEEP_FREE = 2**30             # memory left available, at the least, after moving code

_HUGE = 2 * 2**20
_PAGE = 4096
_PROT_READ, _PROT_WRITE, _PROT_EXEC = 1, 2, 4
_MAP_PRIVATE, _MAP_ANONYMOUS = 0x02, 0x20
_MREMAP_MAYMOVE, _MREMAP_FIXED = 1, 2
_MADV_HUGEPAGE = 14
_MADV_COLLAPSE = 25           # Linux 6.1 and later
_PRESENT = 1 << 63            # /proc/self/pagemap: the page is mapped in this process
_MAP_FAILED = ctypes.c_void_p(-1).value
_ENTRY = struct.Struct("<Q")
# torch's code: the libraries whose functions each child runs (the interpreter's own code, under
# 2 MB and not aligned to 2 MB, has no huge page to move to)
TORCH_LIBRARIES = ("libtorch_cpu.so", "libtorch_python.so")


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    address, size, number = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int
    libc.mmap.restype = address
    libc.mmap.argtypes = [address, size, number, number, number, ctypes.c_long]
    libc.mremap.restype = address
    libc.mremap.argtypes = [address, size, size, number, address]
    libc.munmap.argtypes = [address, size]
    libc.mprotect.argtypes = [address, size, number]
    libc.madvise.argtypes = [address, size, number]
    return libc


def _maps() -> list[tuple[int, int, str, str]]:
    """This process's mappings: (start, end, permissions, path or "")."""
    mappings = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        start, end = (int(x, 16) for x in parts[0].split("-"))
        mappings.append((start, end, parts[1], parts[5] if len(parts) > 5 else ""))
    return mappings


def _huge_inside(start: int, end: int) -> tuple[int, int]:
    """The 2 MB-aligned part of [start, end) (empty where there is none)."""
    return -(-start // _HUGE) * _HUGE, end // _HUGE * _HUGE


def _huge_pages_on() -> bool:
    """Whether this process can have transparent huge pages: the kernel's setting says so, or,
    where there is no /sys to read it from (bubblewrap), the process has some already (the
    worker, after collapse_anonymous_memory; reading that walks its page tables: ~3 ms)."""
    try:
        return "[never]" not in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        pass
    try:
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
            if line.startswith("AnonHugePages:"):
                return int(line.split()[1]) > 0
    except (OSError, ValueError, IndexError):
        pass
    return False


def collapse_anonymous_memory() -> int:
    """Back this process's writable anonymous memory with 2 MB pages where the kernel allows it
    (measured on a 2-core VM: fork + exit of the worker 25 -> 10 ms of CPU). Children still copy
    4 kB at a time on write. Where malloc took huge pages from the start (the runner's
    GLIBC_TUNABLES) there is little left to do. Returns the bytes collapsed."""
    try:
        libc, maps = _libc(), _maps()
    except (OSError, AttributeError, ValueError):
        return 0
    collapsed = 0
    for start, end, permissions, path in maps:
        if "w" not in permissions or path not in ("", "[heap]"):
            continue
        start, end = _huge_inside(start, end)
        if end > start and libc.madvise(start, end - start, _MADV_HUGEPAGE) == 0 \
                and libc.madvise(start, end - start, _MADV_COLLAPSE) == 0:
            collapsed += end - start
    return collapsed


def _runs_in_use(start: int, end: int, pagemap: object) -> Iterator[tuple[int, int]]:
    """The runs of 2 MB pieces of [start, end) (aligned) with a page mapped in this process:
    the code that has run here, which is what the children run too."""
    first, last = _huge_inside(start, end)
    run_start = None
    for piece in range(first, last, _HUGE):
        pagemap.seek(piece // _PAGE * _ENTRY.size)  # type: ignore[attr-defined]
        entries = pagemap.read(_HUGE // _PAGE * _ENTRY.size)  # type: ignore[attr-defined]
        used = any(value & _PRESENT for (value,) in _ENTRY.iter_unpack(entries))
        if used and run_start is None:
            run_start = piece
        elif not used and run_start is not None:
            yield run_start, piece
            run_start = None
    if run_start is not None:
        yield run_start, last


def _cgroup_limits() -> Iterator[tuple[Path, Path]]:
    """(limit file, usage file) of each memory cgroup this process is in, and their parents:
    cgroup v2 (memory.max) or v1 (memory.limit_in_bytes)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, where = line.split(":", 2)
        if controllers == "":
            root, files = Path("/sys/fs/cgroup"), ("memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            root, files = Path("/sys/fs/cgroup/memory"), ("memory.limit_in_bytes",
                                                          "memory.usage_in_bytes")
        else:
            continue
        folder = root / where.strip().lstrip("/")
        for group in (folder, *folder.parents):
            if (group / files[0]).exists():
                yield group / files[0], group / files[1]
            if group == root:
                break


def available_bytes() -> int:
    """Memory this process may still take: the system's MemAvailable, or less where a cgroup
    it is in (a container's) has a limit closer by. (Inside bubblewrap there is no /sys to
    read the cgroup's from: the runner looks before it starts the worker.)"""
    available = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            available = int(line.split()[1]) * 1024
    try:
        for limit, usage in _cgroup_limits():
            text = limit.read_text().strip()
            if text != "max":
                available = min(available, int(text) - int(usage.read_text()))
    except (OSError, ValueError):
        pass
    return available


def can_spare(size: int = 256 * 2**20, *, keep_free: int = KEEP_FREE) -> bool:
    """Whether ``size`` more bytes of memory leave ``keep_free`` available."""
    return available_bytes() - size >= keep_free


def _replace_with_copy(libc: ctypes.CDLL, start: int, end: int) -> bool:
    """Map a copy of [start, end) (2 MB-aligned code) in anonymous huge pages over the original,
    read-only and executable as it was. One step (mremap, with the process's memory map locked)
    swaps the copy in: this thread runs none of that code meanwhile (libc and ctypes do the
    work), and another thread that does waits on a page fault until the same bytes are back."""
    size = end - start
    raw = libc.mmap(None, size + _HUGE, _PROT_READ | _PROT_WRITE, _MAP_PRIVATE | _MAP_ANONYMOUS,
                    -1, 0)
    if raw is None or raw == _MAP_FAILED:
        return False
    copy = -(-raw // _HUGE) * _HUGE
    if copy > raw:                                  # keep only the aligned part
        libc.munmap(raw, copy - raw)
    if raw + _HUGE > copy:
        libc.munmap(copy + size, raw + _HUGE - copy)
    libc.madvise(copy, size, _MADV_HUGEPAGE)
    ctypes.memmove(copy, start, size)
    if libc.mprotect(copy, size, _PROT_READ | _PROT_EXEC) != 0 or \
            libc.mremap(copy, size, size, _MREMAP_MAYMOVE | _MREMAP_FIXED, start) != start:
        libc.munmap(copy, size)
        return False
    libc.madvise(start, size, _MADV_COLLAPSE)       # where the copy did not get huge pages yet
    return True


def move_text_to_huge_pages(libraries: Sequence[str] = TORCH_LIBRARIES, *,
                            keep_free: int = KEEP_FREE) -> int:
    """Copy the code of ``libraries`` (file names) that this process has run into anonymous
    huge pages at the same addresses (see the module's text); only while at least ``keep_free``
    bytes of memory stay available. Call it after running what the process (and the children
    it forks) will run; never from a process that is not ours (the student's notebook: a
    debugger there would lose track of torch's functions). Returns the bytes moved."""
    if not _huge_pages_on():
        return 0
    moved = 0
    try:
        libc = _libc()
        code = [(start, end) for start, end, permissions, path in _maps()
                if permissions == "r-xp" and Path(path).name in libraries]
        with open("/proc/self/pagemap", "rb") as pagemap:
            runs = [run for start, end in code for run in _runs_in_use(start, end, pagemap)]
        room = available_bytes() - keep_free
        for start, end in runs:
            if end - start > room:
                break
            if _replace_with_copy(libc, start, end):
                moved += end - start
                room -= end - start
    except (OSError, AttributeError, ValueError):
        pass
    return moved
