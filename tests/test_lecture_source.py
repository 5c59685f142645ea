"""Reading lecture-style source, never running it: statements and the names they bind and read,
the student's names from their cmp() calls, which statements compute each gradient and what they
need, exercise 4's backward() from the training loop, and the notes on what ran."""

import ast

from grader.submissions.lecture_source import looks_like_lecture_style, read_lecture_code
from grader.submissions.selection_notes import describe_selection
from grader.submissions.statements import bound_and_read, read_statements


def names(source):
    binds, assigns, reads = bound_and_read(ast.parse(source).body[0])
    return set(binds), set(assigns), set(reads)


# -- statements ---------------------------------------------------------------------------------

def test_a_fresh_assignment_binds_and_an_in_place_change_only_changes():
    assert names("x = f(y)") == ({"x"}, {"x"}, {"f", "y"})
    assert names("x = x + 1") == (set(), {"x"}, {"x"})
    assert names("x[i] = 0") == (set(), {"x"}, {"i", "x"})
    assert names("x.add_(1)") == (set(), {"x"}, {"x"})
    assert names("torch.mul(a, b, out=x)") == (set(), {"x"}, {"a", "b", "torch", "x"})


def test_a_loops_own_variable_is_not_read_from_outside_but_what_it_updates_is():
    assert names("for i in range(3):\n    s[i] += i") == (set(), {"i", "s"}, {"range", "s"})
    assert names("def f(a):\n    return a + g") == ({"f"}, {"f"}, {"g"})


def test_notebook_cells_are_split_back_and_no_grad_blocks_opened():
    code = ("# %% [cell 1]\nwords = open('names.txt').read()\n# %% [cell 2]\n"
            "with torch.no_grad():\n    dlogprobs = torch.zeros_like(logprobs)\n"
            "    dlogprobs[range(n), Yb] = -1.0/n\n# %% [cell 3]\nfor i in range(9):\n"
            "    loss.backward()\n")
    statements, files, _ = read_statements(code, name="nb.ipynb", cells=True)
    assert [(st.where(), st.kind) for st in statements] == [
        ("cell 1, line 1", "plain"), ("cell 2, line 2", "plain"), ("cell 2, line 3", "plain"),
        ("cell 3, lines 1-2", "training")]
    assert statements[2].code == "dlogprobs[range(n), Yb] = -1.0/n"
    assert list(files) == ["nb.ipynb [cell 1]", "nb.ipynb [cell 2]", "nb.ipynb [cell 3]"]


# -- picking the exercise code ------------------------------------------------------------------

def test_lecture_style_is_recognised_from_two_gradient_assignments():
    assert looks_like_lecture_style(ast.parse("dlogprobs = 1\ndprobs = 2\n"))
    assert not looks_like_lecture_style(ast.parse("dlogprobs = 1\nx = 2\n"))


def test_statements_of_one_gradient_are_grouped_and_in_place_changes_continue_the_group():
    program = read_lecture_code(
        "dcounts = a * b\ndcounts_sum = c\ndcounts += d\ndC = torch.zeros_like(C)\n"
        "dC.index_add_(0, Xb.view(-1), demb.view(-1, 10))\n", name="s.py", cells=False)
    groups = {s.gradient.name: s.steps for s in program.sources}
    assert groups["dcounts"] == (0, 2) and groups["dC"] == (3, 4)


def test_a_fused_dlogits_before_the_next_steps_counts_as_exercise_1():
    program = read_lecture_code(
        "dlogits = F.softmax(logits, 1)\ndlogits[range(n), Yb] -= 1\ndlogits /= n\n"
        "dh = dlogits @ W2.T\n", name="s.py", cells=False)
    assert [(s.gradient.exercise, s.gradient.name) for s in program.sources] == \
        [("ex1", "dlogits"), ("ex1", "dh")]


def test_a_helper_the_exercise_code_needs_runs_but_not_one_that_reads_the_data():
    program = read_lecture_code(
        "words = open('names.txt').read()\nscale = 1.0 / n\nbig = len(words)\n"
        "dlogprobs = torch.zeros_like(logprobs)\ndlogprobs[range(n), Yb] = -scale\n"
        "dprobs = dlogprobs / probs * big\n", name="s.py", cells=False)
    assert program.run == (1, 3, 4, 5)
    assert program.unresolved == {
        "big": "line 3, which is not run: it reads words (data loading, files or plots)"}


