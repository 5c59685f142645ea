"""Hidden configs: other sizes and seeds, so answers hard-coded for the lecture's sizes fail."""

import re
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from grader.api import GradeRequest, grade_submission
from grader.lecture.configs import (
    GRADING_SEED,
    SELF_CHECK_SEED,
    Dimension,
    HiddenConfigs,
    HiddenVariant,
    changed_dimensions,
    describe_hard_coding,
    resolve_hidden_configs,
    vocab_size_of,
)
from grader.judge.grading import GradingOptions
from grader.lecture.model import Config, build_lecture_state

from conftest import ROOT, SUBMISSIONS, short_wall_time, with_overrides

HARD_CODED = SUBMISSIONS / "hidden" / "hard_coded_sizes.py"
LECTURE = Config()


def _is_prime(k: int) -> bool:
    return k > 1 and all(k % d for d in range(2, int(k**0.5) + 1))


def test_the_default_hidden_configs_change_every_size_with_an_odd_prime_batch_and_n_2():
    hidden = resolve_hidden_configs(LECTURE, HiddenConfigs())
    assert len(hidden) >= 2
    ns = {c.n for c in hidden}
    assert 2 in ns and any(n % 2 and _is_prime(n) for n in ns)
    for size in ("n", "n_embd", "n_hidden", "block_size"):
        assert any(getattr(c, size) != getattr(LECTURE, size) for c in hidden), size
    assert any(vocab_size_of(c) != vocab_size_of(LECTURE) for c in hidden)
    assert all(c.seed != LECTURE.seed for c in hidden)
    assert len({c.seed for c in hidden}) == len(hidden)


def test_the_self_check_runs_the_same_kinds_of_configs_with_other_seeds():
    final = resolve_hidden_configs(LECTURE, HiddenConfigs())
    check = resolve_hidden_configs(LECTURE, HiddenConfigs.self_check())
    assert [replace(c, seed=0) for c in final] == [replace(c, seed=0) for c in check]
    assert not {c.seed for c in final} & {c.seed for c in check}
    assert SELF_CHECK_SEED in {c.seed for c in check}
    assert GRADING_SEED in {c.seed for c in final}


def test_instructors_can_turn_hidden_configs_off_or_fix_them():
    assert resolve_hidden_configs(LECTURE, HiddenConfigs.off()) == ()
    assert GradeRequest(hidden=()).hidden_configs() == ()
    mine = (Config(seed=5, n=7, name="mine"),)
    assert GradeRequest(hidden=mine).hidden_configs() == mine
    fixed = HiddenConfigs(variants=(HiddenVariant("only", n=13, seed=99),))
    (only,) = GradeRequest(hidden=fixed).hidden_configs()
    assert (only.n, only.seed, only.n_hidden, only.name) == (13, 99, 64, "only")


def test_hidden_configs_share_the_lecture_word_list():
    words = tuple(f"{a}{b}x" for a in "abcdefghij" for b in "klmnopqrst")
    lecture = Config(words=words)
    for c in resolve_hidden_configs(lecture, HiddenConfigs(variants=(HiddenVariant("h", n=5),))):
        assert c.words == words


@pytest.mark.parametrize("variant, needle", [
    (HiddenVariant("tiny", n=1), "n >= 2"),
    (HiddenVariant("neg", n_hidden=0), "positive integer"),
    (HiddenVariant("letters", drop_letters="aeiou"), "too few"),
])
def test_an_impossible_hidden_config_is_refused_with_a_clear_message(variant, needle):
    with pytest.raises(ValueError, match=needle):
        resolve_hidden_configs(LECTURE, HiddenConfigs(variants=(variant,)))


@pytest.mark.parametrize("config", resolve_hidden_configs(LECTURE, HiddenConfigs()),
                         ids=lambda c: c.name)
def test_every_hidden_config_builds_a_lecture_state_with_bessels_correction(config):
    state = build_lecture_state(config)
    hprebn = state.forward["hprebn"]
    assert state.forward["emb"].shape == (config.n, config.block_size, config.n_embd)
    assert torch.allclose(state.forward["bnvar"], hprebn.var(0, keepdim=True, unbiased=True))
    assert all(torch.isfinite(g).all() for g in state.grads.values())


def test_changed_dimensions_name_every_size_that_differs_including_the_vocabulary():
    hidden = resolve_hidden_configs(LECTURE, HiddenConfigs())[0]
    names = [d.name for d in changed_dimensions(LECTURE, hidden)]
    assert names == ["n", "n_embd", "n_hidden", "block_size", "vocab_size"]
    assert changed_dimensions(LECTURE, LECTURE.with_(seed=3)) == ()


def test_the_message_names_the_dimension_that_changed():
    n = Dimension("n", 32, 19)
    text = describe_hard_coding((n,), base=LECTURE, other=LECTURE.with_(n=19), changed=(n,))
    assert text.startswith("correct at n=32, wrong at n=19: is 32 hard-coded?")


