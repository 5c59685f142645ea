"""Lecture-style submissions: ``dlogprobs = ...`` assignments in sequence, as in the notebook.

grader.submissions.lecture_source picks the exercise statements out of the file or notebook;
they run in the sandbox (grader.judge.lecture_run) with the grader's forward tensors,
parameters, ``n``, ``Xb``, ``Yb``, ``torch``, ``F`` and a ``cmp`` that records instead of
printing. Each gradient comes back as it was right after the statements that compute it, and is
compared with autograd's by the same code as the stub format. Lecture-style code is graded in
chained mode only: each step uses the student's own upstream gradients, as in their notebook;
where one of them cannot be used (it raised, has the wrong shape, or reads autograd's answer:
grader.judge.lecture_integrity), the program runs again with autograd's in its place, so that one
mistake costs one gradient. Exercise 4 is graded from the training loop's backward lines, turned
into a ``backward()`` function; the loop itself never runs.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import replace
from typing import Any

import torch

from ..lecture.catalog import EXERCISE4_GRADIENTS, EXERCISE4_TRAINING, GRADIENTS, Gradient
from ..lecture.model import Config, LectureState, cached_lecture_state
from ..output.results import Result
from ..sandbox.runner import SandboxRunner
from ..sandbox.session import CallOutcome, SandboxSession
from ..submissions.lecture_names import GRADIENT_VARIABLES, PROVIDED_NAMES, lecture_name
from ..submissions.lecture_source import GradientSource, LectureProgram, read_lecture_code
from ..submissions.selection_notes import describe_selection
from ..submissions.loader import Submission
from .compare import graded_answer
from .exercise4 import grade_exercise4
from .gradient_results import collect_gradient_results
from .grading import GradingOptions, Verdict, verdict_from_tensor
from .lecture_integrity import autograd_checked, lecture_integrity_flags, runtime_autograd
from .lecture_run import LecturePlan, LectureRun, Substituted, parse_reply
from .literal_sizes import literal_size_message
from .request import GradeRequest, exercise4_configs
from .scoring import error_result, first_failing_in_chain, graded_result

__all__ = ["grade_lecture_style"]

_UNUSABLE = ("error", "shape", "nonfinite", "missing", "integrity")
_MAX_RUNS = 8                     # runs with more and more of autograd's gradients substituted
_NAME_ERROR = re.compile(r"NameError: name '(\w+)' is not defined")


class _Grader:
    """Runs a program in one config, substituting autograd's gradients where the student's
    cannot be used, and turns what came back into verdicts."""

    def __init__(self, session: SandboxSession, plan: LecturePlan, state: LectureState,
                 options: GradingOptions, *, teach: frozenset[str] | None = None) -> None:
        self.session, self.plan, self.state, self.options = session, plan, state, options
        self.program = plan.program
        self.notes: list[str] = []
        # the gradients whose hint and explanation can be shown (None: all); see _grade_configs
        self.teach = teach

    def _request(self, substituted: Substituted) -> CallOutcome:
        meta, tensors = self.plan.request(self.state, substituted)
        return self.session.request(meta, tensors, seconds=self.session.limits.call_seconds * 2)

    def grade(self) -> list[Verdict]:
        program = self.program
        sources = {s.gradient.name: s for s in program.sources}
        # a gradient with no code at all: autograd's, from the start, for the steps after it
        substituted: Substituted = {
            name: (-1, [name]) for name in program.missing if name in GRADIENT_VARIABLES}
        frozen: dict[str, Verdict] = {}
        verdicts: dict[str, Verdict] = {}
        run: LectureRun | None = None
        for _ in range(_MAX_RUNS):
            outcome = self._request(substituted)
            if outcome.status != "ok":
                message = outcome.message or "the exercise code could not be run"
                if outcome.status == "timeout":
                    message = f"your exercise code {message}"
                return [Verdict(g, self.state.config, "chained", "error", message=message)
                        for g in GRADIENTS if g.exercise in self.options.exercises]
            run = parse_reply(outcome, self.plan)
            seen = runtime_autograd(program, outcome.integrity) if outcome.integrity else None
            verdicts = {src.gradient.name: autograd_checked(
                            self._verdict(k, src, run, substituted), program, src, self.options,
                            seen=seen)
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
                      substituted: Substituted) -> list[str]:
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
            message += self._explain_undefined(m.group(1), position)
        return message

    def _explain_undefined(self, name: str, position: int) -> str:
        """Why ``name`` is not defined when the step at ``position`` reads it, in the student's
        terms: assigned by no statement before it (stale kernel state), or by one the grader
        does not run."""
        reader = self.program.statement(self.program.run[position])
        assigned = [st for st in self.program.statements if name in st.assigns]
        if not [st for st in assigned if st.index < reader.index]:
            if not assigned:
                known = {n for st in self.program.statements for n in st.assigns} | \
                    set(PROVIDED_NAMES) | set(self.program.aliases) | set(self.program.sizes)
                close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
                if close:
                    return (f" ({name} is assigned nowhere in your code: a typo for "
                            f"{close[0]}?)")
            later = f" (it is assigned only later, at {assigned[0].where()})" if assigned else ""
            return (f" ({name} is read at {reader.where()} before any cell assigns it{later}: "
                    "your notebook only ran because of a cell run earlier or since deleted; "
                    f"assign {name} before you use it)")
        why = self.program.unresolved.get(name)
        if why is None:
            defined = [st for st in assigned if st.index not in self.program.run]
            if not defined:
                return ""
            why = f"{defined[-1].where()}, which is not run"
        return (f" ({name} is computed at {why}: the grader runs only the exercise code, with its "
                "own tensors under the lecture's names (emb ... loss, the parameters, Xb, Yb, n) "
                "and under yours where your forward pass shows which is which; it could not tell "
                f"what {name} is: compute it from those in the exercise code, or use the "
                "lecture's name)")

    def _verdict(self, k: int, src: GradientSource, run: LectureRun,
                 substituted: Substituted) -> Verdict:
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
        inexact = tuple(u for u in upstream if self._inexact(own[u], self.state.grads[u]))
        inputs = {"h": self.state.forward["h"], **({"dh": own["dh"]} if "dh" in own else {})}
        verdict = verdict_from_tensor(gradient, self.state, actual, self.options,
                                      inputs=inputs, inexact_upstream=inexact,
                                      teach=self.teach is None or gradient.name in self.teach)
        reads = {n for i in src.steps for n in self.program.statement(i).reads}
        used = tuple(name for name, (_, names) in substituted.items()
                     if name != gradient.name and reads & set(names))
        verdict.substituted = used
        if key in run.modified:
            verdict.message = "; ".join(m for m in (verdict.message, self._modified_text(
                src, run.modified[key])) if m)
        return verdict

    def _inexact(self, own: torch.Tensor, expected: torch.Tensor) -> bool:
        """An upstream gradient of the student's that is graded on its values (its shape is
        the tensor's, but for size-1 dimensions in front) and differs from autograd's."""
        graded = graded_answer(own, expected, tolerance=self.options.tolerance)
        return graded is not None and not torch.equal(graded, expected)

    def _own(self, run: LectureRun) -> dict[str, torch.Tensor]:
        return {src.gradient.name: run.records[self.plan.record_key(k)]
                for k, src in enumerate(self.program.sources)
                if src.gradient.exercise == "ex1" and self.plan.record_key(k) in run.records}

    def _problem_verdict(self, gradient: Gradient, src: GradientSource, problem: dict[str, Any]
                         ) -> Verdict:
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

    def _missing(self, gradient: Gradient, run: LectureRun) -> Verdict:
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

    def _modified_text(self, src: GradientSource, position: int) -> str:
        return (f"{src.var} was modified after you computed it, by "
                f"{self.plan.step_where(position)} (`{self.plan.step_text(position)}`): "
                f"graded as it was when assigned; use .clone() when you start a new gradient "
                f"from {src.var}")

    def _describe_modified(self, run: LectureRun) -> None:
        for k, src in enumerate(self.program.sources):
            position = run.modified.get(self.plan.record_key(k))
            if position is not None:
                self.notes.append(self._modified_text(src, position))
        for name, position in sorted(run.changed_inputs.items(), key=lambda x: x[1]):
            self.notes.append(
                f"your code changed the forward tensor {name} in place, at "
                f"{self.plan.step_where(position)} (`{self.plan.step_text(position)}`): the "
                f"lines after it saw the changed {name}; use .clone() before changing a copy")


def _exercise4_verdicts(session: SandboxSession, program: LectureProgram,
                        request: GradeRequest, load_problem: str | None
                        ) -> tuple[list[Verdict], str]:
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


def _no_exercise_code(submission: Submission, state: LectureState, request: GradeRequest
                      ) -> Result:
    looked = ("assignments to the lecture's gradients (dlogprobs = ..., dprobs = ..., ..., "
              "dC = ..., dlogits = ..., dhprebn = ...) at the top level of a cell, cmp('name', "
              "dvar, var) calls naming your own variables, or a training loop with manual "
              "backward lines")
    result = error_result(submission.name, f"{submission.name}: found no exercise code to grade: "
                          f"looked for {looked}", request=request, loss=state.loss)
    return replace(result, mode="chained", notes=tuple(submission.notes))


def grade_lecture_style(submission: Submission, state: LectureState, request: GradeRequest, *,
                        runner: SandboxRunner | None = None) -> Result:
    """Grade lecture-style code (a .py file or notebook cells) in chained mode.

    Only the exercise code is scanned for autograd use (grader.judge.lecture_integrity): a copy
    of the lecture notebook calls loss.backward() in its own forward cell, which the grader never
    runs."""
    options = request.options
    program = read_lecture_code(submission.code, name=submission.name,
                                cells=submission.source_kind == "ipynb")
    if not program.sources and program.backward is None:
        return _no_exercise_code(submission, state, request)
    plan = LecturePlan.of(program)
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
        verdicts, code_notes = _grade_configs(session, plan, state, request)
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
    notes += code_notes
    first = first_failing_in_chain(exercises)
    if first:
        notes.append(f"first gradient that fails (chained mode): {first}; the ones after it use "
                     "your own upstream gradients, so they may fail because of it")
    notes.append("lecture-style code is graded in chained mode: each gradient is computed from "
                 "your own upstream gradients, as in your notebook (autograd's where yours "
                 "raised or had the wrong shape)")
    notes += session.notes()
    return graded_result(submission.name, exercises, request=request, mode="chained",
                         loss=state.loss, notes=notes, output=session.output(),
                         integrity=lecture_integrity_flags(
                             program, filename=submission.name, backward_code=load_code,
                             events=session.integrity))


def _grade_configs(session: SandboxSession, plan: LecturePlan, state: LectureState,
                   request: GradeRequest) -> tuple[list[Verdict], list[str]]:
    """The exercise 1-3 code run in the lecture config and each hidden one: the verdicts, and
    what the runs noticed about the code (each note once)."""
    verdicts: list[Verdict] = []
    notes: list[str] = []
    if not plan.program.sources:
        return verdicts, notes
    # A hidden config's hint or explanation is shown only for a gradient right in the lecture
    # config (grader.judge.gradient_results): for the others its verdict is compared briefly,
    # as the stubs' hidden configs are (status, maxdiff and message the same)
    teach: frozenset[str] | None = None
    for config in (request.config, *request.hidden_configs()):
        config_state = state if config == request.config else cached_lecture_state(config)
        # (a hidden config equal to the lecture's, under another name, is read as the lecture's)
        grader = _Grader(session, plan, config_state, request.options,
                         teach=None if config == request.config else teach)
        found = grader.grade()
        if teach is None:
            teach = frozenset(v.gradient.name for v in found if v.passed)
        verdicts += found
        notes += [n for n in grader.notes if n not in notes]
    _name_literal_sizes(verdicts, plan.program, request.config)
    return verdicts, notes


def _name_literal_sizes(verdicts: list[Verdict], program: LectureProgram, lecture: Config
                        ) -> None:
    """A gradient right in the lecture config and wrong in a hidden one whose code holds a
    literal size: its message names the literal (grader.judge.literal_sizes)."""
    passed = {v.gradient.name for v in verdicts if v.config == lecture and v.passed}
    steps = {s.gradient.name: s.steps for s in program.sources}
    for v in verdicts:
        if v.config != lecture and not v.passed and v.gradient.name in passed:
            statements = [program.statement(i) for i in steps.get(v.gradient.name, ())]
            message = literal_size_message(statements, lecture=lecture, other=v.config)
            if message:
                v.message = message + (f" ({v.message})" if v.message else "")


def _mapping_notes(program: LectureProgram) -> list[str]:
    """Every name of the student's the grader read as one of the lecture's, and where from."""
    notes = []
    used = {s.var for s in program.sources}
    renamed = [f"{var} as {gradient} ({how})" for var, (gradient, how) in program.renamed.items()
               if var in used]
    if renamed:
        notes.append("your variables graded under other names: " + "; ".join(renamed)
                     + "; the others by their lecture names")
    how = {b.student: b.how for b in program.bindings}
    if program.aliases:
        notes.append("your names for the grader's tensors: " + ", ".join(
            f"{a} = {b} (from {how.get(a, f'your {program.checker}() calls')})"
            for a, b in sorted(program.aliases.items())))
    if program.sizes:
        notes.append("your names for the sizes, bound to each config's values: " + ", ".join(
            f"{a} = {b} (from {how[a]})" for a, b in sorted(program.sizes.items())))
    if program.checker != "cmp":
        notes.append(f"your checker {program.checker}() is read as the lecture's cmp(): "
                     "called with a label, a gradient and the tensor it is checked against")
    return notes
