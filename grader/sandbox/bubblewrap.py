"""Bubblewrap (``bwrap``): the sandbox's worker runs inside it where it is installed and works.

The worker then sees a read-only system (/usr, /etc and the library folders), the Python
installation and the ``grader`` package, nothing else of the machine's files: no home folder, no
submissions, no ``solutions/``, no output folder. It gets its own empty /tmp (a size-capped tmpfs,
where each child's working folder lives), /proc of its own pid namespace, a minimal /dev, and a
network namespace with nothing in it but a loopback of its own.

Run as root (CI, submission servers), bwrap keeps the capabilities the worker needs to drop each
child to its own uid. Run as an ordinary user, bwrap needs unprivileged user namespaces; children
then keep the user's uid.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

__all__ = ["find_bwrap", "library_paths", "sandbox_command"]

_SYSTEM_DIRS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_HUGE_PAGE_SETTINGS = "/sys/kernel/mm/transparent_hugepage"


def find_bwrap() -> str | None:
    """The bwrap executable, or None (not installed, or not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    return shutil.which("bwrap")


def _real(path: str) -> str:
    return os.path.realpath(path)


def library_paths() -> list[str]:
    """sys.path entries the worker needs: the standard library and installed packages only,
    never the current folder or a source checkout (which may hold solutions/ or submissions)."""
    prefixes = {_real(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                   sys.base_exec_prefix)}
    found: list[str] = []
    for entry in sys.path:
        if not entry or not os.path.isdir(entry):
            continue
        real = _real(entry)
        under_prefix = any(real == p or real.startswith(p + os.sep) for p in prefixes)
        if (under_prefix or "site-packages" in real or "dist-packages" in real) \
                and real not in found:
            found.append(real)
    return found


def _python_roots() -> list[str]:
    roots = {_real(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                sys.base_exec_prefix)}
    roots.add(str(Path(_real(sys.executable)).parent))
    return sorted(roots)


def sandbox_command(command: list[str], *, bwrap: str, package_dir: str, tmp_bytes: int,
                    env: dict[str, str]) -> list[str]:
    """``command`` wrapped in bwrap: read-only system, Python and ``package_dir``; private /tmp
    of ``tmp_bytes``; new pid, network, ipc and uts namespaces; ``env`` only."""
    args = [bwrap]
    for d in _SYSTEM_DIRS:
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    # /tmp first: a package or Python under /tmp (a CI clone, say) is bound on top of it after,
    # where a later tmpfs would hide it
    args += ["--proc", "/proc", "--dev", "/dev", "--size", str(tmp_bytes), "--tmpfs", "/tmp"]
    # of /sys only the huge-page settings, read-only: glibc's malloc reads them to put its heap
    # in 2 MB pages (worker.processes.WORKER_ENV), and keeps 4 KB pages where it cannot. Only
    # where they can be read: bwrap gives up on a source it cannot reach (but a missing one)
    if os.access(os.path.join(_HUGE_PAGE_SETTINGS, "enabled"), os.R_OK):
        args += ["--ro-bind", _HUGE_PAGE_SETTINGS, _HUGE_PAGE_SETTINGS]
    bound: list[str] = []
    made: set[str] = {"/tmp"}
    for path in sorted({*_python_roots(), *library_paths(), _real(package_dir)}):
        if any(path == b or path.startswith(b.rstrip("/") + "/") for b in (*_SYSTEM_DIRS, *bound)):
            continue   # already visible
        # the folders above it (/root, say) would copy the host's permissions, often 0700:
        # make them traversable, and empty, so that the children's uid can reach the libraries
        for parent in reversed(Path(path).parents[:-1]):
            if str(parent) not in made:
                args += ["--perms", "0755", "--dir", str(parent)]
                made.add(str(parent))
        args += ["--ro-bind", path, path]
        bound.append(path)
    args += ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
             "--unshare-cgroup-try", "--hostname", "sandbox", "--new-session",
             "--chdir", "/tmp", "--clearenv"]
    if os.geteuid() != 0:
        args += ["--unshare-user"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    return args + ["--"] + command
