"""Gradings in worker processes forked from the batch's: the grading work would otherwise share
one core (the GIL).

The workers are forked after the references every submission is compared with are computed, so
they share them; they share one sandbox worker where they can (each child then runs as a uid of
its own), else each starts its own. Messages are JSON (never pickle). A worker that dies is
replaced and its student gets an error row; one whose student's code runs long does not count
against ``jobs``, up to twice ``jobs`` processes.
"""

from __future__ import annotations

import contextlib
import gc
import json
import multiprocessing
import os
import signal
import time
from collections import deque
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Iterator

from ..api import GradeRequest, error_result, grade_submission, prepare_grading
from ..output.report import render_report
from ..output.results import Result, result_from_dict, result_to_dict
from ..sandbox.runner import SandboxRunner, can_share_worker
from ..sandbox.worker.processes import die_with_parent
from ..submissions.discovery import Entry
from .student import Done, Job, grade_and_write

__all__ = ["ProcessPool", "collector_paused", "launch_shared_runner"]

_SLOW = b'"slow"'        # a grading process's message: its child's stub call runs long

# what the class files need of a result; the rest stays in the student's own files
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


# Python's cyclic garbage collector, in the batch process and in the grading processes. Both
# hold many objects that stay (torch's, the references every submission is compared with, the
# templates; the batch process also every student's result), and a full collection walks every
# object it tracks: in the batch process, which makes few cycles, the collector is paused while
# the grading processes grade. A grading process makes cycles (a grading leaves some behind), so
# there it runs, with what it inherited at the fork frozen out of its way (a collection walks
# only what the gradings made, and the inherited pages stay shared), and at a high threshold,
# since a grading makes and drops tens of thousands of objects and the default threshold would
# collect many times a student.

@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The collector off in the batch process while grading processes grade, then as it was."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _collect_rarely() -> None:
    """In a grading process: what came from the batch process frozen, the collector on at a
    high threshold."""
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    gc.enable()


def _process_worker(conn: Any, parent: int, entries: tuple[Entry, ...], job: Job,
                    shared: SandboxRunner | None) -> None:
    """A grading process: the batch's sandbox worker (``shared``, attached before the fork) or
    its own; takes entry indexes, answers with the student's result as JSON (results.json's
    format, slimmed for the class files)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the batch process decides when to stop
    die_with_parent(parent)     # killed with the batch process, even by kill -9
    _collect_rarely()
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
            done = grade_and_write(entries[int(message)], job, grade)
            data = done.data if done.data is not None else result_to_dict(done.result)
            conn.send_bytes(json.dumps({"index": int(message), "seconds": done.seconds,
                                        "result": _for_class_files(data)},
                                       separators=(",", ":")).encode())


def launch_shared_runner(given: SandboxRunner | None, stack: contextlib.ExitStack
                         ) -> SandboxRunner | None:
    """The sandbox worker the grading processes are to share, launched (it imports torch while
    the references are computed): the caller's, else the batch's own, closed with ``stack``.
    None where they cannot share one: without a uid of its own for each child the worker could
    not tell one student's stray processes from another's (runner.can_share_worker)."""
    if not can_share_worker():
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


class ProcessPool:
    """Gradings in ``jobs`` worker processes: the grading work in this process would otherwise
    share one core (the GIL). ``shared``: the sandbox worker they share (launch_shared_runner),
    or None: each starts its own. Messages are JSON (never pickle); a worker that dies is
    replaced and its student gets an error row.

    A worker whose student's code runs long (a stub call past Limits.slow_seconds, the child
    lowered to the least CPU priority: most likely a loop waiting out its wall time) says so,
    and does not count against ``jobs`` until its answer comes: another worker (started if
    none is free, up to twice ``jobs`` in all) takes the next student meanwhile."""

    def __init__(self, jobs: int, job: Job, entries: tuple[Entry, ...],
                 shared: SandboxRunner | None) -> None:
        self.context = multiprocessing.get_context("fork")
        self.job, self.entries = job, entries
        self.index = {e.student: i for i, e in enumerate(entries)}
        self.workers: dict[Any, tuple[Any, int | None]] = {}   # conn -> (process, busy with)
        self.waiting: deque[int] = deque()
        self.ready: deque[Done] = deque()
        self.jobs = jobs
        self.slow: set[Any] = set()             # conns of busy workers that said _SLOW
        self.taking = True
        self.shared: SandboxRunner | None = None
        try:
            # computed once here, shared by the forked workers: the references every
            # submission is compared with, and the report's templates
            prepare_grading(job.request)
            render_report(error_result("warm-up", "warm-up", request=job.request))
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
            self.ready.append(Done(entry, error_result(
                entry.label, f"the grader's worker process died (exit code {process.exitcode}) "
                "while grading this submission; the batch went on. Grade it again.",
                request=self.job.request), 0.0))
        if self.taking:
            self._start_worker()

    def submit(self, entry: Entry) -> None:
        self.waiting.append(self.index[entry.student])
        self._dispatch()

    def next_done(self, timeout: float) -> Done | None:
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

    def _done(self, index: int, message: bytes) -> Done:
        entry = self.entries[index]
        try:
            reply = json.loads(message)
            return Done(entry, result_from_dict(reply["result"]), float(reply["seconds"]))
        except (ValueError, KeyError, TypeError):
            return Done(entry, error_result(
                entry.label, "the grader's worker process sent back an answer that could not "
                "be read; the batch went on. Grade it again.", request=self.job.request), 0.0)

    def busy(self) -> int:
        return sum(index is not None for _, index in self.workers.values()) + len(self.ready)

    def stop_taking(self) -> None:
        self.taking = False
        self.waiting.clear()

    def abandon(self) -> list[Done]:
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
