"""Discovery of a class: which file in a folder (or a zip of it) is each student's submission.

``discover_submissions`` finds one submission per student: a file (``alice.py``,
``bob.ipynb``), a folder (``carol/...``) or a zip of either (``dave.zip``); the student id is the
file or folder name. Everything else is listed as skipped, with the reason. A student whose
submission cannot be graded (an empty folder, two candidate files, a broken zip) still gets an
entry, with the problem: every student gets a row. Nothing is run, and a zip is read with limits
on its size.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Sequence

__all__ = ["Discovery", "DiscoveryError", "Entry", "Skipped", "discover_submissions",
           "pick_submission_file", "student_id", "submission_in_folder", "unpack_class_zip",
           "unpack_zip_member"]

SUFFIXES = (".py", ".ipynb")
_IGNORED_DIRS = {"__pycache__", ".ipynb_checkpoints", "__MACOSX", ".git"}
_MAX_ZIP_MEMBERS = 10_000
_MAX_ZIP_TOTAL = 200 * 2**20       # uncompressed bytes in one zip
_MAX_ZIP_MEMBER = 64 * 2**20       # the submission file inside it (notebooks carry outputs)
# what reading one zip member can raise: a corrupt member, one that lies about its size or CRC,
# an unsupported compression or encryption, a name the file system refuses
_MEMBER_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError,
                  NotImplementedError, RuntimeError)


class DiscoveryError(Exception):
    """The class folder or zip cannot be read at all; one line says why."""


@dataclass(frozen=True)
class Entry:
    """One student's submission as found in the folder."""

    student: str                  # the id: file or folder name, safe as a folder name
    source: str                   # what was found, relative to the folder: "alice.py", "carol/"
    label: str                    # what the reports call it: "carol/backprop.py"
    digest: str                   # sha256 of everything the student submitted
    path: Path | None = None      # the file to grade (inside a zip: read from ``zip_member``)
    zip_member: str | None = None
    problem: str | None = None    # why it cannot be graded; it still gets a row and a report


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass(frozen=True)
class Discovery:
    entries: tuple[Entry, ...]
    skipped: tuple[Skipped, ...]
    # names that made one id and were given distinct ones: "alice!.py and alice.py ..."
    collisions: tuple[str, ...] = ()


def student_id(name: str) -> str:
    """A file or folder name as a portable folder name: letters, digits, ``._@-``."""
    stem = re.sub(r"[^A-Za-z0-9._@-]+", "_", name).strip("._-")
    return stem[:100] or "student"


def _sha256_file(path: Path) -> str:
    """The file's sha256; for a file that cannot be read (gone since the listing, no permission),
    one of the reason: the student keeps their row, and grading says why."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        return hashlib.sha256(f"cannot be read: {e.strerror}".encode()).hexdigest()
    return h.hexdigest()


def _visible(parts: Sequence[str]) -> bool:
    return not any(p.startswith(".") or p in _IGNORED_DIRS for p in parts)


def pick_submission_file(names: Sequence[str], *, where: str) -> tuple[str | None, str | None]:
    """Among a folder's (or zip's) files, the one to grade, or the reason there is none.

    One ``.py``/``.ipynb`` file: that one. Several: the one named ``backprop``, as the exercise
    file is. Otherwise the student gets an error naming the candidates, never a silent guess.
    """
    candidates = sorted(n for n in names
                        if PurePosixPath(n).suffix.lower() in SUFFIXES
                        and _visible(PurePosixPath(n).parts))
    if len(candidates) == 1:
        return candidates[0], None
    if not candidates:
        others = sorted(n for n in names if _visible(PurePosixPath(n).parts))
        found = f" (found: {', '.join(others[:5])}{', ...' if len(others) > 5 else ''})" \
            if others else " (it is empty)"
        return None, f"no .py or .ipynb file in {where}{found}"
    named = [n for n in candidates if PurePosixPath(n).stem.lower() == "backprop"]
    if len(named) == 1:
        return named[0], None
    shown = named or candidates
    return None, (f"several files could be the submission in {where}: "
                  f"{', '.join(shown[:6])}{', ...' if len(shown) > 6 else ''}; keep one "
                  "(or name it backprop.py)")


def submission_in_folder(folder: Path, rel: str) -> Entry:
    """The student's entry for a folder: every visible file hashed, the submission picked."""
    files: list[str] = []
    h = hashlib.sha256()
    for root, dirs, names in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if _visible((d,)))
        for name in sorted(names):
            p = Path(root) / name
            if not _visible((name,)) or p.is_symlink() or not p.is_file():
                continue
            r = p.relative_to(folder).as_posix()
            files.append(r)
            h.update(r.encode() + b"\0" + _sha256_file(p).encode())
    pick, problem = pick_submission_file(files, where=f"{rel}/")
    return Entry(student=student_id(folder.name), source=f"{rel}/",
                 label=f"{rel}/{pick}" if pick else f"{rel}/", digest=h.hexdigest(),
                 path=folder / pick if pick else None, problem=problem)


