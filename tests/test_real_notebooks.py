"""Notebooks as real students write them: the lecture's own notebook in the lecture's forms, one
notebook per way of writing that used to cost correct work its points, and the lecture's
notebook with everything a student may name drawn at random."""

from __future__ import annotations

import io
import json
import keyword
import random
import subprocess
import sys
import tokenize
from pathlib import Path

import nbformat
import pytest

from grader.api import GradeRequest, grade_submission
from grader.judge.grading import GradingOptions
from grader.lecture.configs import HiddenConfigs

from conftest import ROOT, SUBMISSIONS

sys.path.insert(0, str(SUBMISSIONS / "real"))
from build import FIXTURES, head_comment, notebook, python_twin  # noqa: E402

REAL = SUBMISSIONS / "real"
LECTURE = REAL / "lecture.py"
# hidden configs on, as final grading has them; few training steps
REQUEST = GradeRequest(hidden=HiddenConfigs.self_check(), options=GradingOptions(train_steps=2))


def by_name(result):
    return {(ex.name, g.name): g for ex in result.exercises for g in ex.gradients}


def failing(result) -> dict[str, str]:
    return {f"{ex}.{name}": g.status for (ex, name), g in by_name(result).items() if not g.passed}


# -- the lecture's own notebook ------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".py", ".ipynb"])
def test_the_lectures_own_notebook_in_its_own_forms_scores_full_marks(suffix):
    result = grade_submission(LECTURE.with_suffix(suffix), request=REQUEST)
    assert failing(result) == {}
    assert result.score == result.max_score == 34


def test_a_script_holding_the_whole_exercise_under_its_main_guard_scores_full_marks(tmp_path):
    # a student's script: definitions on top, everything else under `if __name__ == "__main__":`
    lines = LECTURE.read_text().splitlines()
    body = "\n".join(("    " + line) if line.strip() else "" for line in lines)
    path = tmp_path / "script.py"
    path.write_text(f'import torch\n\n\nif __name__ == "__main__":\n{body}\n')
    result = grade_submission(path, request=REQUEST)
    assert failing(result) == {}
    assert result.score == result.max_score == 34


# -- one notebook per pattern --------------------------------------------------------------------

def twin(name: str, folder: Path) -> Path:
    """The pattern's .py twin, written into ``folder``."""
    path = folder / f"{name}.py"
    path.write_text(python_twin(name))
    return path


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_each_pattern_scores_what_its_work_deserves(name, tmp_path):
    score = FIXTURES[name][1]
    paths = [REAL / f"{name}.ipynb"] + ([twin(name, tmp_path)] if FIXTURES[name][3] else [])
    for path in paths:
        result = grade_submission(path, request=REQUEST)
        assert result.score == score, (path.suffix, failing(result))


def test_the_committed_notebooks_are_what_build_py_makes():
    for name, (shows, score, body, _) in FIXTURES.items():
        expected = nbformat.writes(notebook(head_comment(name, shows, score), body))
        assert (REAL / f"{name}.ipynb").read_text() == expected + "\n" or \
            (REAL / f"{name}.ipynb").read_text() == expected, name


def test_keepdim_differences_are_graded_on_the_values_with_a_note():
    result = grade_submission(REAL / "size1_shapes.ipynb", request=REQUEST)
    g = by_name(result)
    for name in ("db1", "db2", "dbngain", "dbnbias", "dbnmeani"):
        assert g[("ex1", name)].passed, name
        assert "shape" in (g[("ex1", name)].message or ""), name


def test_the_students_size_names_are_bound_to_each_config():
    result = grade_submission(REAL / "size_constants.ipynb", request=REQUEST)
    assert failing(result) == {}
    note = next(n for n in result.notes if n.startswith("your names for the sizes"))
    for name, role in (("BATCH_SIZE", "n"), ("EMBEDDING_DIMENSIONALITY", "n_embd"),
                       ("HIDDEN_NEURONS", "n_hidden"), ("CONTEXT_LENGTH", "block_size"),
                       ("VOCAB", "vocab_size")):
        assert f"{name} = {role} (from your forward pass, cell " in note


