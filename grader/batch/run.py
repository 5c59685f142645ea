"""Batch grading: a folder of submissions -> per-student results, reports and a gradebook.

``discover_submissions`` finds one submission per student: a file (``alice.py``,
``bob.ipynb``), a folder (``carol/...``) or a zip of either (``dave.zip``); the student id is the
file or folder name. Everything else is listed as skipped, with the reason. ``grade_many`` grades
``jobs`` at a time in worker processes (forked after the references every submission is compared
with are computed; sharing one sandbox worker where they can; they answer in JSON; one whose
student's code runs long does not count, up to twice ``jobs`` processes), or on threads
when the caller gives its own ``grade`` function, writes every file
atomically (a temp file, then a rename), and skips students whose submission and grading config
are unchanged since their last complete grading, so a killed or interrupted batch resumes where it
stopped. Output layout::

    OUT/gradebook.csv                      one row per student (grader.output.exports)
    OUT/summary.html                       the class summary (grader.output.report)
    OUT/batch.json                         what was found, skipped, graded, and how
    OUT/students/<id>/results.json         backprop-grader/result/v1
    OUT/students/<id>/report.html          the student's report
    OUT/students/<id>/gradescope.json      the same result in Gradescope's format
    OUT/students/<id>/record.json          hashes of what was graded; written last
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import json
import os
import queue
import re
import signal
import stat
import tempfile
import threading
import time
import traceback
import zipfile
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import IO, Any, Callable, Iterator, Sequence

from .. import __version__
from ..api import GradeRequest, error_result, grade_submission, prepare_grading
from ..output.exports import GradebookRow, gradescope_results, render_gradebook
from ..output.results import Result, read_result, result_from_dict, result_to_dict, write_atomic, \
    write_result
from ..sandbox.runner import SandboxRunner, can_share_worker

__all__ = [
    "BatchError",
    "BatchSummary",
    "Discovery",
    "Entry",
    "Skipped",
    "config_digest",
    "discover_submissions",
    "grade_many",
    "pick_submission_file",
    "submission_in_folder",
]

SUFFIXES = (".py", ".ipynb")
_IGNORED_DIRS = {"__pycache__", ".ipynb_checkpoints", "__MACOSX", ".git"}
_MAX_ZIP_MEMBERS = 10_000
_MAX_ZIP_TOTAL = 200 * 2**20       # uncompressed bytes in one zip
_MAX_ZIP_MEMBER = 64 * 2**20       # the submission file inside it (notebooks carry outputs)
RECORD_SCHEMA = "backprop-grader/record/v1"
BATCH_SCHEMA = "backprop-grader/batch/v1"

GradeFn = Callable[[Path, GradeRequest], Result]


class BatchError(Exception):
    """The batch cannot run at all (no such folder, output in use); one line says why."""


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


@dataclass(frozen=True)
class BatchSummary:
    """What one ``grade_many`` call did."""

    out: Path
    students: int                 # rows in the gradebook
    graded: int                   # graded in this run
    unchanged: int                # skipped: graded before with the same file and config
    pending: int                  # not graded (interrupted)
    failed: int                   # status other than "graded", this run and before
    skipped: tuple[Skipped, ...]
    interrupted: bool
    seconds: float
    statuses: dict[str, str] = field(default_factory=dict)   # student -> status
    notes: tuple[str, ...] = ()

    @property
    def rate(self) -> float:
        return self.graded / self.seconds if self.seconds > 0 else 0.0


# -- discovery ---------------------------------------------------------------------------------

def _student_id(name: str) -> str:
    """A file or folder name as a portable folder name: letters, digits, ``._@-``."""
    stem = re.sub(r"[^A-Za-z0-9._@-]+", "_", name).strip("._-")
    return stem[:100] or "student"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
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
    return Entry(student=_student_id(folder.name), source=f"{rel}/",
                 label=f"{rel}/{pick}" if pick else f"{rel}/", digest=h.hexdigest(),
                 path=folder / pick if pick else None, problem=problem)


def _zip_entry(path: Path, rel: str) -> Entry:
    digest = _sha256_file(path)
    student = _student_id(path.stem)
    try:
        with zipfile.ZipFile(path) as z:
            infos = [i for i in z.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        return Entry(student, rel, rel, digest, problem=f"{rel}: not a readable zip file ({e})")
    if len(infos) > _MAX_ZIP_MEMBERS or sum(i.file_size for i in infos) > _MAX_ZIP_TOTAL:
        return Entry(student, rel, rel, digest,
                     problem=f"{rel}: too large once unpacked (more than "
                             f"{_MAX_ZIP_TOTAL // 2**20} MB or {_MAX_ZIP_MEMBERS} files)")
    pick, problem = pick_submission_file([i.filename for i in infos], where=rel)
    if pick and next(i for i in infos if i.filename == pick).file_size > _MAX_ZIP_MEMBER:
        pick, problem = None, f"{rel}: {pick} is larger than {_MAX_ZIP_MEMBER // 2**20} MB"
    return Entry(student, rel, f"{rel}/{pick}" if pick else rel, digest, path=path,
                 zip_member=pick, problem=problem)


def unpack_class_zip(path: Path, into: Path) -> Path:
    """A course platform's download of the whole class, unpacked safely (no paths outside
    ``into``, no links, size limits); a single top folder is descended into."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = [i for i in z.infolist() if not i.is_dir()]
            if len(infos) > _MAX_ZIP_MEMBERS or sum(i.file_size for i in infos) > _MAX_ZIP_TOTAL:
                raise BatchError(f"{path}: too large once unpacked (more than "
                                 f"{_MAX_ZIP_TOTAL // 2**20} MB or {_MAX_ZIP_MEMBERS} files)")
            for info in infos:
                parts = PurePosixPath(info.filename.replace("\\", "/")).parts
                if (not parts or parts[0] == "/" or ".." in parts
                        or stat.S_ISLNK(info.external_attr >> 16)):
                    continue
                target = into.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(target, "wb") as dst:
                    dst.write(src.read(_MAX_ZIP_TOTAL))
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise BatchError(f"{path}: not a readable zip file ({e})") from None
    top = [p for p in into.iterdir() if _visible((p.name,))]
    return top[0] if len(top) == 1 and top[0].is_dir() else into


