"""Assignment config: TOML -> GradeRequest, and every mistake named with its file and key."""

from pathlib import Path

import pytest

from grader.api import GradeRequest, grade_submission
from grader.assignment import AssignmentError, load_assignment, parse_assignment
from grader.lecture.model import Config

from conftest import SOLUTION

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


def parse(text: str, **kw):
    return parse_assignment(tomllib.loads(text), file="course.toml", **kw)


def error_of(text: str) -> str:
    with pytest.raises(AssignmentError) as info:
        parse(text)
    return str(info.value)


def test_an_empty_file_gives_the_default_request():
    a = parse("")
    assert a.request == GradeRequest() and a.integrity_autograd == "zero"
    assert a.gradescope.visibility == "visible" and a.gradescope.stdout_visibility == "hidden"


def test_every_section_reaches_the_request():
    a = parse("""
        title = "CS 231 HW 4"
        exercises = ["ex1", "ex2"]
        modes = ["isolated"]
        [points.gradients]
        dlogprobs = 3
        [tolerance]
        rtol = 1e-4
        atol_scale = 1e-5
        exact_required = ["dprobs", "dh"]
        strict_shapes = true
        [training]
        steps = 3
        lr = 0.05
        [hidden]
        enabled = false
        [integrity]
        autograd = "flag"
        [limits]
        call_seconds = 5
        memory_mb = 1024
        max_processes = 8
        [gradescope]
        visibility = "after_due_date"
        stdout_visibility = "visible"
    """)
    o, limits = a.request.options, a.request.limits
    assert a.title == "CS 231 HW 4" and o.exercises == ("ex1", "ex2") and o.modes == ("isolated",)
    assert o.points["ex1.dlogprobs"] == 3 and o.tolerance.rtol == 1e-4
    assert o.tolerance.atol_scale == 1e-5 and o.exact_required == {"dprobs", "dh"}
    assert o.tolerance.strict_shapes is True and parse("").request.options.tolerance \
        .strict_shapes is False
    assert o.train_steps == 3 and o.train_lr == 0.05 and a.request.hidden_configs() == ()
    assert a.integrity_autograd == "flag" and o.integrity_policy == "flag"
    assert limits.call_seconds == 5.0 and isinstance(limits.call_seconds, float)
    assert limits.memory_bytes == 1024 * 2**20 and limits.max_processes == 8
    assert a.gradescope.visibility == "after_due_date"


def test_an_exercise_total_is_shared_among_its_gradients_in_proportion():
    a = parse("""
        [points.exercises]
        ex4 = 16
        ex1 = 52
        [points.gradients.ex4]
        training = 2
    """)
    points = a.request.options.points
    assert points["ex4.training"] == 2
    assert all(points[f"ex4.{g}"] == 2 for g in ("dC", "dW1", "db1", "dW2", "db2", "dbngain",
                                                 "dbnbias"))
    assert points["ex1.dC"] == 2 and points["ex1.dlogprobs"] == 2   # ex1's dC is not ex4's


def test_exercise_points_change_the_score_of_a_real_grading():
    a = parse("""
        exercises = ["ex2", "ex3"]
        modes = ["isolated"]
        [points.exercises]
        ex2 = 5
        ex3 = 1
    """)
    r = grade_submission(SOLUTION, request=a.request)
    assert r.score == r.max_score == 6
    assert [(e.name, e.score) for e in r.exercises] == [("ex2", 5), ("ex3", 1)]


def test_hidden_configs_are_read_with_their_sizes():
    a = parse("""
        [[hidden.configs]]
        seed = 7
        n = 19
        n_hidden = 23
        [[hidden.configs]]
        name = "tiny"
        n = 2
    """)
    first, second = a.request.hidden_configs()
    assert (first.seed, first.n, first.n_hidden, first.name) == (7, 19, 23, "hidden-1")
    assert second.name == "tiny" and second.n == 2 and second.n_embd == Config().n_embd


def test_hidden_variants_and_seed_replace_the_defaults():
    default = parse("").request.hidden_configs()
    assert len(default) == 2, "the grader's default hidden configs"
    a = parse("""
        [hidden]
        seed = 4242
        exercise4 = false
        [[hidden.variants]]
        name = "odd"
        n = 19
        drop_letters = "qxz"
    """)
    (odd,) = a.request.hidden_configs()
    assert (odd.name, odd.n, odd.seed) == ("odd", 19, 4242) and not a.request.hidden.exercise4
    assert not any(set("qxz") & set(w) for w in odd.resolved_words())
    reseeded = parse("[hidden]\nseed = 4242").request.hidden_configs()
    assert [c.seed for c in reseeded] == [4242, 4243] and [c.n for c in reseeded] == \
        [c.n for c in default]


