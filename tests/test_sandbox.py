"""The child process: tensors in, tensors out; failures become outcomes, never exceptions."""

import torch

from grader.sandbox import Limits, open_session


def test_a_stub_runs_in_the_child_and_returns_its_tensor():
    with open_session("def f(x):\n    return x * 2\n", filename="s.py") as s:
        out = s.call("f", {"x": torch.ones(3)})
    assert out.status == "ok" and torch.equal(out.tensors["result"], torch.full((3,), 2.0))


def test_scalars_and_tensors_are_passed_by_name():
    with open_session("def f(x, n):\n    return x * n\n", filename="s.py") as s:
        out = s.call("f", {"x": torch.ones(2), "n": 3})
    assert torch.equal(out.tensors["result"], torch.full((2,), 3.0))


def test_the_student_traceback_keeps_only_student_lines():
    code = "def helper():\n    return 1 / 0\n\ndef f(x):\n    return helper()\n"
    with open_session(code, filename="mine.py") as s:
        out = s.call("f", {"x": torch.ones(1)})
    assert out.status == "error" and "ZeroDivisionError" in out.message
    assert "mine.py" in out.traceback and "_child.py" not in out.traceback


def test_not_implemented_is_missing():
    with open_session("def f(x):\n    raise NotImplementedError\n", filename="s.py") as s:
        assert s.call("f", {"x": torch.ones(1)}).status == "missing"


def test_a_non_tensor_return_is_a_clear_error():
    with open_session("def f(x):\n    return [1, 2]\n", filename="s.py") as s:
        out = s.call("f", {"x": torch.ones(1)})
    assert out.status == "error" and "list, expected a torch.Tensor" in out.message


def test_a_hang_times_out_and_the_next_call_gets_a_fresh_child():
    code = "def hang(x):\n    while True: pass\n\ndef f(x):\n    return x + 1\n"
    with open_session(code, filename="s.py", limits=Limits(call_seconds=1.0)) as s:
        out = s.call("hang", {"x": torch.ones(1)})
        assert out.status == "timeout" and out.limit == "wall time"
        again = s.call("f", {"x": torch.ones(1)})
    assert again.status == "ok" and s.restarts == 1


def test_a_crash_is_described():
    code = "import os\ndef f(x):\n    os._exit(3)\n"
    with open_session(code, filename="s.py") as s:
        out = s.call("f", {"x": torch.ones(1)})
    assert out.status == "error" and "exited with code 3" in out.message


def test_prints_are_captured_and_capped():
    code = "def f(x):\n    print('A' * 100000)\n    return x\n"
    with open_session(code, filename="s.py", limits=Limits(output_bytes=1000)) as s:
        assert s.call("f", {"x": torch.ones(1)}).status == "ok"
    text = s.output()
    assert text.startswith("A" * 1000) and "dropped" in text


def test_an_error_at_top_level_fails_the_load():
    with open_session("raise RuntimeError('boom')\n", filename="s.py") as s:
        assert s.load_outcome.status == "error"
        assert "run top to bottom" in s.load_outcome.message and "boom" in s.load_outcome.message
