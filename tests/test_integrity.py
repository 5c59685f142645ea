"""The static scan for autograd use, and the integrity flags and messages."""

from grader.integrity import autograd_message, integrity_flags, scan_source
from grader.results import IntegrityFlag

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
    assert "when it is run (b)" in autograd_message(events, at_load=True)
