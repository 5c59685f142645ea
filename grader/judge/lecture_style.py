"""Lecture-style submissions: ``dlogprobs = ...`` assignments in sequence, as in the notebook.

Parent side, ``grade_lecture_style``: grader.submissions.lecture_source picks the exercise statements out of
the file or notebook; they run in the sandbox (op "lecture") with the grader's forward tensors,
parameters, ``n``, ``Xb``, ``Yb``, ``torch``, ``F`` and a ``cmp`` that records instead of
printing. Each gradient comes back as it was right after the statements that compute it, and is
compared with autograd's by the same code as the stub format. Lecture-style code is graded in
chained mode only: each step uses the student's own upstream gradients, as in their notebook;
where one of them cannot be used (it raised, or has the wrong shape), the program runs again with
autograd's in its place, so that one mistake costs one gradient. Exercise 4 is graded from the
training loop's backward lines, turned into a ``backward()`` function; the loop itself never runs.
The statements run in the child through grader.sandbox.worker.lecture_code.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, replace
from typing import Any

import torch

from .. import __version__
from ..lecture.catalog import EXERCISE4_GRADIENTS, EXERCISE4_TRAINING, GRADIENTS, SCALAR_NAMES, \
    Gradient
from .grading import Verdict, collect_gradient_results, grade_exercise4, verdict_from_tensor
from ..lecture.model import FORWARD_NAMES, PARAMETER_NAMES, LectureState, cached_lecture_state
from ..submissions.lecture_names import GRADIENT_VARIABLES, lecture_name
from ..submissions.lecture_source import LectureProgram, read_lecture_code
from ..submissions.selection_notes import describe_selection
from ..output.results import IntegrityFlag, Result
from .integrity import integrity_flags, scan_source
from ..sandbox.session import CallOutcome, SandboxSession

__all__ = ["grade_lecture_style"]

_UNUSABLE = ("error", "shape", "nonfinite", "missing")
_MAX_RUNS = 8                     # runs with more and more of autograd's gradients substituted
_MAX_FILES_BYTES = 1_000_000      # cell texts sent along for tracebacks
_INPUT_NAMES = frozenset((*FORWARD_NAMES, *PARAMETER_NAMES, "Xb", "Yb"))
_NAME_ERROR = re.compile(r"NameError: name '(\w+)' is not defined")


@dataclass
class _Run:
    """One run of the program in one config: what came back, checked."""

    errors: dict[int, dict[str, Any]]        # step position -> kind, message, traceback, limit
    records: dict[str, torch.Tensor]         # record key -> tensor
    problems: dict[str, dict[str, Any]]      # record key -> problem, detail
    modified: dict[str, int]                 # record key -> position of the step that changed it
    captures: list[tuple[int, str | None, str | None, torch.Tensor]]  # step, label, input, value
    changed_inputs: dict[str, int]           # grader tensor -> step that changed it in place


@dataclass(frozen=True)
class _Plan:
    """The request a program becomes: steps in order, where to read each gradient."""

    program: LectureProgram
    positions: dict[int, int]                # statement index -> step position

    def record_key(self, k: int) -> str:
        return f"r{k}"

    def step_where(self, position: int) -> str:
        st = self.program.statement(self.program.run[position])
        return st.where()

    def step_text(self, position: int) -> str:
        return self.program.statement(self.program.run[position]).first_line_text()

    def meta(self, state: LectureState, substitutions: list[tuple[int, list[str], str]]
             ) -> dict[str, Any]:
        program = self.program
        files = {program.statement(i).file for i in program.run}
        texts = {f: program.files[f] for f in sorted(files)}
        if sum(len(t) for t in texts.values()) > _MAX_FILES_BYTES:
            texts = {}
        config = state.config
        return {
            "op": "lecture",
            "files": texts,
            "steps": [{"file": program.statement(i).file, "line": program.statement(i).line,
                       "code": program.statement(i).code, "capture": i in program.captures}
                      for i in program.run],
            "records": [{"after": self.positions[src.steps[-1]], "var": src.var,
                         "key": self.record_key(k)} for k, src in enumerate(program.sources)],
            "aliases": dict(program.aliases),
            "scalars": {"n": config.n, "batch_size": config.n, "vocab_size": state.vocab_size,
                        "n_embd": config.n_embd, "n_hidden": config.n_hidden,
                        "block_size": config.block_size},
            "inputs": [*state.forward, *state.params, "Xb", "Yb"],
            "substitute": [{"after": after, "vars": names, "key": key}
                           for after, names, key in substitutions],
        }


def _inputs(state: LectureState) -> dict[str, torch.Tensor]:
    return {**state.forward, **state.params, "Xb": state.Xb, "Yb": state.Yb}


def _parse_reply(outcome: CallOutcome, plan: _Plan) -> _Run:
    """Check what the child sent: it runs student code, so nothing in it is trusted."""
    meta, tensors = outcome.meta, outcome.tensors
    steps = len(plan.program.run)
    keys = {plan.record_key(k) for k in range(len(plan.program.sources))}

    def items(name: str) -> list[dict[str, Any]]:
        value = meta.get(name)
        return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []

    def position(x: dict[str, Any]) -> int | None:
        p = x.get("step")
        return p if isinstance(p, int) and 0 <= p < steps else None

    errors = {}
    for e in items("errors"):
        p = position(e)
        if p is not None and p not in errors:
            errors[p] = {"kind": "missing" if e.get("kind") == "missing" else "error",
                         "message": str(e.get("message", "raised an exception"))[:500],
                         "traceback": str(e.get("traceback", ""))[:4000],
                         "limit": str(e["limit"])[:40] if e.get("limit") else None}
    problems = {}
    for r in items("problems"):
        key = r.get("key")
        if key in keys:
            problems[key] = {"problem": str(r.get("problem", ""))[:40],
                             "detail": str(r.get("detail", ""))[:200],
                             "shape": [int(d) for d in r.get("shape", []) if isinstance(d, int)]
                             if isinstance(r.get("shape"), list) else None}
    records = {k: tensors[k] for k in keys if k in tensors and k not in problems}
    modified = {}
    for m in items("modified"):
        p, key = position(m), m.get("key")
        if p is not None and key in keys:
            modified[key] = p
    captures = []
    for c in items("cmp"):
        p, key = position(c), c.get("key")
        if p is None or not isinstance(key, str) or key not in tensors:
            continue
        label = c.get("label") if isinstance(c.get("label"), str) else None
        given = c.get("input") if isinstance(c.get("input"), str) else None
        captures.append((p, label, given, tensors[key]))
    changed_inputs = {}
    for c in items("changed_inputs"):
        p, name = position(c), c.get("input")
        if p is not None and name in _INPUT_NAMES and name not in changed_inputs:
            changed_inputs[name] = p
    return _Run(errors, records, problems, modified, captures, changed_inputs)


class _Grader:
    """Runs a program in one config, substituting autograd's gradients where the student's
    cannot be used, and turns what came back into verdicts."""

    def __init__(self, session: SandboxSession, plan: _Plan, state: LectureState, options: Any
                 ) -> None:
        self.session, self.plan, self.state, self.options = session, plan, state, options
        self.program = plan.program
        self.notes: list[str] = []

    def _request(self, substituted: dict[str, tuple[int, list[str]]]) -> CallOutcome:
        subs = []
        tensors = _inputs(self.state)
        for k, (name, (after, names)) in enumerate(sorted(substituted.items())):
            key = f"s{k}"
            tensors[key] = self.state.grads[name]
            subs.append((after, names, key))
        return self.session.request(self.plan.meta(self.state, subs), tensors,
                                    seconds=self.session.limits.call_seconds * 2)

    def grade(self) -> list[Verdict]:
        program = self.program
        sources = {s.gradient.name: s for s in program.sources}
        # a gradient with no code at all: autograd's, from the start, for the steps after it
        substituted: dict[str, tuple[int, list[str]]] = {
            name: (-1, [name]) for name in program.missing if name in GRADIENT_VARIABLES}
        frozen: dict[str, Verdict] = {}
        verdicts: dict[str, Verdict] = {}
        run: _Run | None = None
        for _ in range(_MAX_RUNS):
            outcome = self._request(substituted)
            if outcome.status != "ok":
                message = outcome.message or "the exercise code could not be run"
                if outcome.status == "timeout":
                    message = f"your exercise code {message}"
                return [Verdict(g, self.state.config, "chained", "error", message=message)
                        for g in GRADIENTS if g.exercise in self.options.exercises]
            run = _parse_reply(outcome, self.plan)
            verdicts = {src.gradient.name: self._verdict(k, src, run, substituted)
                        for k, src in enumerate(program.sources)}
            fresh = self._own_failures(verdicts, substituted)
            if not fresh:
                break
            for name in fresh:
                frozen[name] = verdicts[name]
                src = sources[name]
                substituted[name] = (self.plan.positions[src.steps[-1]], [src.var])
        verdicts.update(frozen)
        assert run is not None
        out = list(verdicts.values())
        for gradient in GRADIENTS:
            if gradient.name not in verdicts:
                out.append(self._missing(gradient, run))
        self._describe_modified(run)
        return [v for v in out if v.gradient.exercise in self.options.exercises]

    def _own_failures(self, verdicts: dict[str, Verdict],
                      substituted: dict[str, tuple[int, list[str]]]) -> list[str]:
        """Exercise-1 gradients that cannot be used and whose inputs were all usable: their
        failure is their own. The ones reading a failed gradient wait for the next run."""
        failed_vars: set[str] = set()
        own: list[str] = []
        for src in sorted(self.program.sources, key=lambda s: s.steps[-1]):
            name = src.gradient.name
            v = verdicts[name]
            if v.status not in _UNUSABLE or name in substituted or src.gradient.exercise != "ex1":
                continue
            reads = {n for i in src.steps for n in self.program.statement(i).reads}
            if not reads & failed_vars:
                own.append(name)
            failed_vars.add(src.var)
        return own

    def _where_error(self, position: int, error: dict[str, Any]) -> str:
        message = f"{self.plan.step_where(position)}: {error['message']}"
        m = _NAME_ERROR.search(error["message"])
        if m:
            message += self._explain_undefined(m.group(1))
        return message

    def _explain_undefined(self, name: str) -> str:
        why = self.program.unresolved.get(name)
        if why is None:
            defined = [st for st in self.program.statements
                       if name in st.assigns and st.index not in self.program.run]
            if defined:
                why = f"{defined[-1].where()}, which is not run"
        if why is None:
            return ""
        return (f" ({name} is computed at {why}: the grader runs only the exercise code, with "
                "the lecture's tensors (emb ... loss), the parameters, n, Xb, Yb; use the "
                f"lecture's names, or tell it what {name} is with cmp('<lecture name>', "
                f"d{name}, {name}))")

    def _verdict(self, k: int, src: Any, run: _Run,
                 substituted: dict[str, tuple[int, list[str]]]) -> Verdict:
        gradient, config = src.gradient, self.state.config
        key = self.plan.record_key(k)
        for step in src.steps:
            position = self.plan.positions[step]
            error = run.errors.get(position)
            if error:
                status = "missing" if error["kind"] == "missing" else "error"
                return Verdict(gradient, config, "chained", status,
                               message=self._where_error(position, error),
                               traceback=error["traceback"] or None, limit=error["limit"])
        problem = run.problems.get(key)
        if problem:
            return self._problem_verdict(gradient, src, problem)
        actual = run.records.get(key)
        if actual is None:
            return Verdict(gradient, config, "chained", "error",
                           message=f"{src.var} could not be read back after "
                                   f"{self.plan.step_where(self.plan.positions[src.steps[-1]])}")
        own = self._own(run)
        upstream = [u for u in gradient.upstream if u in own]
        inexact = tuple(u for u in upstream if own[u].shape == self.state.grads[u].shape
                        and not torch.equal(own[u], self.state.grads[u]))
        inputs = {"h": self.state.forward["h"], **({"dh": own["dh"]} if "dh" in own else {})}
        verdict = verdict_from_tensor(gradient, self.state, actual, self.options,
                                      inputs=inputs, inexact_upstream=inexact)
        reads = {n for i in src.steps for n in self.program.statement(i).reads}
        used = tuple(name for name, (_, names) in substituted.items()
                     if name != gradient.name and reads & set(names))
        verdict.substituted = used
        if key in run.modified:
            verdict.message = "; ".join(m for m in (verdict.message, self._modified_text(
                src, run.modified[key])) if m)
        return verdict

    def _own(self, run: _Run) -> dict[str, torch.Tensor]:
        return {src.gradient.name: run.records[self.plan.record_key(k)]
                for k, src in enumerate(self.program.sources)
                if src.gradient.exercise == "ex1" and self.plan.record_key(k) in run.records}

    def _problem_verdict(self, gradient: Gradient, src: Any, problem: dict[str, Any]) -> Verdict:
        config = self.state.config
        shape = problem["shape"]
        expected = tuple(self.state.grads[f"d{gradient.variable}"].shape)
        if problem["problem"] == "too_large" and shape is not None and \
                all(d >= 0 for d in shape) and tuple(shape) != expected:
            # only the shape came back (the tensor itself is far too large): a shape verdict
            actual = torch.empty(shape, device="meta")
            return verdict_from_tensor(gradient, self.state, actual, self.options)
        where = self.plan.step_where(self.plan.positions[src.steps[-1]])
        detail = problem["detail"] or problem["problem"]
        return Verdict(gradient, config, "chained", "error",
                       message=f"after {where}, {src.var} {detail}")

    def _missing(self, gradient: Gradient, run: _Run) -> Verdict:
        config = self.state.config
        if gradient.exercise == "ex1":
            for position, label, given, value in reversed(run.captures):
                meant = given or (lecture_name(label) if label else None)
                if meant == gradient.variable:
                    verdict = verdict_from_tensor(gradient, self.state, value, self.options)
                    verdict.message = "; ".join(m for m in (
                        verdict.message, f"read from your cmp() call at "
                                         f"{self.plan.step_where(position)}") if m)
                    return verdict
        looked = self.program.missing.get(gradient.name, "not found")
        return Verdict(gradient, config, "chained", "missing", message=looked)

    def _modified_text(self, src: Any, position: int) -> str:
        return (f"{src.var} was modified after you computed it, by "
                f"{self.plan.step_where(position)} (`{self.plan.step_text(position)}`): "
                f"graded as it was when assigned; use .clone() when you start a new gradient "
                f"from {src.var}")

    def _describe_modified(self, run: _Run) -> None:
        for k, src in enumerate(self.program.sources):
            position = run.modified.get(self.plan.record_key(k))
            if position is not None:
                self.notes.append(self._modified_text(src, position))
        for name, position in sorted(run.changed_inputs.items(), key=lambda x: x[1]):
            self.notes.append(
                f"your code changed the forward tensor {name} in place, at "
                f"{self.plan.step_where(position)} (`{self.plan.step_text(position)}`): the "
                f"lines after it saw the changed {name}; use .clone() before changing a copy")


def _plan(program: LectureProgram) -> _Plan:
    return _Plan(program, {index: position for position, index in enumerate(program.run)})


def _exercise4_verdicts(session: SandboxSession, program: LectureProgram, request: Any,
                        load_problem: str | None) -> tuple[list[Verdict], str]:
    from ..api import exercise4_configs

    config = exercise4_configs(request)[0]
    targets = (*EXERCISE4_GRADIENTS, EXERCISE4_TRAINING)
    source = program.backward
    if source is None:
        reason = ("no training loop with manual backward lines (dlogits = ..., ..., dC = ..., "
                  "grads = [...]) found")
    elif source.reason or load_problem:
        reason = f"{source.where}: {source.reason or load_problem}"
    else:
        verdicts = grade_exercise4(session, source.params, config, request.options)
        return verdicts, (f"exercise 4: graded from your training loop's backward lines, "
                          f"{source.where}, run as backward({', '.join(source.params)}) on the "
                          f"grader's batches; the loop itself was not run")
    message = f"exercise 4 not graded: {reason}"
    return [Verdict(g, config, "isolated", "missing", message=message) for g in targets], message


def _no_exercise_code(submission: Any, state: LectureState, request: Any) -> Result:
    looked = ("assignments to the lecture's gradients (dlogprobs = ..., dprobs = ..., ..., "
              "dC = ..., dlogits = ..., dhprebn = ...) at the top level of a cell, cmp('name', "
              "dvar, var) calls naming your own variables, or a training loop with manual "
              "backward lines")
    from ..api import error_result

    result = error_result(submission.name, f"{submission.name}: found no exercise code to grade: "
                          f"looked for {looked}", request=request)
    return replace(result, mode="chained", loss=state.loss, notes=tuple(submission.notes))


def grade_lecture_style(submission: Any, state: LectureState, request: Any, *,
                        runner: Any = None) -> Result:
    """Grade lecture-style code (a .py file or notebook cells) in chained mode.

    Only the statements that run are scanned for autograd use: a copy of the lecture notebook
    calls loss.backward() in its own forward cell, which the grader never runs."""
    options = request.options
    program = read_lecture_code(submission.code, name=submission.name,
                                cells=submission.source_kind == "ipynb")
    if not program.sources and program.backward is None:
        return _no_exercise_code(submission, state, request)
    plan = _plan(program)
    ex4 = program.backward if "ex4" in options.exercises else None
    load_code = ex4.code if ex4 is not None and ex4.code else ""
    session = SandboxSession(load_code, submission.name, request.limits, runner=runner)
    notes: list[str] = list(submission.notes)
    load_problem = None
    try:
        loaded = session.start()
        if loaded.status != "ok" and load_code:
            load_problem = f"its backward() could not be defined: {loaded.message}"
            session.close()
            session = SandboxSession("", submission.name, request.limits, runner=runner)
            loaded = session.start()
        if loaded.status != "ok":
            return replace(_no_exercise_code(submission, state, request), message=(
                f"{submission.name}: the grader could not start a process for your code: "
                f"{loaded.message}"), notes=())
        verdicts: list[Verdict] = []
        extra: list[str] = []
        if program.sources:
            for config in (request.config, *request.hidden_configs()):
                config_state = state if config == request.config else cached_lecture_state(config)
                grader = _Grader(session, plan, config_state, options)
                verdicts += grader.grade()
                extra += [n for n in grader.notes if n not in extra]
        ex4_note = None
        if "ex4" in options.exercises:
            ex4_verdicts, ex4_note = _exercise4_verdicts(session, program, request, load_problem)
            verdicts += ex4_verdicts
    finally:
        session.close()
    exercises = collect_gradient_results(verdicts, scoring_mode="chained", options=options,
                                         lecture=request.config)
    notes += describe_selection(program)
    notes += _mapping_notes(program)
    notes += list(program.notes)
    if ex4_note:
        notes.append(ex4_note)
    notes += extra
    first = next((g.name for ex in exercises if ex.name == "ex1" for g in ex.gradients
                  if g.status in ("wrong", "shape", "nonfinite", "error")), None)
    if first:
        notes.append(f"first gradient that fails (chained mode): {first}; the ones after it use "
                     "your own upstream gradients, so they may fail because of it")
    notes.append("lecture-style code is graded in chained mode: each gradient is computed from "
                 "your own upstream gradients, as in your notebook (autograd's where yours "
                 "raised or had the wrong shape)")
    notes += session.notes()
    return Result(
        submission=submission.name, status="graded", message=None,
        score=sum(e.score for e in exercises), max_score=sum(e.max_score for e in exercises),
        mode="chained", loss=state.loss, exercises=exercises, first_wrong=None,
        notes=tuple(notes), configs=tuple(c.label() for c in (request.config, *request.hidden_configs())),
        grader_version=__version__, output=session.output(),
        integrity=_integrity(program, session, load_code))


def _integrity(program: LectureProgram, session: SandboxSession, load_code: str
               ) -> tuple[IntegrityFlag, ...]:
    ran = "\n".join(program.statement(i).code for i in program.run)
    static = scan_source(ran + "\n" + load_code, filename="exercise code")
    return integrity_flags(static, session.integrity)


def _mapping_notes(program: LectureProgram) -> list[str]:
    notes = []
    used = {s.var for s in program.sources}
    renamed = [f"{var} as {gradient} ({how})" for var, (gradient, how) in program.renamed.items()
               if var in used]
    if renamed:
        notes.append("your variables graded under other names: " + "; ".join(renamed)
                     + "; the others by their lecture names")
    if program.aliases:
        notes.append("your names for the grader's tensors (from your cmp() calls): "
                     + ", ".join(f"{a} = {b}" for a, b in sorted(program.aliases.items())))
    return notes
