"""Known mistakes: a wrong answer that matches one gets its hint; right answers never get one."""

import inspect
import random
import re
from dataclasses import replace

import pytest
import torch

from grader.api import GradeRequest, grade_submission
from grader.lecture.catalog import GRADIENTS
from grader.judge.compare import Tolerance, compare_gradient
from grader.judge.grading import GradingOptions
from grader.judge.hints import find_hint, generic_hint, same_within_rounding
from grader.judge.mistakes import MISTAKES
from grader.lecture.model import Config, build_lecture_state

from conftest import SUBMISSIONS, gradient_by_name, probe_for, reference_solution_module, \
    with_overrides

MISTAKE_FILES = SUBMISSIONS / "mistakes"
ALTERNATIVES = sorted((SUBMISSIONS / "alternatives").glob("*.py"))
CONFIGS = [Config(), Config(seed=5, n=19, n_embd=7, n_hidden=23, block_size=4, name="odd")]
# mistakes whose tensor is the right one in a shape that differs from the tensor's only by size-1
# dimensions in front: graded on its values (right) unless the assignment sets strict_shapes
SHAPE_ONLY = {"db1_keepdim", "db2_keepdim", "dbngain_no_keepdim"}
STRICT = GradingOptions(tolerance=Tolerance(strict_shapes=True))


SOLUTION_MODULE = reference_solution_module()


def _lecture_pool(state):
    return {**state.forward, **state.params, "n": state.config.n, "Xb": state.Xb,
            "Yb": state.Yb, **state.grads}


def _scale(gradient, state):
    return max((float(state.grads[u].abs().max()) for u in gradient.upstream), default=0.0)


def _groups():
    """Mistakes on distinct gradients share one submission (one grading run per group).

    Mistakes that only random upstream gradients reveal get groups of their own, without
    upstream mistakes, so that chained mode sees autograd-like upstream gradients there.
    """
    groups: list[list] = []
    for probe_only in (False, True):
        mine: list[list] = []
        for m in MISTAKES:
            if m.needs_probe != probe_only:
                continue
            slot = next((g for g in mine if m.gradient not in {x.gradient for x in g}), None)
            if slot is None:
                mine.append([m])
            else:
                slot.append(m)
        groups += mine
    return groups


GROUPS = _groups()


def test_the_catalog_holds_at_least_20_mistakes_each_with_a_submission_written_with_it():
    keys = [m.key for m in MISTAKES]
    assert len(keys) >= 20 and len(set(keys)) == len(keys)
    assert {p.stem for p in MISTAKE_FILES.glob("*.py")} == set(keys)
    for m in MISTAKES:
        text = (MISTAKE_FILES / f"{m.key}.py").read_text()
        assert re.search(rf"^# expect-hint: {m.key}$", text, re.M)
        assert f"def {m.gradient}(" in text
        assert m.gradient in {g.name for g in GRADIENTS} and m.hint


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"n={c.n}")
@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: m.key)
def test_each_mistake_is_wrong_and_recognised_from_the_same_inputs(mistake, config):
    """With autograd's upstream, or (for the hidden ones) with a random upstream probe."""
    gradient = gradient_by_name(mistake.gradient)
    state = build_lecture_state(config)
    if mistake.needs_probe:
        params = tuple(inspect.signature(getattr(SOLUTION_MODULE, gradient.name)).parameters)
        probe = probe_for(config, gradient, params)
        pool, expected, scale = probe.pool, probe.expected, probe.scale(params)
    else:
        pool, scale = _lecture_pool(state), _scale(gradient, state)
        expected = state.grads[f"d{gradient.variable}"]
    wrong = mistake.build(**{p: pool[p] for p in mistake.params})
    assert compare_gradient(wrong, expected, scale=scale,
                            tolerance=STRICT.tolerance).status not in ("exact", "approx")
    default = compare_gradient(wrong, expected, scale=scale).status
    assert (default in ("exact", "approx")) == (mistake.key in SHAPE_ONLY), default
    hint = find_hint(gradient.name, wrong, expected, pool, scale=scale,
                     probe=mistake.needs_probe)
    assert hint is not None and hint.key == mistake.key


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"n={c.n}")
def test_the_reference_answers_never_match_a_mistake(config):
    state = build_lecture_state(config)
    pool = _lecture_pool(state)
    for gradient in GRADIENTS:
        fn = getattr(SOLUTION_MODULE, gradient.name)
        actual = fn(**{p: pool[p] for p in inspect.signature(fn).parameters})
        expected = state.grads[f"d{gradient.variable}"]
        for probe in (False, True):
            assert find_hint(gradient.name, actual, expected, pool,
                             scale=_scale(gradient, state), probe=probe) is None, gradient.name