def test_words_are_read_relative_to_the_file(tmp_path):
    (tmp_path / "words.txt").write_text("emma\nolivia\nava\n" * 50)
    (tmp_path / "a.toml").write_text('words = "words.txt"\n')
    a = load_assignment(tmp_path / "a.toml")
    assert a.request.config.words[:3] == ("emma", "olivia", "ava") and a.words == "words.txt"


@pytest.mark.parametrize("text, expected", [
    ("titel = 'x'", "course.toml: 'titel' is not a known key: did you mean 'title'?"),
    ("[limits]\ncall_secs = 3", "'limits.call_secs' is not a known key: did you mean 'call_seconds'?"),
    ("[points.gradients]\ndlogprob = 2", "'points.gradients.dlogprob' is not a gradient"),
    ("[points.gradients.ex4]\ndlogprobs = 2", "is not a gradient of ex4 (known: dC, dW1"),
    ("[points.exercises]\nex5 = 2", "'points.exercises.ex5' is not an exercise"),
    ("exercises = ['ex1', 'ex9']", "'exercises' contains 'ex9'"),
    ("exercises = []", "'exercises' is empty"),
    ("modes = ['chain']", "did you mean 'chained'?"),
    ("[training]\nsteps = 0", "'training.steps' is 0, expected a number greater than 0"),
    ("[training]\nsteps = 2.5", "'training.steps' is a number (2.5), expected a number"),
    ("[tolerance]\nrtol = true", "'tolerance.rtol' is True, expected a number"),
    ("[tolerance]\nexact_required = 'some'", "give a list of gradients or \"all\""),
    ("[tolerance]\nstrict_shapes = 1", "'tolerance.strict_shapes' is a number (1), expected true"),
    ("[tolerance]\nstrict_shape = true", "did you mean 'strict_shapes'?"),
    ("[hidden]\nenabled = 'yes'", "'hidden.enabled' is a string ('yes'), expected true or false"),
    ("[[hidden.configs]]\nn = 1", "'hidden.configs[1].n' must be at least 2"),
    ("[[hidden.configs]]\nbatch = 4", "'hidden.configs[1].batch' is not a known key"),
    ("[[hidden.variants]]\nn = 0", "'hidden.variants[1].n' is 0, expected a number greater"),
    ("[[hidden.variants]]\ndrop_letters = 'aeiou'", "[hidden]: hidden config hidden-1: dropping"),
    ("[[hidden.variants]]\nn=3\n[[hidden.configs]]\nn=3", "are both given: keep one"),
    ("[hidden]\nvariants = []", "set enabled = false"),
    ("[integrity]\nautograd = 'ignore'", "expected one of zero, flag"),
    ("[limits]\nmemory_mb = 1\nmemory_bytes = 3", "are both given"),
    ("[gradescope]\nvisibility = 'public'", "expected one of hidden, after_due_date"),
    ("[points.exercises]\nex2 = 1\n[points.gradients]\ndlogits_fused = 3", "add up to 3"),
    ("words = 'nowhere.txt'", "'words' names"),
    ("points = 3", "'points' is a number (3), expected a table"),
])
def test_a_mistake_is_named_with_the_file_and_the_key(text, expected):
    assert expected in error_of(text)


def test_file_problems_are_one_line_errors(tmp_path):
    with pytest.raises(AssignmentError, match="no such file"):
        load_assignment(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("title = \n")
    with pytest.raises(AssignmentError, match=r"bad.toml: not valid TOML"):
        load_assignment(bad)
    with pytest.raises(AssignmentError, match="is a folder"):
        load_assignment(tmp_path)


def test_the_example_in_the_module_docstring_is_valid(tmp_path):
    import grader.assignment as module

    example = module.__doc__.split("::", 1)[1]
    text = "\n".join(line[4:] for line in example.splitlines())
    (tmp_path / "names.txt").write_text("emma\nolivia\nava\nisabella\n" * 40)
    (tmp_path / "a.toml").write_text(text)
    a = load_assignment(tmp_path / "a.toml")
    assert a.request.options.points["ex1.dlogprobs"] == 2
    assert a.request.hidden_configs()[0].n == 19 and a.request.hidden.seed == 4242
    assert Path(a.source).name == "a.toml"
