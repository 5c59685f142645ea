"""Batch grading: a folder of submissions -> per-student results, reports and a gradebook.

``grade_many`` finds one submission per student (grader.submissions.discovery), grades ``jobs``
at a time in worker processes (grader.batch.processes), or on threads when the caller gives its
own ``grade`` function (grader.batch.threads), writes every file atomically, and skips students
whose submission and grading config are unchanged since their last complete grading, so a killed
or interrupted batch resumes where it stopped (grader.batch.files). Output layout::

    OUT/gradebook.csv                      one row per student (grader.output.exports)
    OUT/summary.html                       the class summary (grader.output.report)
    OUT/batch.json                         what was found, skipped, graded, and how
    OUT/.lock                              held while a run writes there (one run at a time)
    OUT/students/<id>/results.json         backprop-grader/result/v1
    OUT/students/<id>/report.html          the student's report
    OUT/students/<id>/gradescope.json      the same result in Gradescope's format
    OUT/students/<id>/record.json          hashes of what was graded; written last
"""

from __future__ import annotations

import contextlib
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Callable, Collection, Sequence

from ..api import GradeRequest
from ..assignment import GradescopeSettings
from ..output.results import Result
from ..sandbox.runner import SandboxRunner
from ..submissions.discovery import Discovery, DiscoveryError, Entry, Skipped, \
    discover_submissions, unpack_class_zip
from .files import BatchError, OutputLock, clean_stray_temp_files, config_digest, \
    result_status, reusable_result, write_class_files
from .processes import ProcessPool, collector_paused, launch_shared_runner
from .progress import Progress
from .student import Done, GradeFn, Job
from .threads import ThreadPool

__all__ = ["BatchError", "BatchSummary", "Interrupts", "drive", "grade_many"]


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


class Interrupts:
    """Ctrl-C counted by a signal handler, not raised: a KeyboardInterrupt landing between two
    lines of the bookkeeping would lose track of a worker. Outside the main thread (no signals
    there) it counts nothing."""

    def __init__(self) -> None:
        self.count = 0
        self.previous: Any = None

    @classmethod
    def install(cls) -> Interrupts:
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


def drive(pool: ThreadPool | ProcessPool, todo: Sequence[Entry], take: Callable[[Done], None],
          interrupts: Interrupts, bar: Progress) -> bool:
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


def grade_many(folder: str | Path, out: str | Path, *, request: GradeRequest = GradeRequest(),
               jobs: int = 2, resume: bool = True, progress: IO[str] | None = None,
               grade: GradeFn | None = None, gradescope: Any = None,
               config_extra: Sequence[Any] = (), title: str = "Class summary",
               runner: SandboxRunner | None = None, cleared: Collection[str] = ()
               ) -> BatchSummary:
    """Grade every submission in ``folder`` (or a zip of the class) into ``out``; see the
    module docstring.

    ``resume`` (default) reuses a student's earlier files when their submission and the grading
    config are unchanged. Ctrl-C stops taking new submissions, finishes those in progress (a
    second Ctrl-C abandons them, keeping those already finished), and still writes the
    gradebook, with the others "pending".
    ``grade`` replaces ``grade_submission`` (tests, other runners); ``config_extra`` adds to the
    config hash what the request does not hold (an assignment's policies); ``title`` heads the
    class summary. ``runner``: a sandbox worker for the grading processes to share, launched
    early by the caller (it imports torch meanwhile; the caller closes it). Without one, the
    batch launches its own where they can share one; where they cannot, each grading process
    starts its own. ``cleared``: students whose submission an instructor has looked at and
    cleared of review (grader.judge.review): their withheld score is given back (a student kept
    from an earlier run under review is graded again for it).
    """
    started = time.monotonic()
    out = Path(out)
    # a thread abandoned by a second Ctrl-C may still unpack a zip member into it
    with tempfile.TemporaryDirectory(prefix="bpg-batch-", ignore_cleanup_errors=True) as scratch:
        try:
            unpacked: tuple[Skipped, ...] = ()
            if Path(folder).is_file() and Path(folder).suffix.lower() == ".zip":
                folder, unpacked = unpack_class_zip(Path(folder), Path(scratch) / "class")
            discovery = discover_submissions(folder, exclude=[out])
            discovery = replace(discovery, skipped=unpacked + discovery.skipped)
        except DiscoveryError as e:
            raise BatchError(str(e)) from None
        out.mkdir(parents=True, exist_ok=True)
        gradescope = gradescope or GradescopeSettings()
        job = Job(out, request, config_digest(request, gradescope, *config_extra), gradescope,
                  Path(scratch), frozenset(cleared))
        unknown = sorted(set(cleared) - {e.student for e in discovery.entries})
        notes = [f"cleared of review, but no such student: {', '.join(unknown)}"] if unknown else []
        return _grade_discovered(discovery, job, jobs=jobs, resume=resume, progress=progress,
                                 grade=grade, title=title, started=started, runner=runner,
                                 notes=(*discovery.collisions, *notes))


