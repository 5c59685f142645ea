"""Runs student code in a separate, limited process: tensors in, tensors out.

The grader process never imports or executes a submission. A ``SandboxRunner``
(grader.sandbox.runner) keeps one long-lived worker (grader.sandbox.worker.forkserver) that
imported torch once; the worker runs inside bubblewrap where it works (grader.sandbox.bubblewrap)
and forks one child per ``SandboxSession``. A session's child runs the submission's file, then
answers requests: ``call_many`` sends several calls in one request, and the child answers each in
turn (tensors only, checked by grader.sandbox.wire), each within the call limit. Which calls may
share a request, so that a stub never sees the gradient it is asked for, is
grader.judge.grading's to decide. A child that hangs, dies, breaks a limit or answers garbage is
killed with everything it started, and the outcome names what happened; the next request starts
a fresh child.

``run_in_sandbox(code, inputs, limits, function=...)`` is the one-call form.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import torch

from . import wire
from .children import Child
from .limits import Limits
from .output_sink import OutputSink
from .runner import SandboxRunner

__all__ = ["Call", "CallOutcome", "SandboxSession", "run_in_sandbox"]

_INTEGRITY_KINDS = ("autograd", "requires_grad", "grad", "tamper", "process")


@dataclass(frozen=True)
class CallOutcome:
    status: str                       # "ok" | "missing" | "error" | "timeout"
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    traceback: str | None = None
    limit: str | None = None          # the limit that was hit, by name
    integrity: tuple[dict[str, str], ...] = ()   # autograd use seen while this request ran
    output: str = ""                  # what the code printed (run_in_sandbox only)


def _describe_exit(code: int | None, limits: Limits, *, limit: str | None = None
                   ) -> tuple[str, str | None]:
    """(message, limit) for a child that ended with ``code`` (subprocess style); ``limit``:
    the one the worker saw it killed for ("memory": its memory cgroup ran out)."""
    if limit == "memory":
        return (f"ran out of memory: the limit is {limits.memory_bytes >> 20:,} MiB for all its "
                "processes and memory files together (limit: memory)", "memory")
    if code is None:
        return "stopped answering", None
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if name == "SIGXCPU":
            return (f"used more than {limits.cpu_seconds} s of CPU time (limit: CPU time)",
                    "CPU time")
        extra = {"SIGSEGV": " (a segmentation fault)", "SIGBUS": " (a bus error)",
                 "SIGKILL": " (the machine ran out of memory, or something killed it)",
                 "SIGABRT": " (an abort, e.g. a failed assertion in C code)"}.get(name, "")
        return f"was killed by {name}{extra}", None
    return f"exited with code {code} (os._exit, sys.exit in a thread, or a crash)", None


_MAX_FLAGS = 20          # .grad and requires_grad records: a flood of them crowds nothing out
_MAX_RECORDS = 200


def _integrity_event(item: Any) -> dict[str, str] | None:
    """One integrity record the child streamed, checked: the child is the student's process."""
    if isinstance(item, dict) and item.get("kind") in _INTEGRITY_KINDS \
            and isinstance(item.get("detail"), str):
        return {"kind": str(item["kind"]), "detail": item["detail"][:300]}
    return None


def _is_flag(event: dict[str, str]) -> bool:
    return event["kind"] in ("grad", "requires_grad")


@dataclass(frozen=True)
class Call:
    """One call of a student's function: ``name(**inputs)``; ``returns`` "tensor" or "list";
    ``group`` ties calls of one function together (see SandboxSession.call_many)."""

    name: str
    inputs: dict[str, Any]
    returns: str = "tensor"
    group: str | None = None


