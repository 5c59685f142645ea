"""A class that looks like a real one, for the throughput benchmarks (batch.py, peers.py).

Built from the real-notebooks fixtures' generators (tests/submissions/real/build.py: the
lecture's notebook solved in its own forms, and the ways students change it), so that what is
measured is what a class hands in:

* notebook      (~55%) lecture-style notebooks in student shapes: the lecture's cells with a
                       scratch cell or two, a plot of the loss, exercise 4's training loop left in
                       (a few steps: nbgrader runs it), their own names for the batch, sizes,
                       parameters or checker, partial work (a part left as TODO), and about 40%
                       with one or two wrong gradients;
* notebook-functions (~8%) the exercise-function format as a notebook (the solution, or with a
                       wrong function), as ``backprop-grader notebook`` makes it;
* stub          (~25%) .py files in the exercise-function format: the solution, about 40% with
                       a wrong function;
* ungradable     (~6%) broken JSON, a syntax error, an empty file, a notebook without exercise
                       code;
* hostile        (~6%) exits, floods, Ctrl-C, sys.exit at the top, and (at most one in 150) a
                       loop that never ends.

``kinds[student] = kind``; every file's bytes differ (a comment with the student's id).
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = (ROOT / "solutions" / "backprop.py").read_text()


def compile_bytecode(tree: Path) -> None:
    """The tree's grader package compiled to bytecode (__pycache__, ignored by git), as an
    installed package is: where PYTHONDONTWRITEBYTECODE is set (this VM), an editable tree
    would otherwise be compiled again by every process the benchmark starts."""
    import compileall

    compileall.compile_dir(str(tree / "grader"), quiet=1)


def _load_build():      # tests/submissions/real/build.py, without making tests a package
    spec = importlib.util.spec_from_file_location(
        "real_build", ROOT / "tests" / "submissions" / "real" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["real_build"] = module
    spec.loader.exec_module(module)
    return module


build = _load_build()

KINDS = ("notebook", "notebook-functions", "stub", "ungradable", "hostile")

# wrong gradients in the lecture's forms (old text, new text): the student's mistakes
NOTEBOOK_MISTAKES = (
    ("dbndiff2 = (1.0/(n-1))*torch.ones_like(bndiff2) * dbnvar",
     "dbndiff2 = (1.0/n)*torch.ones_like(bndiff2) * dbnvar"),                 # no Bessel
    ("dbnmeani = (-dbndiff).sum(0)", "dbnmeani = (dbndiff).sum(0)"),             # sign
    ("dcounts_sum = (-counts_sum**-2) * dcounts_sum_inv",
     "dcounts_sum = (counts_sum**-2) * dcounts_sum_inv"),                      # sign
    ("dbnvar = (-0.5*(bnvar + 1e-5)**-1.5) * dbnvar_inv",
     "dbnvar = (-0.5*(bnvar + 1e-5)**-0.5) * dbnvar_inv"),                     # power
    ("dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)",
     "dcounts_sum_inv = (counts * dprobs).sum(1)"),                            # keepdim
    ("dW2 = h.T @ dlogits", "dW2 = h @ dlogits.T"),                             # shape
    ("dlogits /= n\n\ncmp", "dlogits /= n*n\n\ncmp"),                           # ex 2
)
STUB_MISTAKES = (
    "def dbnmeani(dbndiff):\n    return dbndiff.sum(0, keepdim=True)\n",
    "def dcounts_sum_inv(dprobs, counts):\n    return (counts * dprobs).sum(1)\n",
    "def dbndiff2(dbnvar, bndiff2, n):\n    return 1.0/n * torch.ones_like(bndiff2) * dbnvar\n",
    "def dW1(dhprebn, embcat):\n    return (dhprebn.T @ embcat).T\n",
)
# the students' own names, from the fixtures (renamed_data, size_constants, renamed_checker)
RENAMES = (
    {"Yb": "yb", "embcat": "embeddings_concat", "bngain": "bn_gamma", "bnbias": "bn_beta",
     "dembcat": "dembeddings_concat", "dbngain": "dbn_gamma", "dbnbias": "dbn_beta",
     "hprebn": "h_pre_bn", "dhprebn": "dh_pre_bn", "bnmeani": "bn_mean_i",
     "dbnmeani": "dbn_mean_i"},
    {"batch_size": "BATCH_SIZE", "n_embd": "EMBEDDING_DIMENSIONALITY",
     "n_hidden": "HIDDEN_NEURONS", "block_size": "CONTEXT_LENGTH", "vocab_size": "VOCAB"},
    {"cmp": "compare"},
)
SCRATCH_CELLS = (
    "print(logits.shape, h.shape, hpreact.shape)",
    "# sanity check of the loss at init\nprint(loss.item(), -torch.tensor(1/27.0).log().item())",
    "Xb[:3], Yb[:3]",
    "for name, t in [('logits', logits), ('h', h)]:\n    print(name, t.mean().item(), "
    "t.std().item())",
)
PLOT_CELL = "plt.figure(figsize=(10, 4))\nplt.plot(torch.tensor(lossi))\nplt.title('training loss')"
HOSTILE_NOTEBOOK = (
    "import os\nos._exit(3)",
    "print('x' * 1_000_000)",
    "raise KeyboardInterrupt",
)
HOSTILE_STUB = (
    "import os\ndef dcounts(dprobs, counts_sum_inv, dcounts_sum):\n    os._exit(3)\n",
    "print('x' * 1_000_000)\n",
    "import sys\nsys.exit('bye')\n",
    "def dh(dlogits, W2):\n    raise KeyboardInterrupt\n",
)
LOOP_STUB = "def dprobs(dlogprobs, probs):\n    while True:\n        pass\n"
TRAIN_STEPS = 50        # exercise 4's loop as a student leaves it, but short: nbgrader runs it


def _cells(body: str) -> list[str]:
    return [c.strip("\n") for c in body.split("# %%\n") if c.strip()]


def _join(cells: list[str]) -> str:
    return "".join(f"# %%\n{c}\n\n" for c in cells)


def student_notebook_body(rng: random.Random, *, wrong: bool, renames: bool = True
                          ) -> tuple[str, list[str]]:
    """The lecture's notebook as one student leaves it: the code (cells at ``# %%``) and what
    was done to it (``renames`` off: the instructor's names, as nbgrader's tests need)."""
    body = build._body().replace("max_steps = 200000", f"max_steps = {TRAIN_STEPS}")
    body = body.replace("if i % 10000 == 0:", "if i % 10 == 0:")
    done = []
    if wrong:
        for old, new in rng.sample(NOTEBOOK_MISTAKES, rng.choice((1, 1, 2))):
            assert old in body, old
            body = body.replace(old, new, 1)
            done.append("wrong: " + new.split("=")[0].strip())
    r = rng.random()
    if r < 0.15:        # exercise 3 left for later
        ex3 = ("dhprebn = bngain*bnvar_inv/n * (n*dhpreact - dhpreact.sum(0) - "
               "n/(n-1)*bnraw*(dhpreact*bnraw).sum(0))\n\ncmp('hprebn'")
        body = body.replace(ex3, "# TODO: dhprebn = ...\n\n# cmp('hprebn'", 1)
        done.append("partial: exercise 3 TODO")
    elif r < 0.25:      # the end of exercise 1 not done yet
        start, end = body.index("dembcat = dhprebn @ W1.T"), body.index("cmp('logprobs'")
        body = body[:start] + "# TODO: dembcat, dW1, db1, demb, dC\n\n" + body[end:]
        for name in ("embcat", "W1", "b1", "emb", "C"):
            body = body.replace(f"cmp('{name}', d{name}, {name})\n", "")
        done.append("partial: exercise 1 to dhprebn")
    cells = _cells(body)
    for _ in range(rng.choice((0, 1, 2, 3))):       # scratch cells here and there
        at = rng.randrange(6, len(cells))
        cells.insert(at, rng.choice(SCRATCH_CELLS))
    cells.append(PLOT_CELL)
    body = _join(cells)
    for names in RENAMES:
        if renames and rng.random() < 0.3:
            body = build._words(body, names)
            done.append("renamed: " + ", ".join(list(names.values())[:2]))
    return body, done


def notebook_text(body: str, head: str) -> str:
    return nbformat.writes(build.notebook(head, body))


def generate(folder: Path, n: int, seed: int = 0) -> dict[str, str]:
    """N submissions in ``folder``; returns student -> kind."""
    from grader.exercise_notebook import build_exercise_notebook

    rng = random.Random(seed)
    folder.mkdir(parents=True)
    kinds: dict[str, str] = {}
    loops = 0
    for i in range(n):
        sid = f"student{i:05d}"
        head = f"# {sid}\n"
        r = rng.random()
        if r < 0.55:
            kind = "notebook"
            body, _ = student_notebook_body(rng, wrong=rng.random() < 0.4)
            name, text = f"{sid}.ipynb", notebook_text(body, head)
        elif r < 0.63:
            kind = "notebook-functions"
            code = SOLUTION + ("\n\n" + rng.choice(STUB_MISTAKES) if rng.random() < 0.4 else "")
            nb = build_exercise_notebook(head + code)
            name, text = f"{sid}.ipynb", nbformat.writes(nb)
        elif r < 0.88:
            kind = "stub"
            code = SOLUTION + ("\n\n" + rng.choice(STUB_MISTAKES) if rng.random() < 0.4 else "")
            name, text = f"{sid}.py", head + code
        elif r < 0.94:
            kind = "ungradable"
            name, text = rng.choice((
                (f"{sid}.ipynb", '{"cells": [{"cell_type": "code", "source": "dC = ' + sid),
                (f"{sid}.py", head + "def dprobs(:\n"),
                (f"{sid}.py", ""),
                (f"{sid}.ipynb", notebook_text(_join(_cells(build._body())[:4]), head)),
            ))
        else:
            kind = "hostile"
            if loops * 150 < n and rng.random() < 0.2:
                loops += 1
                name, text = f"{sid}.py", head + SOLUTION + "\n\n" + LOOP_STUB
            elif rng.random() < 0.5:
                name, text = f"{sid}.py", head + SOLUTION + "\n\n" + rng.choice(HOSTILE_STUB)
            else:
                cells = _cells(student_notebook_body(rng, wrong=False)[0])
                at = next(k for k, c in enumerate(cells) if "Exercise 1" in c)
                cells[at] = rng.choice(HOSTILE_NOTEBOOK) + "\n" + cells[at]
                name, text = f"{sid}.ipynb", notebook_text(_join(cells), head)
        (folder / name).write_text(text)
        kinds[sid] = kind
    return kinds


def fixtures() -> list[Path]:
    """The real-notebooks issue's own fixtures (tests/submissions/real/*.ipynb)."""
    return sorted((ROOT / "tests" / "submissions" / "real").glob("*.ipynb"))


if __name__ == "__main__":      # a look at one class: python benchmarks/realistic_class.py DIR N
    out = Path(sys.argv[1])
    made = generate(out, int(sys.argv[2]) if len(sys.argv) > 2 else 40)
    print(json.dumps({k: sum(1 for v in made.values() if v == k) for k in KINDS}))