def test_a_wrong_answer_in_another_leading_shape_gets_the_hint_of_its_values():
    """dbndiff.sum(0): the sign mistake, without keepdim. Its values are graded (wrong) and
    recognised in bnmeani's shape; the shape is a note, not the hint."""
    from grader.judge.grading import judge_answer

    state = build_lecture_state(Config())
    gradient = gradient_by_name("dbnmeani")
    pool = _lecture_pool(state)
    verdict = judge_answer(gradient, state.config, "isolated", pool["dbndiff"].sum(0),
                           state.grads["dbnmeani"], scale=_scale(gradient, state),
                           options=GradingOptions(), pool=pool)
    assert verdict.status == "wrong" and verdict.hint_key == "dbnmeani_sign"
    assert verdict.message.startswith("shape (64,), but bnmeani.grad has shape (1, 64): graded "
                                      "on its values; ")
    assert verdict.actual.shape == (64,)         # kept as it came


def test_a_sign_flip_or_a_constant_factor_gets_a_generic_hint():
    state = build_lecture_state(Config())
    e, scale, n = state.grads["dW2"], _scale(gradient_by_name("dW2"), state), state.config.n
    assert generic_hint(-e, e, scale=scale, n=n).key == "sign"
    halved = generic_hint(e / 2, e, scale=scale, n=n)
    assert halved.key == "constant_factor" and "(= 1/2)" in halved.text
    assert "(= n)" in generic_hint(e * n, e, scale=scale, n=n).text
    noisy = e + torch.randn(e.shape, generator=torch.Generator().manual_seed(0)) * scale
    assert generic_hint(noisy, e, scale=scale, n=n) is None
    assert generic_hint(e.T.contiguous(), e.T.contiguous() * 0, scale=scale, n=n) is None


@pytest.fixture(scope="module")
def graded_groups(tmp_path_factory):
    """Each group graded once, both modes, lazily; exercises 1 to 3 (exercise 4 has no hints);
    with strict shapes, under which every mistake of the catalog is wrong."""
    cache = {}
    folder = tmp_path_factory.mktemp("mistakes")

    def grade(index):
        if index not in cache:
            path = folder / f"group{index}.py"
            path.write_text(with_overrides(*[MISTAKE_FILES / f"{m.key}.py"
                                             for m in GROUPS[index]]))
            cache[index] = grade_submission(path, request=GradeRequest(
                options=replace(STRICT, exercises=("ex1", "ex2", "ex3"))))
        return cache[index]
    return grade


def _group_of(mistake):
    return next(i for i, g in enumerate(GROUPS) if mistake in g)


def _by_mode(g):
    return {m.mode: m for m in g.modes}


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: m.key)
def test_a_submission_with_a_known_mistake_gets_its_hint_on_that_gradient_in_both_modes(
        mistake, graded_groups):
    r = graded_groups(_group_of(mistake))
    g = next(g for g in r.gradients() if g.name == mistake.gradient)
    assert not g.passed and g.points == 0
    assert g.hint_key == mistake.key and g.hint
    modes = _by_mode(g)
    if mistake.needs_probe:
        # autograd's own upstream hides it in both modes; the isolated probe shows it
        assert modes["isolated"].status in ("exact", "approx")
        assert modes["chained"].status in ("exact", "approx") and modes["chained"].hint is None
        assert any(c.probe and c.config == "lecture" and c.status == "wrong" for c in g.configs)
    else:
        assert modes["isolated"].hint_key == mistake.key
        assert modes["chained"].hint_key == mistake.key


@pytest.mark.parametrize("index", range(len(GROUPS)))
def test_no_other_gradient_gets_a_hint(index, graded_groups):
    r = graded_groups(index)
    mine = {m.gradient for m in GROUPS[index]}
    for g in r.gradients():
        if g.name not in mine:
            assert g.hint is None and all(m.hint is None for m in g.modes), g.name


