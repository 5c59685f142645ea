"""Loading submissions: parse, never execute; clear one-line errors."""

import pytest

from grader.submissions.loader import SubmissionError, load_submission
from grader.submissions.submission import MAX_SOURCE_BYTES

from conftest import EXERCISE, SOLUTION


def test_the_exercise_file_defines_every_stub():
    sub = load_submission(EXERCISE)
    assert sub.format == "stubs"
    assert sub.functions["dlogprobs"] == ("logprobs", "Yb", "n")
    assert "backward" in sub.functions and len(sub.functions) == 29


def test_loading_never_runs_the_code(tmp_path):
    marker = tmp_path / "ran"
    p = tmp_path / "s.py"
    p.write_text(f"open({str(marker)!r}, 'w').write('x')\ndef dprobs(dlogprobs, probs):\n    pass\n")
    load_submission(p)
    assert not marker.exists()


def test_a_missing_file_says_so():
    with pytest.raises(SubmissionError, match="no such file"):
        load_submission("does/not/exist.py")


def test_a_syntax_error_names_the_line(write_submission):
    p = write_submission("import torch\n\ndef dprobs(dlogprobs, probs:\n    return 1\n")
    with pytest.raises(SubmissionError, match="syntax error at line 3"):
        load_submission(p)


def test_a_file_of_another_kind_is_refused(write_submission):
    p = write_submission("hello", name="notes.txt")
    with pytest.raises(SubmissionError, match="expected a .py or .ipynb"):
        load_submission(p)


def test_an_empty_file_is_refused(write_submission):
    with pytest.raises(SubmissionError, match="empty"):
        load_submission(write_submission("  \n"))


def test_a_file_with_nothing_to_grade_says_what_was_looked_for(write_submission):
    with pytest.raises(SubmissionError, match="found none of the exercise functions"):
        load_submission(write_submission("x = 1\n"))


def test_binary_garbage_is_refused(tmp_path):
    p = tmp_path / "s.py"
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SubmissionError, match="not UTF-8"):
        load_submission(p)


def test_the_last_definition_of_a_stub_wins(write_submission):
    p = write_submission(SOLUTION.read_text() + "\ndef dprobs(probs, dlogprobs, n):\n    pass\n")
    assert load_submission(p).functions["dprobs"] == ("probs", "dlogprobs", "n")


def test_a_folder_is_refused(tmp_path):
    (tmp_path / "folder.py").mkdir()
    with pytest.raises(SubmissionError, match="folder.py: is a folder, expected a .py or .ipynb"):
        load_submission(tmp_path / "folder.py")


def test_a_file_over_the_size_limit_is_refused_with_the_limit(tmp_path):
    p = tmp_path / "big.py"
    p.write_text("#" * (MAX_SOURCE_BYTES + 1))
    with pytest.raises(SubmissionError, match="big.py: 2,000,001 bytes, more than the 2,000,000 a "
                                              "submission may have"):
        load_submission(p)


def _deep_file(tmp_path, terms: int, *, lecture: bool):
    p = tmp_path / "deep.py"
    target = "dlogits" if lecture else "x"
    p.write_text("import torch\n\n" + f"{target} = " + "+".join(["1"] * terms) + "\n")
    return p


def test_a_3000_term_expression_is_refused_naming_its_line_not_a_recursion_error(tmp_path):
    with pytest.raises(SubmissionError, match=r"expression at line 3 is nested too deeply to "
                                              r"analyse: split it"):
        load_submission(_deep_file(tmp_path, 3000, lecture=False))


def test_a_500_term_expression_in_lecture_style_is_refused_before_any_analysis(tmp_path):
    with pytest.raises(SubmissionError, match=r"expression at line 3 is nested too deeply to analyse: split it"):
        load_submission(_deep_file(tmp_path, 500, lecture=True))


def test_a_long_but_ordinary_expression_still_loads(tmp_path):
    p = tmp_path / "sum.py"
    p.write_text("def dprobs(dlogprobs, probs):\n    return " + "+".join(["dlogprobs"] * 60) + "\n")
    assert load_submission(p).format == "stubs"


def test_a_deep_expression_inside_the_training_loop_is_refused_naming_its_line(tmp_path):
    p = tmp_path / "loop.py"
    p.write_text("for i in range(10):\n    if i:\n        dlogits = dlogits + ("
                 + "+".join(["0*logits"] * 120) + ")\n")
    with pytest.raises(SubmissionError, match=r"expression at line 3 is nested too deeply"):
        load_submission(p)
