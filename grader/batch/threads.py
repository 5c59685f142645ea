"""Gradings on threads of the batch's own process, for a ``grade`` function given by the caller.

A caller's function (tests, other runners) may hold state that cannot cross to another process,
so it runs here; the batch's own grading runs in processes (grader.batch.processes).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

from ..submissions.discovery import Entry
from .student import Done, GradeFn, Job, grade_entry, write_graded

__all__ = ["ThreadPool"]


@dataclass
class _Control:
    """Ctrl-C once: take no new submissions. Twice: also drop those in progress unwritten (the
    sandbox is being shut down under them, so their results would be wrong)."""

    stop: threading.Event = field(default_factory=threading.Event)
    abandon: threading.Event = field(default_factory=threading.Event)


class ThreadPool:
    """``jobs`` threads, each grading one student at a time with ``grade``."""

    def __init__(self, jobs: int, job: Job, grade: GradeFn) -> None:
        self.job, self.grade = job, grade
        self.tasks: queue.Queue[Entry | None] = queue.Queue()
        self.done: queue.Queue[Done] = queue.Queue()
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
            # grade_and_write, with the lock between grading and writing
            start = time.monotonic()
            result, tb = grade_entry(entry, self.job.request, self.grade, self.job.scratch)
            with self.writing:
                if self.control.abandon.is_set():
                    continue                    # a second Ctrl-C: dropped unwritten
                self.done.put(write_graded(entry, self.job, result, tb, start))

    def _count(self, change: int) -> None:
        with self.counting:
            self.outstanding += change

    def submit(self, entry: Entry) -> None:
        self._count(+1)
        self.tasks.put(entry)

    def next_done(self, timeout: float) -> Done | None:
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

    def abandon(self) -> list[Done]:
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