def test_a_shape_only_mistake_passes_without_a_hint_unless_shapes_are_strict(tmp_path):
    """keepdim where b1 is one-dimensional, none where bngain is (1, n_hidden): the right
    values, graded as such with a note; the keepdim hint only where the shape makes it wrong."""
    path = tmp_path / "shape_only.py"
    path.write_text(with_overrides(*[MISTAKE_FILES / f"{key}.py" for key in sorted(SHAPE_ONLY)]))
    r = grade_submission(path, request=GradeRequest(
        options=GradingOptions(exercises=("ex1",), probes=False)))
    assert r.score == r.max_score
    mine = {m.gradient for m in MISTAKES if m.key in SHAPE_ONLY}
    for g in r.gradients():
        assert g.hint is None and all(m.hint is None for m in g.modes), g.name
        if g.name in mine:
            assert g.status == "exact" and "graded on its values, which match" in g.message
            assert "keepdim=True?" not in g.message and "too many" not in g.message


@pytest.mark.parametrize("path", ALTERNATIVES, ids=lambda p: p.stem)
def test_correct_alternative_formulations_pass_without_a_hint(path, tmp_path):
    submission = tmp_path / path.name
    submission.write_text(with_overrides(path))
    r = grade_submission(submission, request=GradeRequest(
        options=GradingOptions(exercises=("ex1", "ex2", "ex3"))))
    assert r.all_passed and r.score == r.max_score, [
        (g.name, g.status, g.message) for g in r.gradients() if not g.passed]
    defined = set(re.findall(r"^def (\w+)\(", path.read_text(), re.M))
    for g in r.gradients():
        assert g.hint is None and all(m.hint is None for m in g.modes), g.name
        assert all(c.status in ("exact", "approx") for c in g.configs), (g.name, g.configs)
        if g.name in defined:
            assert all(m.status in ("exact", "approx") for m in g.modes), g.name
            if g.status == "approx":
                assert g.explanation and "points" in g.explanation, g.name


def _oracle_close(actual: torch.Tensor, target: torch.Tensor, scale: float) -> bool:
    """same_within_rounding all in torch, the plain way: the reference for its numpy arithmetic."""
    if tuple(actual.shape) != tuple(target.shape) or not actual.is_floating_point():
        return False
    a, t = actual.double(), target.double()
    if not (torch.isfinite(a).all() and torch.isfinite(t).all()):
        return False
    s = max(scale, float(t.abs().max()) if t.numel() else 0.0)
    return bool(((a - t).abs() <= 1e-4 * t.abs() + max(1e-5 * s, 1e-12)).all())


def test_a_mistake_is_recognised_within_the_same_rounding_as_before():
    rng = random.Random(11)
    g = torch.Generator().manual_seed(11)
    verdicts = []
    for _ in range(3000):
        shape = rng.choice(((), (5,), (32, 27), (32, 1), (0, 4)))
        target = torch.randn(shape, generator=g, dtype=torch.float64) * rng.choice((1.0, 1e-9))
        if target.numel() and rng.random() < 0.1:
            target.view(-1)[0] = rng.choice((float("nan"), float("inf")))
        # around the edge |a - t| = 1e-4 |t| + 1e-5 max|t|, or plainly off
        edge = (1e-4 * target.abs() + 1e-5 * (target.abs().max() if target.numel() else 0))
        actual = target + rng.choice((-1, 1)) * edge * (1 + rng.uniform(-1e-12, 1e-12)) \
            if rng.random() < 0.7 else target * rng.choice((1.5, -1.0, 1.0))
        dtype = rng.choice((torch.float64, torch.float32, torch.float16, torch.bfloat16))
        target, actual = target.to(dtype), actual.to(rng.choice((dtype, dtype, torch.float32)))
        if rng.random() < 0.1 and actual.dim() == 2:
            actual = actual.t().contiguous().t()
        if rng.random() < 0.05:
            actual = actual.reshape(-1)
        scale = rng.choice((0.0, 1e-6, 0.02, float("inf"), float("nan")))
        verdict = same_within_rounding(actual, target, scale)
        assert verdict == _oracle_close(actual, target, scale)
        verdicts.append(verdict)
    assert 500 < sum(verdicts) < 2500       # both verdicts, many times
