"""The pipeline: loader -> sandbox -> compare -> results. ``grade_submission`` is the entry."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import __version__
from .lecture.catalog import EXERCISES, GRADIENTS
from .lecture.configs import HiddenConfigs, resolve_hidden_configs
from .judge.scoring import max_points_for
from .judge.grading import GradingOptions, Verdict, collect_gradient_results, grade_exercise4, \
    grade_exercise4_hidden, grade_hidden_configs, grade_stub_gradients, \
    warm_references
from .judge.integrity import integrity_flags, scan_source
from .lecture.model import Config, cached_lecture_state, read_words
from .submissions.loader import Submission, SubmissionError, load_submission
from .output.results import ExerciseResult, Result
from .sandbox.limits import Limits
from .sandbox.runner import SandboxRunner
from .sandbox.session import SandboxSession

__all__ = ["GradeRequest", "error_result", "exercise4_configs", "grade_submission", "lecture_config",
           "prepare_grading", "scoring_mode_for"]


def lecture_config(words: str | Path | None = None) -> Config:
    """The lecture config on ``words`` (a names.txt-style file) or the embedded default list."""
    return Config(words=read_words(words) if words else ())


@dataclass(frozen=True)
class GradeRequest:
    """Everything that decides a grade, besides the submission itself."""

    config: Config = field(default_factory=Config)
    # hidden configs: HiddenConfigs (the default variants with final grading's seeds; .off(),
    # .self_check(), fixed seeds or variants), or explicit Configs (() turns them off)
    hidden: HiddenConfigs | tuple[Config, ...] = HiddenConfigs()
    options: GradingOptions = field(default_factory=GradingOptions)
    limits: Limits = field(default_factory=Limits)

    def hidden_configs(self) -> tuple[Config, ...]:
        """The hidden configs this request grades on, besides ``config``."""
        if isinstance(self.hidden, HiddenConfigs):
            return resolve_hidden_configs(self.config, self.hidden)
        return tuple(self.hidden)


def scoring_mode_for(submission: Submission) -> str:
    return "isolated" if submission.format == "stubs" else "chained"


def _error_result(name: str, message: str, *, status: str = "error",
                  loss: float | None = None, options: GradingOptions | None = None) -> Result:
    if options is None:
        max_score = sum(g.points for g in GRADIENTS) + 4.0
    else:
        max_score = sum(max_points_for(g, options) for ex in options.exercises
                        for g in EXERCISES.get(ex, ()))
    return Result(submission=name, status=status, message=message, score=0.0,
                  max_score=max_score, mode="isolated", loss=loss, grader_version=__version__)


def error_result(name: str, message: str, *, status: str = "error",
                 request: GradeRequest = GradeRequest()) -> Result:
    """The result of a submission that cannot be graded at all: zero points and the reason."""
    return _error_result(name, message, status=status, options=request.options)


def _first_wrong(exercises: tuple[ExerciseResult, ...], verdicts: list[Verdict]) -> str | None:
    isolated_bad = {(v.gradient.exercise, v.gradient.name) for v in verdicts
                    if v.mode == "isolated"
                    and v.status in ("wrong", "shape", "nonfinite", "error", "integrity")}
    for ex in exercises:
        for g in ex.gradients:
            if (ex.name, g.name) in isolated_bad:
                return g.name
    return None


def grade_submission(source: str | Path | Submission, *,
                     request: GradeRequest = GradeRequest(),
                     runner: SandboxRunner | None = None) -> Result:
    """Grade one submission file; never raises for anything the submission does.

    ``runner``: a SandboxRunner to reuse (grading many files); without one, the submission gets
    a runner of its own, started and stopped here."""
    try:
        submission = source if isinstance(source, Submission) else load_submission(source)
    except SubmissionError as e:
        return _error_result(Path(str(source)).name, str(e), options=request.options)
    state = cached_lecture_state(request.config)
    torch.set_num_threads(1)
    options = request.options
    if submission.format != "stubs":
        from .judge.lecture_style import grade_lecture_style

        return grade_lecture_style(submission, state, request, runner=runner)
    session = SandboxSession(submission.code, submission.name, request.limits, runner=runner)
    try:
        loaded = session.start()
        if loaded.status != "ok":
            message = loaded.message or "could not run your file"
            if loaded.status == "timeout":
                message = f"your file, run top to bottom, {message}"
            result = _error_result(submission.name, message,
                                   status="timeout" if loaded.status == "timeout" else "error",
                                   loss=state.loss, options=options)
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
    notes = list(submission.notes) + session.notes()
    result = Result(
        submission=submission.name, status="graded", message=None,
        score=sum(e.score for e in exercises), max_score=sum(e.max_score for e in exercises),
        mode=mode, loss=state.loss, exercises=exercises,
        first_wrong=_first_wrong(exercises, verdicts), notes=tuple(notes),
        configs=tuple(c.label() for c in (request.config, *hidden)),
        grader_version=__version__)
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


def exercise4_configs(request: GradeRequest) -> list[Config]:
    """Where exercise 4 is graded: the lecture config with the lecture's n_hidden = 200, then
    the first hidden config unless the request turns that off."""
    hidden = request.hidden_configs()
    configs = [request.config.with_(n_hidden=200)]
    if hidden and (not isinstance(request.hidden, HiddenConfigs) or request.hidden.exercise4):
        configs.append(hidden[0])
    return configs


def _with_output(result: Result, session: SandboxSession, submission: Submission) -> Result:
    """``result`` with what the code printed and the integrity flags; the session is closed
    first, so that its output is read whole at once instead of waited for."""
    from dataclasses import replace

    session.close()
    flags = integrity_flags(scan_source(submission.code, filename=session.filename,
                                        tree=submission.tree), session.integrity)
    return replace(result, output=session.output(), integrity=flags)