def test_renamed_data_and_forward_tensors_are_read_from_the_forward_pass():
    result = grade_submission(REAL / "renamed_data.ipynb", request=REQUEST)
    assert failing(result) == {}
    note = next(n for n in result.notes if n.startswith("your names for the grader's tensors"))
    for pair in ("yb = Yb", "embeddings_concat = embcat", "bn_gamma = bngain",
                 "bn_beta = bnbias", "h_pre_bn = hprebn"):
        assert pair in note


def test_a_checker_of_another_name_is_read_by_the_tensor_each_check_names():
    result = grade_submission(REAL / "renamed_checker.ipynb", request=REQUEST)
    assert failing(result) == {}
    assert any("your checker compare() is read as the lecture's cmp()" in n for n in result.notes)


def test_a_literal_size_fails_at_other_sizes_and_the_message_names_it():
    result = grade_submission(REAL / "literal_size.ipynb", request=REQUEST)
    assert list(failing(result)) == ["ex1.dlogits"]
    assert ("correct in the lecture config, wrong in hidden-1 (n=19, n_embd=7, n_hidden=23, "
            "block_size=4, vocab_size=24): the literal 27 at cell 10, line 15 is the lecture's "
            "vocab_size (24 in hidden-1): use logits.shape[1]") \
        in by_name(result)[("ex1", "dlogits")].message


def test_a_name_no_cell_assigns_is_told_as_stale_kernel_state():
    result = grade_submission(REAL / "stale_kernel.ipynb", request=REQUEST)
    g = by_name(result)[("ex1", "dcounts")]
    assert g.status == "error"
    assert "ones is read at cell " in g.message and "before any cell assigns it" in g.message
    assert "your notebook only ran because of a cell run earlier or since deleted" in g.message


def test_an_unfinished_line_costs_only_itself():
    result = grade_submission(REAL / "unfinished_line.ipynb", request=REQUEST)
    assert failing(result) == {}
    assert any("`dC =` is not complete Python" in n and "the rest of the cell was graded" in n
               for n in result.notes)


def test_reading_autograds_answer_is_integrity_at_its_own_line_in_flag_and_gradient():
    result = grade_submission(REAL / "reads_grad.ipynb", request=REQUEST)
    assert failing(result) == {"ex1.dhpreact": "integrity"}
    message = by_name(result)[("ex1", "dhpreact")].message
    assert "`dhpreact = hpreact.grad` reads autograd's answer" in message
    where = message.split(":")[0]                       # "cell 10, line 16"
    assert any(where in flag.detail for flag in result.integrity)


def test_another_element_count_stays_wrong():
    result = grade_submission(REAL / "element_count.ipynb", request=REQUEST)
    assert failing(result) == {"ex1.dbndiff2": "shape"}


