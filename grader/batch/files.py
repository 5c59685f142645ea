"""The batch's files: what a student gets, what the class gets, and what makes a rerun resume.

Every file is written atomically (a temp file, then a rename): a killed run leaves whole files or
none. A student's ``record.json`` is written last and holds the hashes of what was graded (the
submission, and the config with the grader's own code): the next run keeps a student whose
record matches, so it resumes where a killed or interrupted run stopped. The output lock keeps
two runs from writing one folder at once.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
from pathlib import Path
from typing import IO, Any, Mapping, Sequence

from .. import __version__
from ..api import GradeRequest
from ..judge.scoring import points_table
from ..output.exports import GradebookRow, gradescope_results, render_gradebook
from ..output.report import render_report, render_summary
from ..output.results import Result, read_result, write_atomic, write_result
from ..submissions.discovery import Discovery, Entry

__all__ = ["BATCH_SCHEMA", "RECORD_SCHEMA", "BatchError", "OutputLock", "clean_stray_temp_files",
           "config_digest", "result_status", "reusable_result", "write_class_files",
           "write_student"]

RECORD_SCHEMA = "backprop-grader/record/v1"
BATCH_SCHEMA = "backprop-grader/batch/v1"


class BatchError(Exception):
    """The batch cannot run at all (no such folder, output in use); one line says why."""


# -- what decides a grade -----------------------------------------------------------------------

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


# -- the output folder ----------------------------------------------------------------------------

class OutputLock:
    """One batch at a time per output folder: an advisory lock on OUT/.lock, released by the
    OS even on kill -9."""

    def __init__(self, out: Path) -> None:
        self.path = out / ".lock"
        self.file: IO[str] | None = None

    def __enter__(self) -> OutputLock:
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


def clean_stray_temp_files(out: Path) -> None:
    """Temp files left by a killed run (never read: they are renamed only when complete)."""
    for tmp in out.glob("students/*/.*.tmp"):
        tmp.unlink(missing_ok=True)
    for tmp in out.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def _write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


# -- one student's files ----------------------------------------------------------------------

def _student_dir(out: Path, entry: Entry) -> Path:
    return out / "students" / entry.student


def reusable_result(out: Path, entry: Entry, digest: str) -> Result | None:
    """The earlier result when this student's submission and the config are unchanged and
    every file of theirs is there."""
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


def write_student(out: Path, entry: Entry, result: Result, *, request: GradeRequest,
                  digest: str, seconds: float, gradescope: Any, grader_traceback: str | None
                  ) -> dict[str, Any]:
    """results.json, gradescope.json, report.html, then record.json: complete only when last.
    Returns results.json's content as a dict."""
    folder = _student_dir(out, entry)
    data = write_result(result, folder / "results.json")
    _write_json(folder / "gradescope.json",
                gradescope_results(result, points=points_table(request.options),
                                   settings=gradescope))
    write_atomic(folder / "report.html",
                 render_report(result, student=entry.student, summary_href="../../summary.html"))
    record = {"schema": RECORD_SCHEMA, "student": entry.student, "source": entry.source,
              "submission": entry.label, "submission_sha256": entry.digest,
              "config_sha256": digest, "grader_version": __version__, "status": result.status,
              "seconds": round(seconds, 3),
              "files": ["results.json", "gradescope.json", "report.html"]}
    if grader_traceback:
        record["grader_traceback"] = grader_traceback
    _write_json(folder / "record.json", record)
    return data


# -- the class's files ----------------------------------------------------------------------

def result_status(result: Result | None) -> str:
    """A student's status in the class files: "pending" while not graded."""
    return "pending" if result is None else result.status


def write_class_files(out: Path, discovery: Discovery, results: Mapping[str, Result | None], *,
                      request: GradeRequest, digest: str, interrupted: bool, title: str,
                      notes: Sequence[str] = ()) -> None:
    """gradebook.csv, summary.html and batch.json: every student exactly once."""
    rows = [GradebookRow(student=e.student, submission=e.label, result=results[e.student],
                         report=f"students/{e.student}/report.html")
            for e in discovery.entries]
    write_atomic(out / "gradebook.csv",
                 render_gradebook(rows, points=points_table(request.options)))
    done = [r for r in results.values() if r is not None]
    links = {r.submission: f"students/{e.student}/report.html"
             for e in discovery.entries if (r := results[e.student]) is not None}
    write_atomic(out / "summary.html", render_summary(done, links=links, title=title))
    manifest = {
        "schema": BATCH_SCHEMA, "grader_version": __version__, "config_sha256": digest,
        "interrupted": interrupted,
        "students": [{"student": e.student, "source": e.source, "submission": e.label,
                      "status": result_status(results[e.student]),
                      "score": results[e.student].score if results[e.student] else None}
                     for e in discovery.entries],
        "skipped": [{"path": s.path, "reason": s.reason} for s in discovery.skipped],
        "notes": list(notes),
    }
    _write_json(out / "batch.json", manifest)