def _zip_files(path: Path, name: str) -> list[zipfile.ZipInfo]:
    """The files listed in the zip at ``path`` (named ``name`` in messages), within the size
    limits. Raises DiscoveryError when it cannot be read or is too large once unpacked."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = [i for i in z.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise DiscoveryError(f"{name}: not a readable zip file ({e})") from None
    if len(infos) > _MAX_ZIP_MEMBERS or sum(i.file_size for i in infos) > _MAX_ZIP_TOTAL:
        raise DiscoveryError(f"{name}: too large once unpacked (more than "
                             f"{_MAX_ZIP_TOTAL // 2**20} MB or {_MAX_ZIP_MEMBERS} files)")
    return infos


def _zip_entry(path: Path, rel: str) -> Entry:
    digest = _sha256_file(path)
    student = student_id(path.stem)
    try:
        infos = _zip_files(path, rel)
    except DiscoveryError as e:
        return Entry(student, rel, rel, digest, problem=str(e))
    regular = [i.filename for i in infos   # a link's "content" is its target: never graded
               if stat.S_IFMT(i.external_attr >> 16) in (0, stat.S_IFREG)]
    pick, problem = pick_submission_file(regular, where=rel)
    if pick and next(i for i in infos if i.filename == pick).file_size > _MAX_ZIP_MEMBER:
        pick, problem = None, f"{rel}: {pick} is larger than {_MAX_ZIP_MEMBER // 2**20} MB"
    return Entry(student, rel, f"{rel}/{pick}" if pick else rel, digest, path=path,
                 zip_member=pick, problem=problem)


def unpack_zip_member(entry: Entry, scratch: Path) -> Path:
    """The submission inside a student's zip, read with a size limit, as a file in a folder of
    its own under ``scratch``."""
    assert entry.path is not None and entry.zip_member is not None
    target = Path(tempfile.mkdtemp(dir=scratch)) / student_id(PurePosixPath(entry.zip_member).name)
    try:
        with zipfile.ZipFile(entry.path) as z, z.open(entry.zip_member) as member:
            data = member.read(_MAX_ZIP_MEMBER + 1)
    except _MEMBER_ERRORS as e:
        raise DiscoveryError(f"{entry.label}: could not be read ({_reason(e)})") from None
    if len(data) > _MAX_ZIP_MEMBER:
        raise DiscoveryError(f"{entry.label}: larger than {_MAX_ZIP_MEMBER // 2**20} MB once "
                             "unpacked")
    target.write_bytes(data)
    return target


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error)[:200]}" if str(error) else type(error).__name__


def unpack_class_zip(path: Path, into: Path) -> tuple[Path, tuple[Skipped, ...]]:
    """A course platform's download of the whole class, unpacked safely (no paths outside
    ``into``, no links, size limits); a single top folder is descended into. Returns the folder
    and the members skipped, with the reason: one bad member never stops the class."""
    infos = _zip_files(path, str(path))
    into.mkdir(parents=True, exist_ok=True)
    skipped: list[Skipped] = []
    budget = _MAX_ZIP_TOTAL
    try:
        with zipfile.ZipFile(path) as z:
            for info in infos:
                reason, written = _unpack_member(z, info, into, budget)
                budget -= written
                if reason:
                    skipped.append(Skipped(info.filename, reason))
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise DiscoveryError(f"{path}: not a readable zip file ({e})") from None
    top = [p for p in into.iterdir() if _visible((p.name,))]
    folder = top[0] if len(top) == 1 and top[0].is_dir() else into
    return folder, tuple(skipped)


def _unpack_member(z: zipfile.ZipFile, info: zipfile.ZipInfo, into: Path, budget: int
                   ) -> tuple[str | None, int]:
    """Unpack one member under ``into``; why not (or None) and the bytes written."""
    parts = PurePosixPath(info.filename.replace("\\", "/")).parts
    if not parts or parts[0] == "/" or ".." in parts:
        return "a path outside the class folder (absolute or with ..): not unpacked", 0
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link (not followed)", 0
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind and kind != stat.S_IFREG:
        return "not a regular file: not unpacked", 0
    target = into.joinpath(*parts)
    try:
        with z.open(info) as src:
            data = src.read(budget + 1)
        if len(data) > budget:
            return f"the class is larger than {_MAX_ZIP_TOTAL // 2**20} MB once unpacked", 0
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as dst:
            dst.write(data)
    except (FileExistsError, IsADirectoryError, NotADirectoryError):
        return "another member already has this name (as a file or as a folder)", 0
    except _MEMBER_ERRORS as e:
        return f"could not be read ({_reason(e)})", 0
    return None, len(data)


def discover_submissions(folder: str | Path, *, exclude: Sequence[str | Path] = ()
                         ) -> Discovery:
    """One entry per student in ``folder`` (sorted by id), and what was skipped and why."""
    root = Path(folder)
    if not root.is_dir():
        raise DiscoveryError(f"{root}: no such folder" if not root.exists() else
                             f"{root}: is a file, expected a folder of submissions")
    excluded = {Path(p).resolve() for p in exclude}
    found: list[Entry] = []
    skipped: list[Skipped] = []
    for p in sorted(root.iterdir(), key=lambda p: p.name):
        rel = p.name
        if p.resolve() in excluded:
            skipped.append(Skipped(rel, "the output folder"))
        elif not _visible((p.name,)):
            skipped.append(Skipped(rel, "hidden or system file"))
        elif p.is_symlink():
            skipped.append(Skipped(rel, "a symbolic link (not followed)"))
        elif p.is_dir():
            found.append(submission_in_folder(p, rel))
        elif not p.is_file():
            skipped.append(Skipped(rel, "not a regular file (a FIFO, socket or device): not read"))
        elif p.suffix.lower() == ".zip":
            found.append(_zip_entry(p, rel))
        elif p.suffix.lower() in SUFFIXES:
            h = hashlib.sha256(p.name.encode() + b"\0" + _sha256_file(p).encode())
            found.append(Entry(student_id(p.stem), rel, rel, h.hexdigest(), path=p))
        else:
            skipped.append(Skipped(rel, "not a .py, .ipynb or .zip file, nor a folder"))
    entries, collisions = _one_per_student(found)
    return Discovery(entries, tuple(skipped), collisions)


def _given_name(entry: Entry) -> str:
    """The name the student gave, before it was made an id: "alice!" for "alice!.py"."""
    name = entry.source.rstrip("/")
    return (name if entry.source.endswith("/") else PurePosixPath(name).stem).lower()


def _one_per_student(found: list[Entry]) -> tuple[tuple[Entry, ...], tuple[str, ...]]:
    """Sorted by id, and the collisions. Submissions of one given name (``Jo.py`` and
    ``jo.ipynb``) make one entry naming both, with the problem (never a silent pick); different
    names that make one id (``alice!.py``, ``alice.py``) are different students: each is
    graded under an id of its own, and the collision is listed."""
    by_id: dict[str, list[Entry]] = {}
    for e in found:
        by_id.setdefault(e.student.lower(), []).append(e)
    taken = set(by_id)
    entries, collisions = [], []
    for same in by_id.values():
        by_name: dict[str, list[Entry]] = {}
        for e in same:
            by_name.setdefault(_given_name(e), []).append(e)
        # the name that is its id already keeps it; the others get "-2", "-3", ...
        names = sorted(by_name, key=lambda n: (n != same[0].student.lower(), n))
        for i, name in enumerate(names):
            entry = _one_entry(by_name[name])
            if i:
                entry = replace(entry, student=_free_id(entry.student, taken))
            entries.append(entry)
        if len(names) > 1:
            collisions.append(" and ".join(f"{e.source} (graded as {e.student})"
                                           for e in entries[-len(names):])
                              + " make the same id: each is graded under its own")
    return tuple(sorted(entries, key=lambda e: e.student)), tuple(collisions)


def _one_entry(same: list[Entry]) -> Entry:
    if len(same) == 1:
        return same[0]
    sources = ", ".join(e.source for e in same)
    h = hashlib.sha256("".join(e.digest for e in same).encode()).hexdigest()
    return Entry(same[0].student, sources, sources, h,
                 problem=f"several submissions for {same[0].student}: {sources}; "
                         "keep one and grade again")


def _free_id(student: str, taken: set[str]) -> str:
    n = 2
    while f"{student}-{n}".lower() in taken:
        n += 1
    taken.add(f"{student}-{n}".lower())
    return f"{student}-{n}"
