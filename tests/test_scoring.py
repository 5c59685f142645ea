"""Points, the Result they add up to, and the first wrong step a student is pointed to."""

from __future__ import annotations

from grader.judge.grading import GradingOptions, Verdict
from grader.judge.request import GradeRequest, exercise4_configs
from grader.judge.scoring import error_result, first_failing_in_chain, first_wrong, \
    graded_result, points_for
from grader.lecture.catalog import EXERCISES, GRADIENTS
from grader.lecture.configs import HiddenConfigs
from grader.lecture.model import Config
from grader.output.results import ExerciseResult, GradientResult

BY_NAME = {g.name: g for g in GRADIENTS}
LECTURE = Config()
HIDDEN = Config(n=19, name="hidden")


def _exercise1(statuses: dict[str, str]) -> tuple[ExerciseResult, ...]:
    """Exercise 1's gradients in catalog order, passing but for ``statuses``."""
    results = tuple(GradientResult(g.name, g.variable, statuses.get(g.name, "exact"), False,
                                   False, None, 0.0, g.points) for g in EXERCISES["ex1"])
    return (ExerciseResult("ex1", 0.0, 0.0, results),)


def _verdict(name: str, status: str, mode: str = "isolated", config: Config = LECTURE
             ) -> Verdict:
    return Verdict(BY_NAME[name], config, mode, status)


def test_an_ungradable_submission_scores_zero_out_of_every_point_that_counts():
    request = GradeRequest(options=GradingOptions(exercises=("ex1", "ex2"), points={"dC": 3.0}))
    result = error_result("x.py", "x.py: syntax error", request=request)
    expected = sum(g.points for g in EXERCISES["ex1"]) - 1.0 + 3.0 + 2.0   # dC: 3, ex2: 2
    assert (result.status, result.score, result.max_score) == ("error", 0.0, expected)
    assert result.message == "x.py: syntax error" and result.exercises == ()


def test_a_graded_result_adds_up_its_exercises_and_names_its_configs():
    exercises = (ExerciseResult("ex1", 3.0, 4.0, ()), ExerciseResult("ex2", 2.0, 2.0, ()))
    request = GradeRequest(config=LECTURE, hidden=(HIDDEN,))
    result = graded_result("x.py", exercises, request=request, mode="isolated", loss=3.3,
                           notes=["a note"], first_wrong="dprobs")
    assert (result.score, result.max_score, result.first_wrong) == (5.0, 6.0, "dprobs")
    assert result.configs == (LECTURE.label(), HIDDEN.label()) and result.notes == ("a note",)


def test_approximate_earns_full_points_unless_the_gradient_must_be_exact():
    dprobs = BY_NAME["dprobs"]
    assert points_for(dprobs, "approx", GradingOptions()) == dprobs.points
    assert points_for(dprobs, "approx", GradingOptions(exact_required=frozenset({"dprobs"}))) == 0
    assert points_for(dprobs, "wrong", GradingOptions()) == 0


def test_the_first_wrong_step_is_the_first_in_catalog_order_that_isolated_mode_failed():
    exercises = _exercise1({})
    verdicts = [_verdict("dcounts", "wrong", config=HIDDEN), _verdict("dprobs", "integrity"),
                _verdict("dlogprobs", "wrong", mode="chained"), _verdict("dlogprobs", "missing")]
    assert first_wrong(exercises, verdicts) == "dprobs"
    assert first_wrong(exercises, verdicts[2:]) is None      # chained or missing: not wrong


def test_lecture_style_names_the_first_exercise_1_gradient_that_fails():
    assert first_failing_in_chain(_exercise1({"dcounts": "shape", "dh": "wrong"})) == "dcounts"
    assert first_failing_in_chain(_exercise1({"dprobs": "missing"})) is None


def test_exercise_4_is_graded_on_the_lecture_config_widened_and_the_first_hidden_config():
    request = GradeRequest(config=LECTURE, hidden=(HIDDEN, Config(n=5)))
    assert exercise4_configs(request) == [LECTURE.with_(n_hidden=200), HIDDEN]
    off = GradeRequest(config=LECTURE, hidden=HiddenConfigs(exercise4=False))
    assert exercise4_configs(off) == [LECTURE.with_(n_hidden=200)]