def _grade_discovered(discovery: Discovery, job: Job, *, jobs: int, resume: bool,
                      progress: IO[str] | None, grade: GradeFn | None, title: str,
                      started: float, runner: SandboxRunner | None,
                      notes: tuple[str, ...]) -> BatchSummary:
    results: dict[str, Result | None] = {e.student: None for e in discovery.entries}
    graded = 0
    interrupted = False
    bar = Progress(len(discovery.entries), progress)
    with contextlib.ExitStack() as stack:
        stack.enter_context(OutputLock(job.out))
        if grade is None:       # grading processes, not threads of this one (ProcessPool)
            stack.enter_context(collector_paused())
        clean_stray_temp_files(job.out)
        todo: list[Entry] = []
        for entry in discovery.entries:
            earlier = reusable_result(job.out, entry, job.digest) if resume else None
            if earlier is not None and earlier.status == "review" and entry.student in job.cleared:
                earlier = None          # cleared since: graded again, its score given back
            if earlier is None:
                todo.append(entry)
            results[entry.student] = earlier
        unchanged = len(discovery.entries) - len(todo)
        if unchanged and progress:
            bar.message(f"{unchanged} submission(s) unchanged since they were graded: kept")
        bar.total = len(todo)

        def take(item: Done) -> None:
            nonlocal graded
            graded += 1
            results[item.entry.student] = item.result
            bar.update(failed=item.result.status != "graded")

        # nothing to grade (all unchanged): no workers, and no sandbox unless the caller
        # launched one early (the grade command does, before it knows: torch loads meanwhile)
        if todo:
            interrupted = _grade_all(todo, job, jobs=jobs, grade=grade, runner=runner,
                                     take=take, bar=bar)
        bar.close()
        write_class_files(job.out, discovery, results, request=job.request, digest=job.digest,
                          interrupted=interrupted, title=title, notes=notes)
    statuses = {s: result_status(r) for s, r in results.items()}
    return BatchSummary(
        out=job.out, students=len(discovery.entries), graded=graded, unchanged=unchanged,
        pending=sum(st == "pending" for st in statuses.values()),
        failed=sum(st not in ("graded", "pending") for st in statuses.values()),
        skipped=discovery.skipped, interrupted=interrupted,
        seconds=time.monotonic() - started, statuses=statuses, notes=notes)


def _grade_all(todo: Sequence[Entry], job: Job, *, jobs: int, grade: GradeFn | None,
               runner: SandboxRunner | None, take: Callable[[Done], None], bar: Progress
               ) -> bool:
    """Grade ``todo`` on threads (the caller's ``grade``) or in grading processes, each
    finished student to ``take``; True if Ctrl-C stopped it. The workers, and the batch's own
    sandbox worker, stop before it returns."""
    with contextlib.ExitStack() as grading:
        workers = max(1, min(jobs, len(todo)))
        pool: ThreadPool | ProcessPool = (
            ThreadPool(workers, job, grade) if grade is not None
            else ProcessPool(workers, job, tuple(todo), launch_shared_runner(runner, grading)))
        grading.callback(pool.close)
        interrupts = Interrupts.install()
        grading.callback(interrupts.restore)
        return drive(pool, todo, take, interrupts, bar)