def _calls_frame(calls: Sequence[Call]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The request for several calls: each tensor once (by identity), named by position."""
    tensors: dict[str, torch.Tensor] = {}
    keys: dict[int, str] = {}
    described = []
    for call in calls:
        refs = {}
        for param, value in call.inputs.items():
            if isinstance(value, torch.Tensor):
                key = keys.get(id(value))
                if key is None:
                    key = keys[id(value)] = str(len(tensors))
                    tensors[key] = value
                refs[param] = key
        described.append({"name": call.name, "returns": call.returns, "tensors": refs,
                          "scalars": {k: v for k, v in call.inputs.items()
                                      if not isinstance(v, torch.Tensor)}})
    return {"op": "calls", "calls": described}, tensors


class SandboxSession:
    """One submission's child: load the code once, then answer calls.

    Uses ``runner``'s worker, or starts (and at ``close()`` stops) a runner of its own.
    """

    def __init__(self, code: str, filename: str, limits: Limits, *,
                 runner: SandboxRunner | None = None) -> None:
        self.code, self.filename, self.limits = code, filename, limits
        self._own_runner = runner is None
        self.runner = runner if runner is not None else SandboxRunner()
        self.child: Child | None = None
        self.sinks: list[OutputSink] = []
        self.load_outcome: CallOutcome | None = None
        self.restarts = 0
        self.integrity: list[dict[str, str]] = []   # every integrity record, load included
        self.load_integrity: tuple[dict[str, str], ...] = ()
        self._deadline: float | None = None
        self._reader: wire.FrameReader | None = None     # the child's replies
        self._lowered = False               # the child runs at the least CPU priority

    @property
    def uid(self) -> int | None:
        return self.child.uid if self.child else None

    # -- process management -------------------------------------------------------------------
    def _start(self) -> CallOutcome:
        try:
            spawned = self.runner.spawn(self.limits)
        except RuntimeError as e:       # no sandbox at all (e.g. isolation="bwrap" without it)
            spawned = str(e)
        if isinstance(spawned, str):
            return CallOutcome("error", message=f"the sandbox could not start: {spawned}")
        if self._deadline is None:      # from the child's start: the worker's own is not theirs
            self._deadline = time.monotonic() + self.limits.total_seconds
        self.child = spawned
        self._lowered = False
        self._reader = wire.FrameReader(spawned.proto.fileno(), limits=self.limits.wire)
        kept = sum(len(s.kept) for s in self.sinks)
        sink = OutputSink(spawned.output, max(self.limits.output_bytes - kept, 0))
        sink.start()
        self.sinks.append(sink)
        outcome = self._request({"op": "load", "code": self.code, "filename": self.filename},
                                None, self.limits.start_seconds)
        self.load_integrity = outcome.integrity
        return outcome

    def _stop(self, *, wait: bool = False) -> tuple[int | None, int]:
        """Stop the child and all it started. With ``wait``: (its exit code if it ended by
        itself, how many processes were killed); without, (None, 0) at once."""
        child, self.child = self.child, None
        self._reader = None
        if child is None:
            return None, 0
        return child.stop(wait=wait)

    def _send(self, frame: bytes, deadline: float) -> None:
        assert self.child is not None
        self.child.proto.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            self.child.proto.sendall(frame)
        finally:
            self.child.proto.settimeout(None)

    def _request(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor] | None,
                 seconds: float) -> CallOutcome:
        deadline = time.monotonic() + seconds
        failed = self._send_request(meta, tensors, seconds, deadline)
        return failed if failed is not None else self._reply(seconds, deadline)

    def _send_request(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor] | None,
                      seconds: float, deadline: float) -> CallOutcome | None:
        """Send one frame; None when it went, else the outcome (the child hung or died)."""
        assert self.child is not None
        try:
            self._send(wire.encode_frame(meta, tensors), deadline)
        except TimeoutError:
            return self._timed_out(seconds)
        except (ConnectionError, BrokenPipeError):
            return self._died()
        return None

    def _timed_out(self, seconds: float) -> CallOutcome:
        _, processes = self._stop(wait=True)
        if processes > self.limits.max_processes // 2:
            return CallOutcome("timeout", limit="processes", message=(
                f"started {processes} processes (at most {self.limits.max_processes} are "
                f"allowed) and took longer than {seconds:g} s (limit: processes)"))
        return CallOutcome("timeout", message=f"took longer than {seconds:g} s (limit: wall "
                                              "time)", limit="wall time")

    def _died(self) -> CallOutcome:
        assert self.child is not None
        code = self.child.exit_code(2.0)
        killed_for = self.child.limit
        self._stop(wait=True)
        message, limit = _describe_exit(code, self.limits, limit=killed_for)
        return CallOutcome("error", message=f"the process running your code {message}",
                           limit=limit)

    def _lower(self) -> None:
        """A stub call runs long (past the limits' ``slow_seconds``; a stub takes milliseconds
        on the lecture's sizes): lower the child to the least CPU priority for the rest of the
        session, and tell the runner (its on_slow_call). Code that loops until its wall time
        runs out then uses mostly CPU time nothing else wants. Running the file, exercise 4's
        training and lecture-style code may take seconds by right: they are never lowered."""
        assert self.child is not None
        self._lowered = True
        self.child.lower()
        if self.runner.on_slow_call is not None:
            try:
                self.runner.on_slow_call()
            except Exception:  # noqa: BLE001 - the caller's hook: not this child's outcome
                pass

    def _reply(self, seconds: float, deadline: float, *, index: int | None = None,
               may_lower: bool = False) -> CallOutcome:
        """Read one reply (the ``index``-th of a batch of calls, if given); ``may_lower``: a
        stub call's, whose child is lowered if it runs long (_lower)."""
        assert self.child is not None and self._reader is not None
        alarm = None
        if may_lower and not self._lowered:     # the request went at deadline - seconds
            alarm = (deadline - seconds + self.limits.slow_seconds, self._lower)
        streamed: list[dict[str, str]] = []    # records the child sent as they were made
        while True:
            try:
                reply, out = self._reader.read(deadline=deadline,
                                               alarm=None if self._lowered else alarm)
            except TimeoutError:
                return self._timed_out(seconds)
            except (EOFError, ConnectionError, BrokenPipeError):
                return self._died()
            except wire.FrameError as e:
                self._stop(wait=True)
                return CallOutcome("error", message="sent back something that is not tensors: "
                                                    f"{e}", limit=e.limit)
            if set(reply) != {"event"}:
                break
            event = _integrity_event(reply["event"])
            if event is None or event in streamed or len(streamed) >= _MAX_RECORDS or (
                    _is_flag(event) and sum(map(_is_flag, streamed)) >= _MAX_FLAGS):
                continue
            streamed.append(event)
            # kept at once: a record stands even if the call then dies or runs out of time
            if event not in self.integrity:
                self.integrity.append(event)
        if index is not None and reply.get("index") != index:
            self._stop(wait=True)        # out of step with the calls: start afresh
            return CallOutcome("error", message="sent back more or fewer answers than calls")
        integrity = tuple(streamed)
        status = reply.get("status")
        if status not in ("ok", "missing", "error"):
            return CallOutcome("error", message=f"sent back an unknown status {str(status)[:40]!r}",
                               integrity=integrity)
        message = reply.get("message")
        tb = reply.get("traceback")
        limit = reply.get("limit")
        return CallOutcome(status, out, reply,
                           message=str(message)[:2000] if message is not None else None,
                           traceback=str(tb)[:8000] if tb is not None else None,
                           limit=str(limit)[:40] if limit else None, integrity=integrity)

    # -- public -------------------------------------------------------------------------------
    def start(self) -> CallOutcome:
        self.load_outcome = self._start()
        return self.load_outcome

    def _ready(self) -> CallOutcome | None:
        """None when a child is there to take a request (restarted if an earlier request killed
        it); else the outcome every request gets now."""
        if self._deadline is not None and time.monotonic() > self._deadline:
            self._stop()
            return CallOutcome("timeout", limit="total time", message=(
                f"the whole submission took longer than {self.limits.total_seconds:g} s "
                "(limit: total time)"))
        if self.child is None:
            self.restarts += 1
            outcome = self._start()
            if outcome.status != "ok":
                return outcome
        return None

    def request(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor] | None = None,
                *, seconds: float | None = None) -> CallOutcome:
        """Send one request; restart the child first if an earlier request killed it."""
        problem = self._ready()
        if problem is not None:
            return problem
        return self._request(meta, tensors, seconds or self.limits.call_seconds)

    def call(self, name: str, inputs: dict[str, Any], *, returns: str = "tensor",
             seconds: float | None = None) -> CallOutcome:
        return self.call_many([Call(name, inputs, returns)], seconds=seconds)[0]

    def call_many(self, calls: Sequence[Call], *, seconds: float | None = None
                  ) -> list[CallOutcome]:
        """Several calls in one request; the child answers each in turn, within ``seconds``
        (the call limit) of the answer before. The same outcomes as calling them one by one,
        with one round trip: a call that kills the child or runs out of time ends the request,
        and the calls after it go to a restarted child. A call after one of the same ``group``
        that ended the child (out of time, crashed, killed at a limit) gets that outcome without
        running: it would only wait, or crash, again.
        Each tensor is sent once per request, however many calls take it; every call gets
        tensors of its own (copies, or the one off the wire where no later call takes it)."""
        seconds = seconds or self.limits.call_seconds
        outcomes: list[CallOutcome] = []
        ended: dict[str, CallOutcome] = {}       # group -> the outcome that ended the child
        while len(outcomes) < len(calls):
            rest = []
            for call in calls[len(outcomes):]:
                if call.group is not None and call.group in ended:
                    if rest:
                        break
                    outcomes.append(ended[call.group])
                    continue
                rest.append(call)
            if not rest:
                continue
            problem = self._ready()
            if problem is not None:                 # every call left gets it
                outcomes += [problem] * (len(calls) - len(outcomes))
                break
            deadline = time.monotonic() + seconds
            failed = self._send_request(*_calls_frame(rest), seconds, deadline)
            if failed is not None:
                outcomes.append(failed)
                continue
            for i, call in enumerate(rest):
                outcome = self._reply(seconds, deadline, index=i, may_lower=True)
                outcomes.append(outcome)
                if self.child is None:          # killed, crashed or out of step: restart
                    if call.group is not None:
                        ended[call.group] = outcome
                    break
                deadline = time.monotonic() + seconds
        return outcomes

    def output(self) -> str:
        """What the code printed so far (all of it once the session is closed)."""
        for sink in self.sinks:
            if self.child is None:
                sink.finish()
            else:
                sink.join(timeout=0.05)
        return "".join(s.text() for s in self.sinks)

    @property
    def output_dropped(self) -> int:
        return sum(s.dropped for s in self.sinks)

    def notes(self) -> list[str]:
        """What a report should say about the session itself: output dropped, restarts."""
        notes = []
        if self.output_dropped:
            notes.append(f"your code printed {self.output_dropped:,} bytes more than the "
                         f"{self.limits.output_bytes:,} kept (limit: output bytes)")
        if self.restarts:
            notes.append(f"the process running your code had to be restarted {self.restarts} "
                         "time(s)")
        return notes

    def close(self) -> None:
        self._stop()
        if self._own_runner:
            self.runner.close()

    def __enter__(self) -> "SandboxSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_in_sandbox(code: str, inputs: Mapping[str, Any], limits: Limits = Limits(), *,
                   function: str, filename: str = "<submission>", returns: str = "tensor",
                   runner: SandboxRunner | None = None) -> CallOutcome:
    """Run ``code`` in a fresh sandboxed child, call ``function(**inputs)`` there, and return
    the outcome with what the code printed (``output``) and any integrity records."""
    with SandboxSession(code, filename, limits, runner=runner) as session:
        outcome = session.start()
        if outcome.status == "ok":
            outcome = session.call(function, dict(inputs), returns=returns)
        integrity = tuple(session.integrity)
    return replace(outcome, output=session.output(), integrity=integrity)
