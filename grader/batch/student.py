"""One student through the batch: graded, their files written, never an exception.

Whatever goes wrong with one student (the grader fails on their file, their files cannot be
written) becomes that student's error row, and the batch goes on.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from ..api import GradeRequest, error_result
from ..judge.review import clear_review
from ..output.results import Result
from ..submissions.discovery import DiscoveryError, Entry, unpack_zip_member
from .files import write_student

__all__ = ["Done", "GradeFn", "Job", "grade_and_write", "grade_entry", "write_graded"]

GradeFn = Callable[[Path, GradeRequest], Result]


@dataclass(frozen=True)
class Job:
    """What every grading of the batch shares."""

    out: Path
    request: GradeRequest
    digest: str
    gradescope: Any
    scratch: Path
    cleared: frozenset[str] = frozenset()   # students whose review an instructor cleared


@dataclass(frozen=True)
class Done:
    """A student graded and written."""

    entry: Entry
    result: Result
    seconds: float
    data: dict[str, Any] | None = None     # the result as written to results.json


def grade_entry(entry: Entry, request: GradeRequest, grade: GradeFn, scratch: Path
                ) -> tuple[Result, str | None]:
    """Grade one student; never raises. Returns the result and our traceback if we failed."""
    if entry.problem:
        return error_result(entry.label, entry.problem, request=request), None
    try:
        assert entry.path is not None
        try:
            path = unpack_zip_member(entry, scratch) if entry.zip_member else entry.path
        except DiscoveryError as e:     # a corrupt member, or one that lies about its size
            return error_result(entry.label, str(e), request=request), None
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


def write_graded(entry: Entry, job: Job, result: Result, grader_traceback: str | None,
                 start: float) -> Done:
    """Write a graded student's files; never raises (a write that fails is the student's error
    row)."""
    data = None
    if entry.student in job.cleared:
        result = clear_review(result)
    try:
        data = write_student(job.out, entry, result, request=job.request, digest=job.digest,
                             seconds=time.monotonic() - start, gradescope=job.gradescope,
                             grader_traceback=grader_traceback)
    except Exception:  # noqa: BLE001 - e.g. disk full: report this student, go on
        result = error_result(entry.label, "could not write this student's files: "
                              + traceback.format_exc().strip().splitlines()[-1],
                              request=job.request)
    return Done(entry, result, time.monotonic() - start, data=data)


def grade_and_write(entry: Entry, job: Job, grade: GradeFn) -> Done:
    """Grade one student and write their files; never raises."""
    start = time.monotonic()
    result, tb = grade_entry(entry, job.request, grade, job.scratch)
    return write_graded(entry, job, result, tb, start)
