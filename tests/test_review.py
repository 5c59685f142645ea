"""Review: the signs that send a submission to review, what review does to its result, and
that no honest submission gets there. The outputs' side (report, summary, gradebook,
Gradescope, terminal, exit codes) is tested here too, on one result held for review."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from grader.api import grade_submission
from grader.batch.run import grade_many
from grader.judge.grading import GradingOptions
from grader.judge.review import clear_review, review_reasons, with_review
from grader.judge.scoring import points_table
from grader.output.exports import GradebookRow, gradescope_results, render_gradebook
from grader.output.report import render_report, render_summary
from grader.output.results import IntegrityFlag, Result, read_result, write_result
from grader.output.terminal import render_text
from grader.submissions.loader import load_submission

from conftest import EXERCISE, ROOT, SOLUTION, SUBMISSIONS
from test_exports import assert_gradescope_schema

# each: code that reaches around the watch, and a word of the reason it must give
SIGNS = [
    ("import importlib\nm = importlib.import_module('torch._functorch.eager_transforms')",
     "imports modules by name"),
    ("f = torch.autograd.grad.__wrapped__", "__wrapped__"),
    ("cells = torch.Tensor.backward.__closure__", "__closure__"),
    ("w = getattr(f, '__clo' + 'sure__')", "__closure__"),
    ("w = getattr(f, name)", "named at run time"),
    ("w = getattr(f, '__wrapped__')", "__wrapped__"),
    ("import operator\nget = operator.attrgetter('__closure__')", "attrgetter"),
    ("name = '__clo' + 'sure__'", "a string naming Python's internals"),
    ("exec(code)", "built at run time"),
    ("exec(bytes.fromhex('7072696e74').decode())", "built at run time"),
    ("exec('import ctypes')", "inside exec()"),
    ("exec(\"exec('import ctypes')\")", "inside exec()"),
    ("eval(compile(src, 'x', 'eval'))", "built at run time"),
    ("ctypes = __import__('ctypes')", "__import__"),
    ("b = __builtins__", "__builtins__"),
    ("import sys\nt = sys.modules['torch']", "sys.modules"),
    ("import sys\nsys.setprofile(None)", "setprofile"),
    ("from torch.func import jacrev", "torch.func"),
    ("J = torch.func.jacfwd(f)(x)", "jacfwd"),
    ("import functorch", "functorch"),
    ("import torch.autograd.forward_ad as fwAD", "forward_ad"),
    ("with fwAD.dual_level():\n    pass", "dual_level"),
    ("J = torch.autograd.functional.jacobian(f, x)", "autograd.functional"),
    ("from torch.autograd import functional", "torch.autograd.functional"),
    ("import torch._C as C", "torch._C"),
    ("e = torch._C._enter_dual_level()", "._C"),
    ("d = torch.ops.aten.tanh_backward(g, h)", "torch.ops"),
    ("torch.autograd.Variable._execution_engine.run_backward(*args)", "_execution_engine"),
    ("from torch.autograd.graph import saved_tensors_hooks", "saved_tensors_hooks"),
    ("import os\npid = os.fork()", "starts a process"),
    ("from os import fork", "starts a process"),
    ("import os\nos.system('python -c 1')", "starts a process"),
    ("import subprocess\nsubprocess.run(['python'])", "starts a process"),
    ("from multiprocessing import Pool", "starts a process"),
    ("import gc\nrefs = gc.get_referents(f)", "get_referents"),
    ("import inspect\nv = inspect.getclosurevars(f)", "getclosurevars"),
    ("import pickle\nparams = pickle.loads(data)", "pickled"),
    ("from dill import load", "pickled"),
    ("import sympy\nd = sympy.diff(expr, v)", "sympy"),
    ("import types\nf = types.FunctionType(code, {})", "FunctionType"),
    ("import ctypes", "C code"),
    ("f = x.__class__.__base__.__subclasses__()", "__subclasses__"),
    ("frame = sys._getframe(1).f_back", "_getframe"),
    ("dlogits = torch._log_softmax_backward_data(dlogprobs, logprobs, 1, torch.float32)",
     "derivative formulas"),
    ("from torch import _softmax_backward_data", "derivative formulas"),
    ("d = torch.batch_norm_backward_elemt(*args)", "derivative formulas"),
    # a red team's: names built from pieces, hooks of one's own, Python formulas, nn.grad
    ("H = vars(vars(torch)['auto' + 'grad'].graph)['saved_tensors_' + 'hooks']",
     "saved_tensors_hooks"),
    ("v = vars(torch)", "vars()"),
    ("H = getattr(g, 'saved_tensors_' + 'hooks')", "saved_tensors_hooks"),
    ("H = g.__dict__['saved_tensors_' + 'hooks']", "__dict__"),
    ("H = globals()['saved_tensors_' + 'hooks']", "saved_tensors_hooks"),
    ("with torch.autograd.graph.save_on_cpu():\n    pass", "save_on_cpu"),
    ("node = loss.grad_fn.next_functions[0][0]", "next_functions"),
    ("import gc\ngc.unfreeze()", "unfreeze"),
    ("import torch._decomp.decompositions as D", "derivative formulas"),
    ("f = D.__dict__['_log_softmax_' + 'back' + 'ward_data']", "__dict__"),
    ("f = D.table['_log_softmax_' + 'back' + 'ward_data']", "derivative formulas"),
    ("dh = torch.nn.grad.conv1d_input(shape, w, g)", "nn.grad"),
    ("from torch.nn import grad", "torch.nn.grad"),
    ("f = torch.ops.aten.tanh_backward", "torch.ops"),
    ("k = F.some_backward_kernel", "derivative formulas"),
    # a second red team's
    ("match torch.Tensor:\n    case object(backward=b):\n        match b:\n"
     "            case object(__closure__=cells):\n                pass", "__closure__"),
    ("ga = getattr\nx = ga(o, n)", "passed around"),
    ("x = getattr(*(o, n))", "unpacked"),
    ("import functools\nx = functools.reduce(getattr, ['a', 'b'], torch)", "passed around"),
    ("c = vars\nc(torch)", "passed around"),
    ("n = '_' * 2 + 'closure' + '_' * 2", "'__closure__'"),
    ("import traceback\nfor frame, _ in traceback.walk_stack(None):\n    pass", "walk_stack"),
    ("import inspect\nframes = inspect.stack()", "inspect.stack"),
    ("h = torch._C._autograd._top_saved_tensors_default_hooks(False)", "._C"),
    ("import builtins as b\nb.exec(src)", "builtins"),
    ("ns.exec(src)", "exec"),
    ("run = torch.utils.cpp_extension.subprocess.run", "starts a process"),
    ("load = torch.serialization.pickle.loads", "pickle"),
    ("import os\nos.system('python -c \"import torch\" > /tmp/answers')", "starts a process"),
    ("import os\nos.system('wget -q URL; python fetched.py')", "starts a process"),
    ("import sys\nsys.meta_path.pop(0)", "meta_path"),
    ("import zipimport", "zipimport"),
    # a fifth red team's
    ("import pydoc\nf = pydoc.locate('torch._C._VariableFunctions._log_softmax_backward_data')",
     "pydoc"),
    ("f = locate('torch.ops.aten.tanh_backward')", "a string naming them"),
    ("import inspect\nm = dict(inspect.getmembers(h))", "getmembers"),
    ("key = ''.join(['_', '_self', '_', '_'])", "'__self__'"),
    ("import importlib\nm = importlib.import_module('torch')", "import_module"),
    ("import torch as t\nd = t._softmax_backward_data(a, b, 1, f)", "derivative formulas"),
]

# honest code students write, none of which is a sign
HONEST = [
    "for name in names:\n    cmp(name, eval('d' + name), eval(name))",
    "for name in names:\n    cmp(name, globals()['d' + name], globals()[name])",
    "cmp('logits', eval(f'd{name}'), logits)",
    "import torch.nn.functional as F\nloss = F.cross_entropy(logits, Yb)",
    "from torch.nn import functional as F",
    "if __name__ == '__main__':\n    main()",
    "model.eval()",
    "import os\nif not os.path.exists('names.txt'):\n    print('get names.txt first')",
    "import gc\ngc.collect()",
    "def f():\n    '''Uses __closure__ and __wrapped__ in a docstring only.'''\n    return 1",
    "print('_' * 40, '____')",
    "class Linear:\n    def __init__(self):\n        super().__init__()\n"
    "    def __call__(self, x):\n        return x\n",
    "print(type(x).__name__, x.__class__.__name__, torch.__version__)",
    "loss.backward()\nfor p in parameters:\n    p.grad = None\n    p.requires_grad = True",
    "with torch.no_grad():\n    dC = torch.zeros_like(C)",
    "import sys\nsys.path.append('..')",
    "import random\nrandom.seed(42)",
    "compiled = torch.compile(f)",
    # a student's own layer with a backward method of its own
    "dx = layer.backward_input(dlogits)\ndW = self.linear_backward(dout)",
    "print('loss: ' + str(loss.item()) + ' at step ' + str(i))",
    "cmp(name, eval('d{}'.format(name)), eval(name))",
    "cmp(name, eval('d%s' % name), eval(name))",
    "print('__Exercise 2__')\nnote = 'dL/dlogits__i = probs - 1'",
    "dh = layer.tanh_backward(dh)\ncache['h_backward'] = dh",
    "import re\npattern = re.compile(r'd\\w+')",
    # a setup cell that fetches the data set: a notebook exported to .py, or os.system
    "get_ipython().system('wget -q https://raw.githubusercontent.com/karpathy/makemore/master/"
    "names.txt')\nget_ipython().run_line_magic('matplotlib', 'inline')",
    "import os\nos.system('wget https://raw.githubusercontent.com/karpathy/makemore/master/"
    "names.txt')",
    "get_ipython().system('wget -q URL -O names.txt 2> /dev/null')\n"
    "get_ipython().system('head names.txt')",
    # a Colab check, a reload, a model saved, a debugger stop
    "import sys\nIN_COLAB = 'google.colab' in sys.modules",
    "from importlib import reload\nreload(helpers)",
    "import pickle\npickle.dump(parameters, open('params.pkl', 'wb'))",
    "import pdb\npdb.set_trace()\nbreakpoint()",
    "import importlib\nimportlib.reload(helpers)",
    "get_ipython().system('rm -f names.txt')\nget_ipython().system('pwd')",
    "label = ''.join(['d', name])\nprint(', '.join(['a', 'b']))",
    # a docstring may name anything, whatever else the file holds
    "def f(x):\n    \"\"\"Like torch._C's tanh_backward, by hand.\"\"\"\n    return x",
]


@pytest.mark.parametrize("code, word", SIGNS, ids=[s[1] + str(i) for i, s in enumerate(SIGNS)])
def test_a_sign_of_reaching_around_the_watch_sends_the_file_to_review(code, word):
    reasons = review_reasons(code, filename="s.py")
    assert reasons and word in " ".join(reasons)
    assert reasons[0].startswith("s.py, line ")


@pytest.mark.parametrize("code", HONEST)
def test_honest_code_is_no_sign(code):
    assert review_reasons(code, filename="s.py") == ()


def test_a_notebook_reason_names_the_cell_and_its_line():
    code = "# %% [cell 3]\nx = 1\n# %% [cell 4]\nimport importlib.util\n"
    assert review_reasons(code, filename="nb.ipynb", cells=True)[0].startswith(
        "nb.ipynb, cell 4, line 1: imports modules by name")


def test_a_sign_hidden_by_non_ascii_spelling_is_still_found():
    # Python reads the fullwidth letter as plain "c": the text prefilter must not skip it
    code = "import ｃtypes\n"
    assert "C code" in " ".join(review_reasons(code, filename="s.py"))


def honest_files() -> list[Path]:
    real = sorted((SUBMISSIONS / "real").glob("*.ipynb"))
    assert real, "the real-notebook fixtures are missing"
    return [SOLUTION, EXERCISE, *sorted((ROOT / "solutions").glob("*.ipynb")),
            *sorted((ROOT / "exercises").glob("*.ipynb")), *real,
            *sorted((SUBMISSIONS / "wrong").glob("*.py")),
            *sorted((SUBMISSIONS / "alternatives").glob("*.py"))]


@pytest.mark.parametrize("path", honest_files(), ids=lambda p: p.name)
def test_no_honest_submission_or_fixture_notebook_has_a_sign(path):
    submission = load_submission(path)
    assert review_reasons(submission.code, filename=submission.name, tree=submission.tree,
                          cells=submission.source_kind == "ipynb") == ()


# -- what review does to a result ------------------------------------------------------------

@pytest.fixture(scope="module")
def held(solution_result: Result) -> Result:
    return with_review(solution_result, ["s.py, line 3: imports modules by name (imports "
                                         "importlib): import importlib"], policy="zero")


def test_review_withholds_the_score_and_keeps_what_it_would_have_been(solution_result, held):
    assert held.status == "review" and held.score == 0
    assert held.withheld_score == solution_result.score == solution_result.max_score
    assert held.review[0].startswith("s.py, line 3")
    assert not held.all_passed


def test_run_time_records_of_tampering_or_processes_send_to_review_alone(solution_result):
    flags = (IntegrityFlag("tamper", "your code changes the grader's autograd watch: x"),)
    result = with_review(replace(solution_result, integrity=flags), [], policy="zero")
    assert result.status == "review" and "at run time" in result.review[0]
    autograd_only = replace(solution_result, integrity=(IntegrityFlag("autograd", "d"),))
    assert with_review(autograd_only, [], policy="zero").status == "graded"


def test_no_review_under_the_flag_policy_or_for_an_ungraded_file(solution_result):
    assert with_review(solution_result, ["x"], policy="flag") is solution_result
    error = replace(solution_result, status="error")
    assert with_review(error, ["x"], policy="zero") is error


def test_clearing_gives_the_score_back_and_keeps_the_reasons_as_a_note(held):
    cleared = clear_review(held)
    assert cleared.status == "graded" and cleared.score == held.withheld_score
    assert "Cleared by the instructor" in cleared.notes[-1] and "importlib" in cleared.notes[-1]


def test_the_results_json_keeps_the_review(held, tmp_path):
    write_result(held, tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["status"] == "review" and data["review"] == list(held.review)
    assert read_result(tmp_path / "r.json") == held


def test_the_report_shows_the_review_first_and_no_score(held):
    page = render_report(held)
    assert page.index('id="review"') < page.index("dlogprobs")
    assert "withheld" in page and "imports modules by name" in page
    assert "34 / 34</div>" not in page          # the total shows "withheld"


def test_the_summary_lists_review_first_with_the_reason(held, solution_result):
    page = render_summary([held, replace(solution_result, submission="bob.py")])
    assert "1 held for review" in page
    assert page.index('id="review"') < page.index('id="histogram"')
    assert "imports modules by name" in page


def test_the_gradebook_has_a_review_column(held):
    options = GradingOptions()
    text = render_gradebook([GradebookRow("alice", "alice.py", held)],
                            points=points_table(options))
    row = next(csv.DictReader(io.StringIO(text)))
    assert row["status"] == "review" and row["score"] == "0"
    assert row["review"].startswith("withheld 34: s.py, line 3")


def test_gradescope_shows_a_failed_review_test_first_and_no_points(held):
    data = gradescope_results(held, points=points_table(GradingOptions()))
    assert_gradescope_schema(data)
    first = data["tests"][0]
    assert first["name"] == "Integrity review" and first["status"] == "failed"
    assert "imports modules by name" in first["output"] and data["score"] == 0
    assert data["extra_data"]["withheld_score"] == 34


def test_the_terminal_says_held_for_review_first_and_last(held):
    lines = render_text(held).splitlines()
    assert lines[2].startswith("HELD FOR REVIEW") and lines[-1].startswith("HELD FOR REVIEW")


# -- end to end ------------------------------------------------------------------------------

ATTACK = SOLUTION.read_text() + "\n\nimport importlib\n_m = importlib.import_module('math')\n"


def test_check_exits_1_on_review_and_clear_review_gives_the_score_back(tmp_path):
    path = tmp_path / "alice.py"
    path.write_text(ATTACK)
    out = tmp_path / "r.json"
    args = [sys.executable, "-m", "grader", "check", str(path), "--mode", "isolated",
            "--no-hidden", "--steps", "1", "--json", str(out)]
    held = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert held.returncode == 1 and "HELD FOR REVIEW" in held.stdout
    assert json.loads(out.read_text())["status"] == "review"
    cleared = subprocess.run([*args, "--clear-review"], capture_output=True, text=True,
                             cwd=ROOT, timeout=300)
    assert cleared.returncode == 0, cleared.stdout
    assert json.loads(out.read_text())["status"] == "graded"


def test_a_batch_holds_one_student_and_clears_them_on_request(tmp_path, quick_request):
    folder, out = tmp_path / "class", tmp_path / "out"
    folder.mkdir()
    (folder / "alice.py").write_text(ATTACK)
    (folder / "bob.py").write_text(SOLUTION.read_text())
    request = replace(quick_request, options=replace(quick_request.options,
                                                     modes=("isolated",), exercises=("ex1",)))
    grade_many(folder, out, request=request, jobs=1,
               grade=lambda p, r: grade_submission(p, request=r))
    rows = {r["student"]: r for r in csv.DictReader(io.StringIO((out / "gradebook.csv").read_text()))}
    assert rows["alice"]["status"] == "review" and rows["bob"]["status"] == "graded"
    summary = grade_many(folder, out, request=request, jobs=1, cleared=["alice", "carol"],
                         grade=lambda p, r: grade_submission(p, request=r))
    rows = {r["student"]: r for r in csv.DictReader(io.StringIO((out / "gradebook.csv").read_text()))}
    assert rows["alice"]["status"] == "graded" and float(rows["alice"]["score"]) > 0
    assert summary.graded == 1                     # alice again; bob was unchanged
    assert any("no such student: carol" in n for n in summary.notes)
    batch = json.loads((out / "batch.json").read_text())
    assert any("no such student: carol" in n for n in batch["notes"])


LECTURE = SUBMISSIONS / "real" / "lecture.py"


def lecture_with(replacement: str) -> str:
    """The lecture's notebook (.py form) with its dlogprobs lines replaced."""
    lines = LECTURE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("dlogprobs ="))
    end = next(i for i, line in enumerate(lines) if line.startswith("dprobs ="))
    return "\n".join([*lines[:start], replacement, *lines[end:]]) + "\n"