def discover_submissions(folder: str | Path, *, exclude: Sequence[str | Path] = ()
                         ) -> Discovery:
    """One entry per student in ``folder`` (sorted by id), and what was skipped and why."""
    root = Path(folder)
    if not root.is_dir():
        raise BatchError(f"{root}: no such folder" if not root.exists() else
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
        elif p.suffix.lower() == ".zip":
            found.append(_zip_entry(p, rel))
        elif p.suffix.lower() in SUFFIXES:
            h = hashlib.sha256(p.name.encode() + b"\0" + _sha256_file(p).encode())
            found.append(Entry(_student_id(p.stem), rel, rel, h.hexdigest(), path=p))
        else:
            skipped.append(Skipped(rel, "not a .py, .ipynb or .zip file, nor a folder"))
    by_id: dict[str, list[Entry]] = {}
    for e in found:
        by_id.setdefault(e.student.lower(), []).append(e)
    entries = []
    for same in by_id.values():
        if len(same) == 1:
            entries.append(same[0])
            continue
        sources = ", ".join(e.source for e in same)
        h = hashlib.sha256("".join(e.digest for e in same).encode()).hexdigest()
        entries.append(Entry(same[0].student, sources, sources, h,
                             problem=f"several submissions for {same[0].student}: {sources}; "
                                     "keep one and grade again"))
    return Discovery(tuple(sorted(entries, key=lambda e: e.student)), tuple(skipped))


# -- files ----------------------------------------------------------------------------------

def _write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _canonical(value: Any) -> Any:
    """A JSON form that is the same in every process (sets sorted, dataclasses named)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__type__": type(value).__name__,
                **{f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (set, frozenset)):
        return sorted((_canonical(v) for v in value), key=repr)
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float):
        return repr(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return repr(value)


def _grader_digest() -> str:
    """sha256 of the grader's own code and templates: a fixed grader regrades everyone."""
    package = Path(__file__).resolve().parent.parent
    h = hashlib.sha256(__version__.encode())
    for p in sorted(package.rglob("*")):
        if p.is_file() and p.suffix in (".py", ".html", ".css", ".j2", ".txt") \
                and "__pycache__" not in p.parts:
            h.update(p.relative_to(package).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def config_digest(request: GradeRequest, *extra: Any) -> str:
    """sha256 of everything that decides a grade besides the submission: the request, the
    grader's code, and ``extra`` (policies the request does not hold)."""
    blob = json.dumps([_grader_digest(), _canonical(request), _canonical(list(extra))],
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class _OutputLock:
    """One batch at a time per output folder (released by the OS even on kill -9)."""

    def __init__(self, out: Path) -> None:
        self.path = out / ".lock"
        self.file: IO[str] | None = None

    def __enter__(self) -> "_OutputLock":
        try:
            import fcntl
        except ImportError:      # Windows: no advisory locks; one run at a time is then on you
            return self
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise BatchError(f"{self.path.parent}: another grading run is writing there; "
                             "wait for it or choose another --out") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.file:
            self.file.close()


# -- grading one student --------------------------------------------------------------------

@dataclass
class _Done:
    entry: Entry
    result: Result
    seconds: float
    data: dict[str, Any] | None = None     # the result as written to results.json


def _student_dir(out: Path, entry: Entry) -> Path:
    return out / "students" / entry.student


def _reusable(out: Path, entry: Entry, digest: str) -> Result | None:
    """The earlier result when this student's submission and the config are unchanged."""
    folder = _student_dir(out, entry)
    try:
        record = json.loads((folder / "record.json").read_text("utf-8"))
        if (record.get("schema") != RECORD_SCHEMA or record.get("submission_sha256") != entry.digest
                or record.get("config_sha256") != digest):
            return None
        if not all((folder / name).is_file() for name in record.get("files", [])):
            return None
        return read_result(folder / "results.json")
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _unpack(entry: Entry, scratch: Path) -> Path:
    """A zip member, read with a size limit, as a file in a scratch folder of its own."""
    assert entry.path is not None and entry.zip_member is not None
    target = Path(tempfile.mkdtemp(dir=scratch)) / _student_id(PurePosixPath(entry.zip_member).name)
    with zipfile.ZipFile(entry.path) as z, z.open(entry.zip_member) as member:
        data = member.read(_MAX_ZIP_MEMBER + 1)
    target.write_bytes(data)
    return target


def _grade_entry(entry: Entry, request: GradeRequest, grade: GradeFn, scratch: Path
                 ) -> tuple[Result, str | None]:
    """Grade one student; never raises. Returns the result and our traceback if we failed."""
    if entry.problem:
        return error_result(entry.label, entry.problem, request=request), None
    try:
        assert entry.path is not None
        path = _unpack(entry, scratch) if entry.zip_member else entry.path
        result = grade(path, request)
        message = result.message
        if message and str(path) in message:   # the student's name for it, not our temp path
            message = message.replace(str(path), entry.label)
        return replace(result, submission=entry.label, message=message), None
    except Exception as e:  # noqa: BLE001 - one student's failure must not stop the batch
        tb = traceback.format_exc()
        message = (f"the grader failed on this submission ({type(e).__name__}: {str(e)[:300]}); "
                   "the batch went on. Please report this with the file.")
        return error_result(entry.label, message, request=request), tb


def _render_report(result: Result, student: str) -> str | None:
    try:
        from ..output.report import render_report
    except ImportError:
        return None
    return render_report(result, student=student, summary_href="../../summary.html")


def _write_student(out: Path, entry: Entry, result: Result, *, request: GradeRequest,
                   digest: str, seconds: float, gradescope: Any, grader_traceback: str | None
                   ) -> dict[str, Any]:
    """results.json, report.html, gradescope.json, then record.json: complete only when last.
    Returns results.json's content as a dict."""
    folder = _student_dir(out, entry)
    files = ["results.json", "gradescope.json"]
    data = write_result(result, folder / "results.json")
    _write_json(folder / "gradescope.json",
                gradescope_results(result, options=request.options, settings=gradescope))
    html = _render_report(result, entry.student)
    if html is not None:
        write_atomic(folder / "report.html", html)
        files.append("report.html")
    record = {"schema": RECORD_SCHEMA, "student": entry.student, "source": entry.source,
              "submission": entry.label, "submission_sha256": entry.digest,
              "config_sha256": digest, "grader_version": __version__, "status": result.status,
              "seconds": round(seconds, 3), "files": files}
    if grader_traceback:
        record["grader_traceback"] = grader_traceback
    _write_json(folder / "record.json", record)
    return data


# -- progress -------------------------------------------------------------------------------

class _Progress:
    """Count, rate, ETA and failures on one line of a terminal; silent when not a terminal."""

    def __init__(self, total: int, stream: IO[str] | None) -> None:
        self.total, self.stream = total, stream
        self.done = self.failed = 0
        self.start = time.monotonic()
        self.last = 0.0
        self.enabled = bool(stream and stream.isatty())

    def update(self, failed: bool) -> None:
        self.done += 1
        self.failed += failed
        now = time.monotonic()
        if self.enabled and (now - self.last > 0.1 or self.done == self.total):
            self.last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        assert self.stream is not None
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        eta = f"{int(left) // 60}:{int(left) % 60:02d}"
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}  "
                          f"{rate:.1f}/s  ETA {eta}  failed {self.failed} ")
        self.stream.flush()

    def message(self, text: str) -> None:
        if self.stream:
            self.stream.write(("\n" if self.enabled and self.done else "") + text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.done:
            assert self.stream is not None
            self.stream.write("\n")
            self.stream.flush()


# -- the batch --------------------------------------------------------------------------------

def _clean_stray_temp_files(out: Path) -> None:
    """Temp files left by a killed run (never read: they are renamed only when complete)."""
    for tmp in out.glob("students/*/.*.tmp"):
        tmp.unlink(missing_ok=True)
    for tmp in out.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


@dataclass
class _Control:
    """Ctrl-C once: take no new submissions. Twice: also drop those in progress unwritten (the
    sandbox is being shut down under them, so their results would be wrong)."""

    stop: threading.Event = field(default_factory=threading.Event)
    abandon: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class _Job:
    """What every grading of the batch shares."""

    out: Path
    request: GradeRequest
    digest: str
    gradescope: Any
    scratch: Path


def _write_graded(entry: Entry, job: _Job, result: Result, grader_traceback: str | None,
                  start: float) -> _Done:
    """Write a graded student's files; never raises (a write that fails is the student's error
    row)."""
    data = None
    try:
        data = _write_student(job.out, entry, result, request=job.request, digest=job.digest,
                              seconds=time.monotonic() - start, gradescope=job.gradescope,
                              grader_traceback=grader_traceback)
    except Exception:  # noqa: BLE001 - e.g. disk full: report this student, go on
        result = error_result(entry.label, "could not write this student's files: "
                              + traceback.format_exc().strip().splitlines()[-1],
                              request=job.request)
    return _Done(entry, result, time.monotonic() - start, data=data)


def _grade_and_write(entry: Entry, job: _Job, grade: GradeFn) -> _Done:
    """Grade one student and write their files; never raises."""
    start = time.monotonic()
    result, tb = _grade_entry(entry, job.request, grade, job.scratch)
    return _write_graded(entry, job, result, tb, start)


_CLASS_ONLY = {"configs": [], "modes": [], "views": [], "traceback": None, "explanation": None,
               "hint": None}


def _for_class_files(data: dict[str, Any]) -> dict[str, Any]:
    """A result with only what the gradebook and the class summary show: the per-config and
    per-mode verdicts, pictures, tracebacks and the program's output stay in the student's own
    files. A quarter of the size, a fraction of the time to read back."""
    slim = {**data, "output": ""}
    slim["exercises"] = [{**ex, "gradients": [{**g, **_CLASS_ONLY} for g in ex["gradients"]]}
                         for ex in data.get("exercises", [])]
    return slim


class _ThreadPool:
    """Gradings on threads of this process: for a ``grade`` function given by the caller
    (tests, other runners), which may hold state that cannot cross to another process."""

    def __init__(self, jobs: int, job: _Job, grade: GradeFn) -> None:
        self.job, self.grade = job, grade
        self.tasks: queue.Queue[Entry | None] = queue.Queue()
        self.done: queue.Queue[_Done] = queue.Queue()
        self.control = _Control()
        # held while a student's files are written and queued: abandon() takes it, so that no
        # student is half-way written, or written but not queued, when it looks
        self.writing = threading.Lock()
        self.counting = threading.Lock()
        self.outstanding = 0        # submitted, not handed back yet: queued, in progress or done
        self.threads = [threading.Thread(target=self._work, daemon=True, name=f"grade-{i}")
                        for i in range(jobs)]
        for t in self.threads:
            t.start()

    def _work(self) -> None:
        while not self.control.stop.is_set():
            entry = self.tasks.get()
            if entry is None:
                return
            # _grade_and_write, with the lock between grading and writing
            start = time.monotonic()
            result, tb = _grade_entry(entry, self.job.request, self.grade, self.job.scratch)
            with self.writing:
                if self.control.abandon.is_set():
                    continue                    # a second Ctrl-C: dropped unwritten
                self.done.put(_write_graded(entry, self.job, result, tb, start))

    def _count(self, change: int) -> None:
        with self.counting:
            self.outstanding += change

    def submit(self, entry: Entry) -> None:
        self._count(+1)
        self.tasks.put(entry)

    def next_done(self, timeout: float) -> _Done | None:
        try:
            done = self.done.get(timeout=timeout)
        except queue.Empty:
            return None
        self._count(-1)
        return done

    def busy(self) -> int:
        """The students still to come back: being graded, or graded and not taken yet (and,
        until stop_taking, waiting for a thread)."""
        return self.outstanding

    def stop_taking(self) -> None:
        self.control.stop.set()
        while True:             # the students no thread has started: they never will now
            try:
                entry = self.tasks.get_nowait()
            except queue.Empty:
                break
            if entry is not None:
                self._count(-1)
        for _ in self.threads:
            self.tasks.put(None)

    def abandon(self) -> list[_Done]:
        """Drop the gradings in progress unwritten; return those that finished before (a
        student being written now is waited for: a few milliseconds)."""
        finished = []
        with self.writing:
            self.control.abandon.set()
            while True:
                try:
                    finished.append(self.done.get_nowait())
                except queue.Empty:
                    return finished

    def close(self) -> None:
        if not self.control.stop.is_set():
            self.stop_taking()


def _die_with_parent(parent: int) -> None:
    """Linux: this worker is killed when the batch process dies (even by kill -9)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)      # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:                      # it died before prctl took effect
        os._exit(1)


def _process_worker(conn: Any, parent: int, entries: tuple[Entry, ...], job: _Job,
                    shared: SandboxRunner | None) -> None:
    """A grading process: the batch's sandbox worker (``shared``, attached before the fork) or
    its own; takes entry indexes, answers with the student's result as JSON (results.json's
    format, slimmed for the class files)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the batch process decides when to stop
    _die_with_parent(parent)
    # the garbage collector: what came from the batch process (the references, torch, the
    # templates) lives as long as this process, so it is frozen out of the collector's way (a
    # full collection takes a millisecond, not sixty, and leaves those pages shared). The
    # batch process paused the collector (_collector_paused); here it runs again, since a
    # grading leaves some 60 objects in cycles, but at a threshold of 10,000: a grading makes
    # and drops tens of thousands of objects, and at the default 700 the collector ran six
    # times a student, 2% of this process's CPU
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    gc.enable()
    with shared or SandboxRunner() as runner:
        def tell_slow() -> None:        # the batch may start another grading meanwhile
            try:
                conn.send_bytes(_SLOW)
            except OSError:
                pass                    # the batch is gone: this process follows it

        runner.on_slow_call = tell_slow

        def grade(path: Path, request: GradeRequest) -> Result:
            return grade_submission(path, request=request, runner=runner)

        while True:
            try:
                message = json.loads(conn.recv_bytes())
            except (EOFError, OSError, ValueError):
                return
            if message is None:
                return
            done = _grade_and_write(entries[int(message)], job, grade)
            data = done.data if done.data is not None else result_to_dict(done.result)
            conn.send_bytes(json.dumps({"index": int(message), "seconds": done.seconds,
                                        "result": _for_class_files(data)},
                                       separators=(",", ":")).encode())


def _start_method() -> str:
    import multiprocessing

    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def _launch_shared_runner(given: SandboxRunner | None, stack: contextlib.ExitStack
                          ) -> SandboxRunner | None:
    """The sandbox worker the grading processes are to share, launched (it imports torch while
    the references are computed): the caller's, else the batch's own, closed with ``stack``.
    None where they cannot share one: a spawned process cannot inherit it, and without a uid of
    its own for each child the worker could not tell one student's stray processes from
    another's (runner.can_share_worker)."""
    if _start_method() != "fork" or not can_share_worker():
        return None
    if given is None:
        given = stack.enter_context(SandboxRunner())
    return given.launch()


def _ready_to_share(runner: SandboxRunner | None) -> SandboxRunner | None:
    """``runner`` started and ready, if its children do get uids of their own (the worker says
    so once it runs); else None, and each grading process starts a worker of its own (one that
    cannot start is then reported for that process's students)."""
    if runner is None:
        return None
    try:
        runner.start()
    except RuntimeError:
        return None
    return runner if runner.can_drop_uid else None


_SLOW = b'"slow"'        # a grading process's message: its child's stub call runs long


class _ProcessPool:
    """Gradings in ``jobs`` worker processes: the grading work in this process would otherwise
    share one core (the GIL). ``shared``: the sandbox worker they share (_launch_shared_runner),
    or None: each starts its own. Messages are JSON (never pickle); a worker that dies is
    replaced and its student gets an error row.

    A worker whose student's code runs long (a stub call past Limits.slow_seconds, the child
    lowered to the least CPU priority: most likely a loop waiting out its wall time) says so,
    and does not count against ``jobs`` until its answer comes: another worker (started if
    none is free, up to twice ``jobs`` in all) takes the next student meanwhile."""

    def __init__(self, jobs: int, job: _Job, entries: tuple[Entry, ...],
                 shared: SandboxRunner | None) -> None:
        import multiprocessing

        method = _start_method()
        self.context = multiprocessing.get_context(method)
        self.job, self.entries = job, entries
        self.index = {e.student: i for i, e in enumerate(entries)}
        self.workers: dict[Any, tuple[Any, int | None]] = {}   # conn -> (process, busy with)
        self.waiting: deque[int] = deque()
        self.ready: deque[_Done] = deque()
        self.jobs = jobs
        self.slow: set[Any] = set()             # conns of busy workers that said _SLOW
        self.taking = True
        self.shared: SandboxRunner | None = None
        try:
            if method == "fork":        # computed once here, shared by the forked workers
                prepare_grading(job.request)
                _render_report(error_result("warm-up", "warm-up", request=job.request), "warm-up")
                self.shared = _ready_to_share(shared)
            for _ in range(jobs):
                self._start_worker()
        except BaseException:
            self.close()
            raise

    def _start_worker(self) -> None:
        ours, theirs = self.context.Pipe(duplex=True)
        shared = self.shared.attach() if self.shared is not None else None
        process = self.context.Process(target=_process_worker, daemon=True,
                                       args=(theirs, os.getpid(), self.entries, self.job, shared))
        try:
            process.start()
        finally:
            theirs.close()
            if shared is not None:
                shared.detach()         # the worker's copy stays open
        self.workers[ours] = (process, None)

    def _dispatch(self) -> None:
        """Students to free workers while fewer than ``jobs`` gradings are under way (a slow
        one not counted), starting a worker where none is free. A worker that cannot start, or
        dies as it is sent a student, ends this round: the next call tries again."""
        while self.waiting and self.taking:
            under_way = sum(index is not None and conn not in self.slow
                            for conn, (_, index) in self.workers.items())
            free = [conn for conn, (_, index) in self.workers.items() if index is None]
            if under_way >= self.jobs:
                return
            if not free:
                if len(self.workers) >= 2 * self.jobs:
                    return
                try:
                    self._start_worker()
                except OSError:         # e.g. no memory for one more: go on with those there
                    return
                continue
            conn = free[0]
            index = self.waiting.popleft()
            try:
                conn.send_bytes(json.dumps(index).encode())
            except OSError:
                self.waiting.appendleft(index)
                self._lost(conn)
                return
            self.workers[conn] = (self.workers[conn][0], index)

    def _lost(self, conn: Any) -> None:
        """A worker died: its student gets an error row, and a new worker takes its place."""
        process, busy = self.workers.pop(conn)
        self.slow.discard(conn)
        conn.close()
        process.join(timeout=1)
        if busy is not None:
            entry = self.entries[busy]
            self.ready.append(_Done(entry, error_result(
                entry.label, f"the grader's worker process died (exit code {process.exitcode}) "
                "while grading this submission; the batch went on. Grade it again.",
                request=self.job.request), 0.0))
        if self.taking:
            self._start_worker()

    def submit(self, entry: Entry) -> None:
        self.waiting.append(self.index[entry.student])
        self._dispatch()

    def next_done(self, timeout: float) -> _Done | None:
        from multiprocessing.connection import wait

        answers: list[tuple[int, bytes]] = []
        if not self.ready:
            busy = [c for c, (_, index) in self.workers.items() if index is not None]
            for conn in wait(busy, timeout) if busy else ():
                try:
                    answer = self._take_message(conn)
                except (EOFError, OSError):
                    self._lost(conn)
                    continue
                if answer is not None:
                    answers.append(answer)
            if not busy:
                time.sleep(min(timeout, 0.01))
        self._dispatch()        # the workers that answered take their next students first,
        for index, message in answers:      # then their answers are read
            self.ready.append(self._done(index, message))
        return self.ready.popleft() if self.ready else None

    def _take_message(self, conn: Any) -> tuple[int, bytes] | None:
        """The message waiting on ``conn``: None for _SLOW; else an answer, as (the student's
        index, the message) to read with _done, and the worker is free again."""
        message = conn.recv_bytes()
        if message == _SLOW:
            self.slow.add(conn)
            return None
        self.slow.discard(conn)
        process, index = self.workers[conn]
        self.workers[conn] = (process, None)
        return index, message

    def _done(self, index: int, message: bytes) -> _Done:
        entry = self.entries[index]
        try:
            reply = json.loads(message)
            return _Done(entry, result_from_dict(reply["result"]), float(reply["seconds"]))
        except (ValueError, KeyError, TypeError):
            return _Done(entry, error_result(
                entry.label, "the grader's worker process sent back an answer that could not "
                "be read; the batch went on. Grade it again.", request=self.job.request), 0.0)

    def busy(self) -> int:
        return sum(index is not None for _, index in self.workers.values()) + len(self.ready)

    def stop_taking(self) -> None:
        self.taking = False
        self.waiting.clear()

    def abandon(self) -> list[_Done]:
        """Kill the workers now: what they were grading is left pending (record.json is
        written last: a student whose files were all written before the kill is kept by the
        next run). Returns what finished before: the answers taken in already and those a
        worker had sent whole before it was killed, and the error rows of workers that died."""
        self.stop_taking()
        for process, _ in self.workers.values():
            process.kill()
        for conn, (process, _) in list(self.workers.items()):
            process.join(timeout=5)
            try:                        # from a dead worker only: the reads cannot block
                while (self.workers[conn][1] is not None and process.exitcode is not None
                       and conn.poll(0)):
                    answer = self._take_message(conn)
                    if answer is not None:
                        self.ready.append(self._done(*answer))
            except (EOFError, OSError):
                pass                    # half an answer, cut by the kill: left pending
            conn.close()
        self.workers.clear()
        self.slow.clear()
        finished = list(self.ready)
        self.ready.clear()
        return finished

    def close(self) -> None:
        self.taking = False
        for conn, (process, _) in list(self.workers.items()):
            try:
                conn.send_bytes(b"null")
            except OSError:
                pass
        for conn, (process, _) in list(self.workers.items()):
            process.join(timeout=15)
            if process.is_alive():
                process.kill()
                process.join()
            conn.close()
        self.workers.clear()
        self.slow.clear()


def _drive(pool: "_ThreadPool | _ProcessPool", todo: Sequence[Entry],
           take: Callable[[_Done], None], interrupts: "_Interrupts", bar: _Progress) -> bool:
    """Every entry through ``pool``, each finished one to ``take``; True if Ctrl-C stopped it."""
    remaining = len(todo)
    for entry in todo:
        pool.submit(entry)
    while remaining and not interrupts.count:
        item = pool.next_done(0.2)
        if item is not None:
            remaining -= 1
            take(item)
        elif not pool.busy():
            break               # cannot happen unless a worker died unseen: never wait forever
    if not interrupts.count:
        return False
    pool.stop_taking()
    bar.message(f"interrupted: finishing the {pool.busy()} submission(s) being graded "
                "(Ctrl-C again to stop now)")
    while pool.busy() and interrupts.count < 2:
        item = pool.next_done(0.2)
        if item is not None:
            take(item)
    if interrupts.count >= 2:
        for item in pool.abandon():      # finished before the second Ctrl-C: kept
            take(item)
        bar.message("stopped; submissions still being graded are left pending")
    return True


class _Interrupts:
    """Ctrl-C counted by a signal handler, not raised: a KeyboardInterrupt landing between two
    lines of the bookkeeping would lose track of a worker. Outside the main thread (no signals
    there) it counts nothing."""

    def __init__(self) -> None:
        self.count = 0
        self.previous: Any = None

    @classmethod
    def install(cls) -> "_Interrupts":
        interrupts = cls()
        if threading.current_thread() is threading.main_thread():
            interrupts.previous = signal.signal(signal.SIGINT, interrupts._count)
        return interrupts

    def _count(self, signum: int, frame: object) -> None:
        self.count += 1

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off in this process while grading processes do the
    grading (they turn it back on), then as it was. This process keeps every student's result,
    so each full collection walks all of them and torch's objects besides, while it makes few
    cycles: measured on 1,000 students, collections took 0.6 s of its 3.2 s of CPU (0.2 s of
    them in the class summary at the end), and 7 objects a student were left in cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _status(result: Result | None) -> str:
    return "pending" if result is None else result.status


def grade_many(folder: str | Path, out: str | Path, *, request: GradeRequest = GradeRequest(),
               jobs: int = 2, resume: bool = True, progress: IO[str] | None = None,
               grade: GradeFn | None = None, gradescope: Any = None,
               config_extra: Sequence[Any] = (), title: str = "Class summary",
               runner: SandboxRunner | None = None) -> BatchSummary:
    """Grade every submission in ``folder`` into ``out``; see the module docstring.

    ``resume`` (default) reuses a student's earlier files when their submission and the grading
    config are unchanged. Ctrl-C stops taking new submissions, finishes those in progress (a
    second Ctrl-C abandons them, keeping those already finished), and still writes the
    gradebook, with the others "pending".
    ``grade`` replaces ``grade_submission`` (tests, other runners); ``config_extra`` adds to the
    config hash what the request does not hold (an assignment's policies); ``title`` heads the
    class summary. ``runner``: a sandbox worker for the grading processes to share, launched
    early by the caller (it imports torch meanwhile; the caller closes it). Without one, the
    batch launches its own where they can share one; where they cannot, each grading process
    starts its own.
    """
    started = time.monotonic()
    out = Path(out)
    # a thread abandoned by a second Ctrl-C may still unpack a zip member into it
    with tempfile.TemporaryDirectory(prefix="bpg-batch-", ignore_cleanup_errors=True) as scratch:
        if Path(folder).is_file() and Path(folder).suffix.lower() == ".zip":
            folder = unpack_class_zip(Path(folder), Path(scratch) / "class")
        discovery = discover_submissions(folder, exclude=[out])
        out.mkdir(parents=True, exist_ok=True)
        return _grade_discovered(discovery, out, Path(scratch), request=request, jobs=jobs,
                                 resume=resume, progress=progress, grade=grade,
                                 gradescope=gradescope, config_extra=config_extra, title=title,
                                 started=started, runner=runner)


def _grade_discovered(discovery: Discovery, out: Path, scratch: Path, *, request: GradeRequest,
                      jobs: int, resume: bool, progress: IO[str] | None, grade: GradeFn | None,
                      gradescope: Any, config_extra: Sequence[Any], title: str, started: float,
                      runner: SandboxRunner | None) -> BatchSummary:
    from ..assignment import GradescopeSettings

    gradescope = gradescope or GradescopeSettings()
    digest = config_digest(request, gradescope, *config_extra)
    results: dict[str, Result | None] = {e.student: None for e in discovery.entries}
    graded = unchanged = 0
    interrupted = False
    bar = _Progress(len(discovery.entries), progress)
    with contextlib.ExitStack() as stack:
        stack.enter_context(_OutputLock(out))
        if grade is None:       # grading processes, not threads of this one (_ProcessPool)
            stack.enter_context(_collector_paused())
        _clean_stray_temp_files(out)
        todo: list[Entry] = []
        for entry in discovery.entries:
            earlier = _reusable(out, entry, digest) if resume else None
            if earlier is not None:
                results[entry.student] = earlier
                unchanged += 1
            else:
                todo.append(entry)
        if unchanged and progress:
            bar.message(f"{unchanged} submission(s) unchanged since they were graded: kept")
        bar.total = len(todo)
        job = _Job(out, request, digest, gradescope, scratch)

        def take(item: _Done) -> None:
            nonlocal graded
            graded += 1
            results[item.entry.student] = item.result
            bar.update(failed=item.result.status != "graded")

        # nothing to grade (all unchanged): no workers, and no sandbox unless the caller
        # launched one early (the grade command does, before it knows: torch loads meanwhile)
        if todo:        # the workers (and the batch's own sandbox worker) stop when it is done
            with contextlib.ExitStack() as grading:
                workers = max(1, min(jobs, len(todo)))
                pool: _ThreadPool | _ProcessPool = (
                    _ThreadPool(workers, job, grade) if grade is not None
                    else _ProcessPool(workers, job, tuple(todo),
                                      _launch_shared_runner(runner, grading)))
                grading.callback(pool.close)
                interrupts = _Interrupts.install()
                grading.callback(interrupts.restore)
                interrupted = _drive(pool, todo, take, interrupts, bar)
        bar.close()
        notes = _write_class_files(out, discovery, results, request=request, digest=digest,
                                   interrupted=interrupted, title=title)
    statuses = {s: _status(r) for s, r in results.items()}
    return BatchSummary(
        out=out, students=len(discovery.entries), graded=graded, unchanged=unchanged,
        pending=sum(st == "pending" for st in statuses.values()),
        failed=sum(st not in ("graded", "pending") for st in statuses.values()),
        skipped=discovery.skipped, interrupted=interrupted,
        seconds=time.monotonic() - started, statuses=statuses, notes=tuple(notes))


def _write_class_files(out: Path, discovery: Discovery, results: dict[str, Result | None], *,
                       request: GradeRequest, digest: str, interrupted: bool, title: str
                       ) -> list[str]:
    """gradebook.csv, summary.html and batch.json: every student exactly once."""
    notes: list[str] = []
    rows = [GradebookRow(student=e.student, submission=e.label, result=results[e.student],
                         report=f"students/{e.student}/report.html")
            for e in discovery.entries]
    write_atomic(out / "gradebook.csv", render_gradebook(rows, options=request.options))
    done = [r for r in results.values() if r is not None]
    try:
        from ..output.report import render_summary
    except ImportError:
        notes.append("summary.html and report.html not written: grader.output.report is not available")
    else:
        links = {r.submission: f"students/{e.student}/report.html"
                 for e in discovery.entries if (r := results[e.student]) is not None}
        write_atomic(out / "summary.html", render_summary(done, links=links, title=title))
    manifest = {
        "schema": BATCH_SCHEMA, "grader_version": __version__, "config_sha256": digest,
        "interrupted": interrupted,
        "students": [{"student": e.student, "source": e.source, "submission": e.label,
                      "status": _status(results[e.student]),
                      "score": results[e.student].score if results[e.student] else None}
                     for e in discovery.entries],
        "skipped": [{"path": s.path, "reason": s.reason} for s in discovery.skipped],
        "notes": notes,
    }
    _write_json(out / "batch.json", manifest)
    return notes