def test_the_students_names_are_learnt_from_their_cmp_calls():
    program = read_lecture_code(
        "dlp = torch.zeros_like(logprobs)\ndprobs = dlp / probs\n"
        "cmp('logprobs', dlp, logprobs)\ncmp('h', dh, hidden)\n", name="s.py", cells=False)
    assert program.renamed == {
        "dlp": ("dlogprobs", "from your cmp('logprobs', dlp, logprobs) at line 3")}
    assert program.aliases == {"hidden": "h"}
    assert [(s.gradient.name, s.var) for s in program.sources] == [
        ("dlogprobs", "dlp"), ("dprobs", "dprobs")]


def test_a_variable_compared_with_two_tensors_is_graded_as_the_first_with_a_note():
    program = read_lecture_code(
        "dx = 1\ndprobs = 2\ncmp('logprobs', dx, logprobs)\ncmp('probs', dx, probs)\n",
        name="s.py", cells=False)
    assert program.renamed["dx"][0] == "dlogprobs"
    assert program.notes == ("dx is checked against probs at line 4, but it is the gradient of "
                             "logprobs by an earlier check: kept dlogprobs",)


# -- exercise 4 from the training loop -----------------------------------------------------------

TRAINING = """\
def softmax(x):
    return F.softmax(x, 1)

parameters = [C, W1, b1, W2, b2, bngain, bnbias]
for i in range(1000):
    ix = torch.randint(0, Xtr.shape[0], (batch_size,))
    loss = F.cross_entropy(logits, Yb)
    with torch.no_grad():
        dlogits = softmax(logits)
        dlogits[range(n), Yb] -= 1
        dlogits /= n
        dW2 = h.T @ dlogits
        db2 = dlogits.sum(0)
        dhpreact = (1 - h**2) * (dlogits @ W2.T)
        dbngain = (bnraw * dhpreact).sum(0, keepdim=True)
        dbnbias = dhpreact.sum(0, keepdim=True)
        dhprebn = bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0))
        dW1 = embcat.T @ dhprebn
        db1 = dhprebn.sum(0)
        dC = torch.zeros_like(C)
        dC.index_add_(0, Xb.view(-1), (dhprebn @ W1.T).view(-1, n_embd))
        grads = [dC, dW1, db1, dW2, db2, dbngain, dbnbias]
    for p, g in zip(parameters, grads):
        p.data += -0.1 * g
"""


def test_the_training_loops_backward_lines_become_a_backward_function():
    backward = read_lecture_code(TRAINING, name="s.py", cells=False).backward
    assert backward.reason is None and backward.where == "lines 9-22 (inside the training loop)"
    assert backward.params == ("C", "W1", "W2", "Xb", "Yb", "bngain", "bnraw", "bnvar_inv",
                               "embcat", "h", "logits", "n")
    lines = backward.code.splitlines()
    assert "def softmax(x):" in lines                   # a function defined before the loop
    assert "    n_embd = C.shape[1]" in lines          # a size worked out from what it is given
    assert lines[-1] == "    return [dC, dW1, db1, dW2, db2, dbngain, dbnbias]"
    assert "randint" not in backward.code and "p.data" not in backward.code
    compile(backward.code, "backward.py", "exec")


def test_a_grads_list_of_the_wrong_length_is_not_graded_and_says_why():
    code = TRAINING.replace("grads = [dC, dW1, db1, dW2, db2, dbngain, dbnbias]",
                            "grads = [dC, dW1]")
    backward = read_lecture_code(code, name="s.py", cells=False).backward
    assert backward.code is None
    assert backward.reason == ("grads has 2 entries, expected 7: "
                               "[dC, dW1, db1, dW2, db2, dbngain, dbnbias]")


# -- notes on what ran ---------------------------------------------------------------------------

def test_the_notes_say_which_cells_ran_and_which_did_not():
    code = ("# %% [cell 1]\nwords = open('names.txt').read()\n# %% [cell 2]\nx = 1\n"
            "# %% [cell 3]\ndlogprobs = torch.zeros_like(logprobs)\n\ndprobs = dlogprobs / probs\n")
    program = read_lecture_code(code, name="nb.ipynb", cells=True)
    assert describe_selection(program) == [
        "ran only the exercise code, with the grader's forward tensors and parameters: "
        "cell 3 (lines 1-3)",
        "not run: cells 1-2 (data loading, the forward pass, plots, training and the rest)"]


def test_a_loop_with_a_gradients_list_but_no_backward_lines_is_a_reason_not_a_crash():
    program = read_lecture_code(
        "dlogprobs = torch.zeros_like(logprobs)\ndprobs = dlogprobs / probs\n"
        "for i in range(10):\n    loss = model(Xb)\n    loss.backward()\n"
        "    d_grads = [dC, dW1, db1, dW2, db2, dbngain, dbnbias]\n", name="x.py", cells=False)
    assert program.backward is not None and program.backward.code is None
    assert "names no gradient the loop computes" in program.backward.reason