@pytest.mark.parametrize("replacement, record", [
    # forward-mode AD on the exercise's own tensor, reached through importlib
    ("import importlib\n_jacfwd = importlib.import_module('torch._functorch.eager_transforms')"
     ".jacfwd\ndlogprobs = _jacfwd(lambda lp: -lp[range(n), Yb].mean())(logprobs.detach())",
     "uses forward-mode AD"),
    # the unwatched original of torch.autograd.grad from its closure, on an nn.Parameter
    ("_g = [c.cell_contents for c in torch.autograd.grad.__closure__ if callable(c.cell_contents)]"
     "[0]\n_p = torch.nn.Parameter(logprobs.detach().clone())\n"
     "dlogprobs = _g(-(_p[range(n), Yb] * 2.0).mean() / 2.0, _p)[0]",
     "runs autograd's engine"),
])
@pytest.mark.parametrize("suffix", [".py", ".ipynb"])
def test_lecture_style_code_reaching_around_the_watch_is_held_and_seen_at_its_line(
        replacement, record, suffix, tmp_path, quick_request):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    path = tmp_path / f"notebook{suffix}"
    code = lecture_with(replacement)
    if suffix == ".py":
        path.write_text(code)
    else:
        _, *cells = code.split("# %%\n")
        nbformat.write(new_notebook(cells=[new_code_cell(c.strip("\n")) for c in cells]), path)
    result = grade_submission(path, request=replace(quick_request, options=replace(
        quick_request.options, exercises=("ex1",))))
    assert result.status == "review", result.message
    assert any(f"notebook{suffix}, " in r and "line " in r for r in result.review), result.review
    # the run-time record names the statement (lecture-style code runs a cell at a time), and
    # the gradient computed there scores 0
    autograd = [f.detail for f in result.integrity if f.kind == "autograd"]
    assert any(record in d and "dlogprobs = " in d for d in autograd), result.integrity
    g = next(g for g in result.gradients() if g.name == "dlogprobs")
    assert g.status == "integrity" and g.points == 0 and record in (g.message or "")


def test_a_self_check_with_autograd_at_the_files_top_level_is_held_not_zeroed(tmp_path,
                                                                               quick_request):
    # a student's stub file ending with the lecture's own check, run when the file is loaded
    path = tmp_path / "alice.py"
    path.write_text(SOLUTION.read_text() + "\n\n_x = torch.randn(4, 5, requires_grad=True)\n"
                    "_y = torch.tensor([0, 1, 2, 3])\n"
                    "torch.nn.functional.cross_entropy(_x, _y).backward()\n"
                    "print('self-check:', _x.grad.shape)\n")
    request = replace(quick_request, options=replace(quick_request.options,
                                                     modes=("isolated",), exercises=("ex1",)))
    result = grade_submission(path, request=request)
    assert result.status == "review" and result.withheld_score == result.max_score
    assert all(g.passed for g in result.gradients())
    assert any("uses autograd when it is run" in r and "line " in r for r in result.review)
    assert "load" in {f.kind for f in result.integrity}
    assert clear_review(result).score == result.max_score
