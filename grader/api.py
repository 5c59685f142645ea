"""The pipeline: loader -> sandbox -> judge -> results. ``grade_submission`` is the entry."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from .judge.exercise4 import grade_exercise4, grade_exercise4_hidden
from .judge.gradient_results import collect_gradient_results
from .judge.hidden import grade_hidden_configs
from .judge.integrity import integrity_flags, load_flags, scan_source
from .judge.lecture_style import grade_lecture_style
from .judge.references import warm_references
from .judge.request import GradeRequest, exercise4_configs
from .judge.review import review_reasons, with_review
from .judge.scoring import error_result, first_wrong, graded_result
from .judge.stubs import grade_stub_gradients
from .lecture.model import Config, cached_lecture_state, read_words
from .output.results import Result
from .sandbox.runner import SandboxRunner
from .sandbox.session import SandboxSession
from .submissions.loader import Submission, SubmissionError, load_submission

__all__ = ["GradeRequest", "error_result", "exercise4_configs", "grade_submission", "lecture_config",
           "prepare_grading", "scoring_mode_for"]


def lecture_config(words: str | Path | None = None) -> Config:
    """The lecture config on ``words`` (a names.txt-style file) or the embedded default list."""
    return Config(words=read_words(words) if words else ())


def scoring_mode_for(submission: Submission) -> str:
    return "isolated" if submission.format == "stubs" else "chained"


def grade_submission(source: str | Path | Submission, *,
                     request: GradeRequest = GradeRequest(),
                     runner: SandboxRunner | None = None) -> Result:
    """Grade one submission file; never raises for anything the submission does.

    ``runner``: a SandboxRunner to reuse (grading many files); without one, the submission gets
    a runner of its own, started and stopped here. A graded submission with signs of reaching
    around the autograd watch comes back with status "review" (grader.judge.review)."""
    try:
        submission = source if isinstance(source, Submission) else load_submission(source)
    except SubmissionError as e:
        name = Path(str(source)).name
        result = error_result(name, str(e), request=request)
        if e.source is None:
            return result
        static = scan_source(e.source, filename=name, cells=name.lower().endswith(".ipynb"))
        return replace(result, integrity=integrity_flags(static, ()))
    result = _grade_loaded(submission, request=request, runner=runner)
    if result.status != "graded" or request.options.integrity_policy != "zero":
        return result
    reasons = review_reasons(submission.code, filename=submission.name, tree=submission.tree,
                             cells=submission.source_kind == "ipynb")
    return with_review(result, reasons, policy=request.options.integrity_policy)


def _grade_loaded(submission: Submission, *, request: GradeRequest,
                  runner: SandboxRunner | None) -> Result:
    state = cached_lecture_state(request.config)
    torch.set_num_threads(1)
    options = request.options
    if submission.format != "stubs":
        return grade_lecture_style(submission, state, request, runner=runner)
    session = SandboxSession(submission.code, submission.name, request.limits, runner=runner)
    try:
        loaded = session.start()
        if loaded.status != "ok":
            message = loaded.message or "could not run your file"
            if loaded.status == "timeout":
                message = f"your file, run top to bottom, {message}"
            result = error_result(submission.name, message,
                                  status="timeout" if loaded.status == "timeout" else "error",
                                  request=request, loss=state.loss)
            return _with_output(result, session, submission)
        hidden = request.hidden_configs()
        verdicts = grade_stub_gradients(session, submission.functions, state, options)
        verdicts += grade_hidden_configs(session, submission.functions, verdicts, state,
                                         tuple(cached_lecture_state(c) for c in hidden), options,
                                         state_for=cached_lecture_state)
        if "ex4" in options.exercises:
            backward = submission.functions.get("backward")
            ex4_config, *ex4_hidden = exercise4_configs(request)
            ex4 = grade_exercise4(session, backward, ex4_config, options)
            for config in ex4_hidden:
                ex4 += grade_exercise4_hidden(session, backward, ex4, ex4_config, config,
                                              options)
            verdicts += ex4
    finally:
        session.close()
    mode = scoring_mode_for(submission)
    exercises = collect_gradient_results(verdicts, scoring_mode=mode, options=options,
                                         lecture=request.config)
    result = graded_result(submission.name, exercises, request=request, mode=mode,
                           loss=state.loss, notes=[*submission.notes, *session.notes()],
                           first_wrong=first_wrong(exercises, verdicts))
    return _with_output(result, session, submission)


def prepare_grading(request: GradeRequest = GradeRequest()) -> None:
    """Compute once what grading ``request`` compares every submission with: autograd's
    gradients in every config, the probes, exercise 4's references. Each is cached in this
    process (and in processes forked from it), so the first submission costs no more than the
    others."""
    torch.set_num_threads(1)
    hidden = request.hidden_configs()
    states = [cached_lecture_state(c) for c in (request.config, *hidden)]
    warm_references(states, exercise4_configs(request), request.options)


def _with_output(result: Result, session: SandboxSession, submission: Submission) -> Result:
    """``result`` with what the code printed and the integrity flags; the session is closed
    first, so that its output is read whole at once instead of waited for."""
    session.close()
    static = scan_source(submission.code, filename=session.filename, tree=submission.tree,
                         cells=submission.source_kind == "ipynb")
    at_load = [e for e in session.load_integrity if e.get("kind") == "autograd"]
    events = [e for e in session.integrity if e not in at_load]
    flags = load_flags(at_load) + integrity_flags(static, events)
    return replace(result, output=session.output(), integrity=flags)
