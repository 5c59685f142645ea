"""End to end: grade whole submissions against autograd."""

from dataclasses import replace

import pytest

from grader.api import GradeRequest, grade_submission, lecture_config
from grader.judge.grading import GradingOptions
from grader.output.results import read_result, write_result

from conftest import EXERCISE, NAMES, SOLUTION, SUBMISSIONS, expectation, requires_names, \
    with_overrides

WRONG = sorted((SUBMISSIONS / "wrong").glob("*.py")) + sorted((SUBMISSIONS / "broken").glob("*.py"))


def test_the_reference_solution_scores_full_marks_in_both_modes(solution_result):
    r = solution_result
    assert r.status == "graded" and r.score == r.max_score == 34.0
    assert r.first_wrong is None and r.all_passed
    for g in r.gradients():
        assert g.passed, g.name
        assert all(m.status in ("exact", "approx") for m in g.modes), g.name


def test_points_come_from_isolated_mode_and_both_modes_are_reported(solution_result):
    ex1 = solution_result.exercises[0]
    assert solution_result.mode == "isolated"
    assert all({m.mode for m in g.modes} == {"isolated", "chained"} for g in ex1.gradients)


def test_dhpreact_is_approximate_and_explained_not_marked_wrong(solution_result):
    g = next(g for g in solution_result.gradients() if g.name == "dhpreact")
    assert g.status == "approx" and not g.exact and g.points == g.max_points
    assert "tanh" in g.explanation


def test_the_stub_file_scores_zero_and_everything_is_missing(quick_request):
    r = grade_submission(EXERCISE, request=quick_request)
    assert r.status == "graded" and r.score == 0 and not r.all_passed
    assert {g.status for g in r.gradients()} == {"missing"}
    assert r.first_wrong is None


@pytest.mark.parametrize("override", WRONG, ids=lambda p: p.stem)
def test_a_wrong_submission_fails_at_the_right_gradient(override, quick_request, write_submission):
    path = write_submission(with_overrides(override))
    r = grade_submission(path, request=quick_request)
    want = expectation(override, "first-wrong")
    assert r.first_wrong == want
    g = next(g for g in r.exercises[0].gradients if g.name == want)
    assert not g.passed and g.points == 0 and g.message
    want_status = expectation(override, "status")
    if want_status:
        assert g.status == want_status
    # isolated mode grades each step alone: only the broken step loses points in exercise 1
    lost = [g.name for g in r.exercises[0].gradients if not g.passed]
    assert lost == [want]


def test_chained_mode_carries_a_mistake_downstream(quick_request, write_submission):
    path = write_submission(with_overrides(SUBMISSIONS / "wrong" / "forgot_counts_branch.py"))
    r = grade_submission(path, request=quick_request)
    chained = {g.name: next(m.status for m in g.modes if m.mode == "chained")
               for g in r.exercises[0].gradients}
    assert chained["dcounts"] == "wrong" and chained["dnorm_logits"] == "wrong"
    assert chained["dprobs"] in ("exact", "approx")


def test_a_syntax_error_is_a_graded_error_not_a_crash(write_submission, quick_request):
    r = grade_submission(write_submission("def dprobs(:\n"), request=quick_request)
    assert r.status == "error" and "syntax error at line 1" in r.message and r.score == 0


def test_a_file_that_exits_at_top_level_keeps_what_it_printed_read_after_its_process_ended(
        write_submission, quick_request, monkeypatch):
    """Its process is stopped before the output is taken: all of it is there at once, where a
    live process's output would be waited for (a pause per such student in a batch)."""
    from grader.sandbox.session import SandboxSession

    taken_from_live = []
    output = SandboxSession.output

    def watched(self):
        taken_from_live.append(self.child is not None)
        return output(self)

    monkeypatch.setattr(SandboxSession, "output", watched)
    r = grade_submission(write_submission(
        "import sys\nprint('about to leave')\nsys.exit(2)\n\ndef dprobs(dlogprobs, probs):\n"
        "    return dlogprobs / probs\n"), request=quick_request)
    assert r.status == "error" and "sys.exit(2)" in r.message
    assert r.output == "about to leave\n" and taken_from_live == [False]


def test_results_round_trip_through_json(solution_result, tmp_path):
    write_result(solution_result, tmp_path / "r.json")
    back = read_result(tmp_path / "r.json")
    assert back == replace(solution_result)


def test_isolated_only_mode_runs_no_chained_calls(write_submission):
    request = GradeRequest(options=GradingOptions(modes=("isolated",), exercises=("ex1",)))
    r = grade_submission(SOLUTION, request=request)
    assert r.score == r.max_score == 26
    assert all({m.mode for m in g.modes} == {"isolated"} for g in r.gradients())


@requires_names
def test_names_txt_gives_the_documented_loss_in_the_results():
    request = GradeRequest(config=lecture_config(NAMES),
                           options=GradingOptions(exercises=("ex2",)))
    r = grade_submission(SOLUTION, request=request)
    assert r.loss == 3.3345839977264404


def test_chained_mode_still_catches_a_small_mistake_below_batch_norm(quick_request, write_submission):
    path = write_submission(with_overrides(SUBMISSIONS / "wrong" / "bessel_n.py"))
    g = next(g for g in grade_submission(path, request=quick_request).exercises[0].gradients
             if g.name == "dbndiff2")
    assert {m.mode: m.status for m in g.modes} == {"isolated": "wrong", "chained": "wrong"}


def test_prepare_grading_computes_the_references_once_for_every_later_submission():
    from grader.api import GradeRequest, prepare_grading
    from grader.judge.references import exercise4_reference, training_reference
    from grader.judge.probes import probe_book

    request = GradeRequest(options=GradingOptions(train_steps=2))
    prepare_grading(request)
    ex4 = request.config.with_(n_hidden=200)
    hits = (exercise4_reference.cache_info().hits, training_reference.cache_info().hits)
    prepare_grading(request)
    assert exercise4_reference.cache_info().hits > hits[0]
    assert training_reference.cache_info().hits > hits[1]
    assert exercise4_reference(ex4, 2) is exercise4_reference(ex4, 2)
    book = probe_book(request.hidden_configs()[0])
    assert len(book._made) >= 20, "a probe for every catalog signature"