def _culprits(path):
    m = re.search(r"^# expect-culprits: *(.+)$", path.read_text(), re.M)
    return {k: v.split(",") for k, v in (item.split("=") for item in m.group(1).split())}


@pytest.fixture(scope="module")
def hard_coded_result(tmp_path_factory):
    path = tmp_path_factory.mktemp("hidden") / "hard_coded.py"
    path.write_text(with_overrides(HARD_CODED))
    return grade_submission(path, request=GradeRequest(
        options=GradingOptions(exercises=("ex1",), modes=("isolated",))))


def test_hard_coded_sizes_pass_the_lecture_config_and_fail_hidden_ones_naming_the_size(
        hard_coded_result):
    r = hard_coded_result
    expected = _culprits(HARD_CODED)
    by_name = {g.name: g for g in r.gradients()}
    for name, sizes in expected.items():
        g = by_name[name]
        lecture = next(m for m in g.modes if m.mode == "isolated")
        assert lecture.status in ("exact", "approx"), name
        assert not g.passed and g.points == 0, name
        assert any(c.config.startswith("hidden") and c.status not in ("exact", "approx")
                   for c in g.configs), name
        lecture_values = {"n": 32, "n_embd": 10, "n_hidden": 64, "block_size": 3, "vocab_size": 27}
        head = g.message.split(":")[0]
        assert head.startswith("correct at ") and "hard-coded" in g.message, g.message
        for size in sizes:
            assert f"{size}={lecture_values[size]}" in head, (name, g.message)
        assert "hard-coded?" in g.message
    assert {g.name for g in r.gradients() if not g.passed} == set(expected)
    assert not r.all_passed


def test_the_self_check_never_says_all_passed_while_a_hidden_config_failed(tmp_path):
    path = tmp_path / "hard_coded.py"
    path.write_text(with_overrides(HARD_CODED))

    def check(*extra):
        return subprocess.run([sys.executable, "-m", "grader", "check", str(path), "--mode",
                               "isolated", "--steps", "1", *extra], capture_output=True,
                              text=True, cwd=ROOT, timeout=300)

    with_hidden = check()
    assert with_hidden.returncode == 1, with_hidden.stdout + with_hidden.stderr
    assert "all passed" not in with_hidden.stdout
    assert "is 32 hard-coded?" in with_hidden.stdout
    assert "2 hidden configs" in with_hidden.stdout
    without = check("--no-hidden")
    assert without.returncode == 0 and "(all passed)" in without.stdout
    assert "lecture config only" in without.stdout


def test_chained_only_grading_runs_the_hidden_configs_chained(tmp_path):
    path = tmp_path / "hard_coded.py"
    path.write_text(with_overrides(HARD_CODED))
    r = grade_submission(path, request=GradeRequest(
        options=GradingOptions(exercises=("ex1",), modes=("chained",))))
    g = next(g for g in r.gradients() if g.name == "dhprebn")
    assert not g.passed and "hidden-1" in g.message and "32 (n)" in g.message
    assert {x.name for x in r.gradients() if not x.passed} >= {"dlogprobs", "dhprebn", "demb"}


@pytest.mark.parametrize("on_hidden", [True, False])
def test_exercise_4_checks_its_gradients_on_one_hidden_config_and_trains_on_the_lecture_one(
        on_hidden, tmp_path):
    path = tmp_path / "hard_coded_backward.py"
    path.write_text(with_overrides(SUBMISSIONS / "hidden" / "hard_coded_backward.py"))
    r = grade_submission(path, request=GradeRequest(
        hidden=HiddenConfigs(exercise4=on_hidden),
        options=GradingOptions(exercises=("ex4",), train_steps=2)))
    by_name = {g.name: g for g in r.gradients()}
    assert by_name["training"].passed
    if on_hidden:
        for name in ("dW2", "db2", "dC"):
            assert not by_name[name].passed, name
            assert by_name[name].message.startswith("correct at n=32, wrong at n=19: is 32 "
                                                    "hard-coded?"), by_name[name].message
    else:
        assert r.all_passed


def test_a_stub_that_hangs_at_other_sizes_fails_with_the_limit_named(tmp_path):
    path = tmp_path / "hangs.py"
    path.write_text(with_overrides(SUBMISSIONS / "hidden" / "hangs_at_other_sizes.py"))
    r = grade_submission(path, request=GradeRequest(
        options=GradingOptions(exercises=("ex1",), modes=("isolated",)),
        limits=short_wall_time(1.0)))
    g = next(g for g in r.gradients() if g.name == "dhprebn")
    assert g.status == "error" and "limit: wall time" in g.message and "hidden-1" in g.message
    assert [x.name for x in r.gradients() if not x.passed] == ["dhprebn"]
    # one timeout, then no more calls of that stub to find out which size
    assert [c.config for c in g.configs] == ["lecture", "hidden-1"]
