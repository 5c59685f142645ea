"""The static scan for autograd use, and the integrity flags and messages."""

from grader.judge.integrity import (autograd_message, grad_read_note, integrity_flags,
                                    scan_source)
from grader.submissions.code_cells import CodeCell, join_cells
from grader.submissions.loader import load_submission
from grader.output.results import IntegrityFlag

from conftest import EXERCISE, SOLUTION


def details(code: str) -> list[str]:
    return [f.detail for f in scan_source(code, filename="s.py")]


def test_the_reference_solution_and_the_exercise_file_raise_no_flag():
    assert scan_source(SOLUTION.read_text(), filename="backprop.py") == ()
    # the exercise's docstring tells students not to use `.backward()`: text is not code
    assert scan_source(EXERCISE.read_text(), filename="backprop.py") == ()


def test_backward_grad_and_autograd_are_flagged_with_their_line():
    code = ("import torch\n"
            "def dlogprobs(logprobs, Yb, n):\n"
            "    x = logprobs.clone().requires_grad_()\n"
            "    (-x[range(n), Yb].mean()).backward()\n"
            "    return x.grad\n"
            "g = torch.autograd.grad\n")
    assert details(code) == [
        "s.py, line 3: calls .requires_grad_(): x = logprobs.clone().requires_grad_()",
        "s.py, line 4: calls .backward(): (-x[range(n), Yb].mean()).backward()",
        "s.py, line 5: reads or sets .grad: return x.grad",
        "s.py, line 6: uses torch.autograd: g = torch.autograd.grad",
    ]


def test_imports_keywords_and_getattr_tricks_are_flagged():
    code = ("from torch.autograd import grad\n"
            "from torch import func\n"
            "import functorch\n"
            "import torch\n"
            "w = torch.zeros(3, requires_grad=True)\n"
            "b = getattr(w, 'backward')\n")
    found = " | ".join(details(code))
    for what in ("line 1: imports from torch.autograd", "line 2: imports from torch",
                 "line 3: imports functorch", "line 5: passes requires_grad=",
                 "line 6: getattr(..., 'backward')"):
        assert what in found


def test_a_function_named_backward_and_requires_grad_false_are_not_autograd():
    code = ("import torch\n"
            "def backward(logits, Yb, n):\n"
            "    return [torch.zeros(3, requires_grad=False)]\n"
            "out = backward(None, None, 3)\n")
    assert details(code) == []


def test_flags_in_decorators_nested_blocks_and_continued_lines_keep_their_own_line():
    code = ("import torch\n"
            "@torch.func.vmap\n"
            "def f(x):\n"
            "    '''a docstring may say .grad and backward'''\n"
            "    for i in range(3):\n"
            "        try:\n"
            "            pass\n"
            "        except getattr(x, 'grad'):\n"
            "            pass\n"
            "        else:\n"
            "            match x:\n"
            "                case [y] if y.backward():\n"
            "                    z = (x\n"
            "                         .retain_grad())\n"
            "    return x\n")
    assert details(code) == [
        "s.py, line 2: uses torch.func: @torch.func.vmap",
        "s.py, line 8: getattr(..., 'grad'): except getattr(x, 'grad'):",
        "s.py, line 12: calls .backward(): case [y] if y.backward():",
        "s.py, line 13: calls .retain_grad(): z = (x",
    ]


def test_unicode_spellings_and_windows_line_endings_are_flagged_on_their_line():
    # Python reads the identifier ｇrad (a fullwidth g) as grad
    assert details("import torch\r\nx = torch.zeros(3)\r\ny = x.\uff47rad\r\n") == [
        "s.py, line 3: reads or sets .grad: y = x.\uff47rad"]


def test_the_loaders_parsed_tree_gives_the_flags_of_a_fresh_parse(tmp_path):
    path = tmp_path / "s.py"
    path.write_text(SOLUTION.read_text() + "\n\ndef dprobs(dlogprobs, probs):\n"
                    "    probs.requires_grad_()\n    return probs.grad\n")
    submission = load_submission(path)
    assert submission.tree is not None
    flags = scan_source(submission.code, filename="s.py", tree=submission.tree)
    assert len(flags) == 2 and flags == scan_source(submission.code, filename="s.py")


def test_code_that_does_not_parse_gets_no_flags():
    assert scan_source("def f(:\n", filename="s.py") == ()


def test_run_time_records_come_first_and_nothing_is_listed_twice():
    static = (IntegrityFlag("source", "s.py, line 4: calls .backward()"),)
    events = [{"kind": "autograd", "detail": "f(), line 4: calls Tensor.backward()"}] * 2
    assert integrity_flags(static * 2, events) == (
        IntegrityFlag("autograd", "f(), line 4: calls Tensor.backward()"), static[0])


def test_the_message_says_where_autograd_was_used_and_why_it_scores_zero():
    events = [{"kind": "requires_grad", "detail": "a"}, {"kind": "autograd", "detail": "b"}]
    message = autograd_message(events)
    assert message.startswith("computed with autograd (b)") and "Scored 0" in message


def test_in_joined_notebook_cells_a_flag_names_the_cell_and_its_line():
    code, _ = join_cells([CodeCell("cell 1", "import torch\n"),
                          CodeCell("cell 4", "x = 1\n\ndef dprobs(dlogprobs, probs):\n"
                                             "    return probs.grad\n")])
    assert [f.detail for f in scan_source(code, filename="nb.ipynb", cells=True)] == [
        "nb.ipynb, cell 4, line 4: reads or sets .grad: return probs.grad"]


def test_a_call_that_got_none_from_grad_is_told_it_reads_autograds_answer():
    events = [{"kind": "requires_grad", "detail": "a"},
              {"kind": "grad", "detail": "dbngain(), line 7: return hpreact.grad reads .grad"}]
    assert grad_read_note(events) == (
        "it reads autograd's answer (dbngain(), line 7: return hpreact.grad) instead of "
        "computing it, and the grader's tensors carry no .grad: derive the gradient by hand")
    assert grad_read_note(events[:1]) is None
    # a record whose line shows no .grad (code the grader generated) is not quoted
    assert "(.grad)" in grad_read_note([{"kind": "grad", "detail": "f(), line 3: x = 1 reads .grad"}])