def test_the_patterns_grade_the_same_through_check_and_grade(tmp_path):
    """The command-line check of each .py fixture, and one grade run over all notebooks."""
    for name in ("renamed_data", "size_constants"):
        done = subprocess.run([sys.executable, "-m", "grader", "check", str(twin(name, tmp_path)),
                               "--steps", "2"], capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0 and "total: 34 / 34" in done.stdout, done.stdout[-2000:]
    folder = tmp_path / "class"
    folder.mkdir()
    for path in REAL.glob("*.ipynb"):
        (folder / path.name).write_bytes(path.read_bytes())
    (tmp_path / "quick.toml").write_text("[training]\nsteps = 2\n")
    done = subprocess.run([sys.executable, "-m", "grader", "grade", str(folder), "--out",
                           str(tmp_path / "out"), "--config", str(tmp_path / "quick.toml")],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    import csv

    rows = {r["student"]: float(r["score"]) for r in
            csv.DictReader((tmp_path / "out" / "gradebook.csv").open())}
    expected = {name: float(score) for name, (_, score, _, _) in FIXTURES.items()}
    assert rows == {**expected, "lecture": 34.0}


# -- the lecture's notebook, renamed at random ---------------------------------------------------

FORWARD = ("emb", "embcat", "hprebn", "bnmeani", "bndiff", "bndiff2", "bnvar", "bnvar_inv",
           "bnraw", "hpreact", "h", "logits", "logit_maxes", "norm_logits", "counts",
           "counts_sum", "counts_sum_inv", "probs", "logprobs", "loss", "bnmean")
PARAMETERS = ("C", "W1", "b1", "W2", "b2", "bngain", "bnbias")
SIZES = ("batch_size", "n", "n_embd", "n_hidden", "block_size", "vocab_size")
# the student's own: never read by the grader under these names
OWN = ("words", "chars", "stoi", "itos", "build_dataset", "X", "Y", "w", "context", "ch", "ix",
       "n1", "n2", "Xtr", "Ytr", "Xdev", "Ydev", "Xte", "Yte", "g", "parameters", "p", "t", "k",
       "j", "i", "lossi", "max_steps", "lr", "grads", "loss_fast", "hpreact_fast", "s", "dt",
       "ex", "app", "maxdiff", "Xb", "Yb")
LABELS = ("logprobs", "probs", "counts_sum_inv", "counts_sum", "counts", "norm_logits",
          "logit_maxes", "logits", "h", "W2", "b2", "hpreact", "bngain", "bnbias", "bnraw",
          "bnvar_inv", "bnvar", "bndiff2", "bndiff", "bnmeani", "hprebn", "embcat", "W1", "b1",
          "emb", "C")


def _fresh(rng: random.Random, taken: set[str], style: str) -> str:
    while True:
        stem = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 7)))
        name = {"lower": stem, "upper": stem.upper(), "snake": f"{stem}_{rng.randint(0, 99)}"}[style]
        if name not in taken and not keyword.iskeyword(name) and name not in dir(__builtins__) \
                and not name.startswith("d") and name not in ("torch", "F", "nn", "plt"):
            taken.add(name)
            return name


def renamed_notebook(seed: int) -> tuple[str, dict[str, str]]:
    """lecture.py with its free names, forward tensors, parameters, sizes, gradients and
    checker renamed, and its checks' labels redrawn (some swapped with another check's)."""
    rng = random.Random(seed)
    taken = set(FORWARD + PARAMETERS + SIZES + OWN)
    renames: dict[str, str] = {}
    for name in OWN + FORWARD + PARAMETERS:
        if rng.random() < 0.7:
            renames[name] = _fresh(rng, taken, rng.choice(("lower", "snake")))
    for name in SIZES:
        renames[name] = _fresh(rng, taken, rng.choice(("upper", "snake")))
    for name in FORWARD + PARAMETERS:     # d + the student's name for it, as students write
        if name in renames:
            renames[f"d{name}"] = f"d{renames[name]}"
    renames["cmp"] = _fresh(rng, taken, "snake")
    text = LECTURE.read_text()
    text = text[text.index("# %%"):]
    out: list[tokenize.TokenInfo] = []
    previous = None
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.NAME and tok.string in renames and \
                not (previous is not None and previous.string == "."):
            tok = tok._replace(string=renames[tok.string])
        elif tok.type == tokenize.STRING and tok.string.strip("'") in LABELS:
            label = tok.string.strip("'")
            roll = rng.random()
            if roll < 0.3:
                label = rng.choice(LABELS)                       # another check's label
            elif roll < 0.6:
                label = f"the {label.replace('_', ' ')} grad"    # free text
            tok = tok._replace(string=repr(label))
        out.append(tok)
        if tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT,
                            tokenize.DEDENT):
            previous = tok
    return tokenize.untokenize(out), renames


@pytest.mark.parametrize("seed", range(8))
def test_the_lectures_notebook_with_every_free_name_drawn_at_random_scores_full_marks(
        seed, tmp_path):
    body, renames = renamed_notebook(seed)
    path = tmp_path / f"renamed_{seed}.ipynb"
    nbformat.write(notebook(f"# renamed at random, seed {seed}\n", body), path)
    result = grade_submission(path, request=REQUEST)
    assert failing(result) == {}, (json.dumps(renames), [n for n in result.notes][:12])
    assert result.score == 34
