"""Builds the real-notebook fixtures from lecture.py, the lecture's own notebook solved in the
lecture's forms; run from anywhere:

    python tests/submissions/real/build.py

Each fixture is that notebook with one way real students write changed in it (the patterns of
the real-notebooks issue), as a .ipynb (cells split at ``# %%``, a %matplotlib line added as in
the lecture); the tests build each one's .py twin (``python_twin``) where the pattern is valid
Python. The first comment block of each says what it shows; ``# expect-score:`` is the score the
grader must give.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
LECTURE = (HERE / "lecture.py").read_text()


def _body() -> str:
    """lecture.py without its own comment block."""
    return LECTURE[LECTURE.index("# %%"):]


def _replace(text: str, *pairs: tuple[str, str]) -> str:
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new)
    return text


def _words(text: str, renames: dict[str, str]) -> str:
    pattern = re.compile(r"(?<![\w.'])(" + "|".join(map(re.escape, renames)) + r")(?!\w)")
    return pattern.sub(lambda m: renames[m.group(1)], text)


# name -> (what it shows, expected score, the body; None: notebook only)
FIXTURES: dict[str, tuple[str, int, str, bool]] = {
    "size1_shapes": (
        "db1 and db2 with keepdim=True, (1, 64) and (1, 27); dbngain and dbnbias without it, "
        "(64,); dbnmeani as the lecture writes it, (64,): the values are right, so full marks, "
        "with a note on each shape", 34,
        _replace(_body(), ("db2 = dlogits.sum(0)\n", "db2 = dlogits.sum(0, keepdim=True)\n"),
                 ("db1 = dhprebn.sum(0)\n", "db1 = dhprebn.sum(0, keepdim=True)\n"),
                 ("dbngain = (bnraw * dhpreact).sum(0, keepdim=True)\ndbnraw",
                  "dbngain = (bnraw * dhpreact).sum(0)\ndbnraw"),
                 ("dbnbias = dhpreact.sum(0, keepdim=True)\ndbndiff",
                  "dbnbias = dhpreact.sum(0)\ndbndiff")), True),
    "size_constants": (
        "the sizes under the student's own names (BATCH_SIZE, EMBEDDING_DIMENSIONALITY, ...), "
        "used in the exercise code: bound to the config being graded by the role they play in "
        "the shapes, so they pass in every hidden configuration", 34,
        _replace(_words(_body(), {"batch_size": "BATCH_SIZE", "n_embd": "EMBEDDING_DIMENSIONALITY",
                                  "n_hidden": "HIDDEN_NEURONS", "block_size": "CONTEXT_LENGTH",
                                  "vocab_size": "VOCAB"}),
                 ("demb = dembcat.view(emb.shape)\ndC",
                  "demb = dembcat.view(BATCH_SIZE, CONTEXT_LENGTH, EMBEDDING_DIMENSIONALITY)\ndC"),
                 ("num_classes=logits.shape[1]) * dlogit_maxes",
                  "num_classes=VOCAB) * dlogit_maxes")), True),
    "renamed_data": (
        "the batch, forward tensors and parameters under the student's own names (Xb, yb; "
        "embeddings_concat; bn_gamma, bn_beta): read from their forward pass", 34,
        _words(_body(), {"Yb": "yb", "embcat": "embeddings_concat", "bngain": "bn_gamma",
                         "bnbias": "bn_beta", "dembcat": "dembeddings_concat",
                         "dbngain": "dbn_gamma", "dbnbias": "dbn_beta", "hprebn": "h_pre_bn",
                         "dhprebn": "dh_pre_bn", "bnmeani": "bn_mean_i", "dbnmeani": "dbn_mean_i"}),
        True),
    "renamed_checker": (
        "the checker called compare, with labels of the student's own and one check mislabelled: "
        "each gradient is known by the tensor it is checked against", 34,
        _replace(_words(_body(), {"cmp": "compare"}),
                 ("compare('bngain', dbngain, bngain)", "compare('batch_norm_gain', dbngain, bngain)"),
                 ("compare('logit_maxes', dlogit_maxes, logit_maxes)",
                  "compare('logits_maxes', dlogit_maxes, logit_maxes)"),
                 ("compare('h', dh, h)", "compare('dh', dh, hpreact)"),
                 ("compare('counts_sum', dcounts_sum, counts_sum)",
                  "compare('the sum of the counts', dcounts_sum, counts_sum)")), True),
    "unfinished_line": (
        "a notebook whose exercise-1 cell ends in `dC =`, typed after the cell last ran: that "
        "statement is left out with a note, the rest of the cell is graded (dC was computed above "
        "it, so nothing is lost)", 34,
        _replace(_body(), ("cmp('C', dC, C)\n", "cmp('C', dC, C)\ndC =\n")), False),
    "reads_grad": (
        "dhpreact = hpreact.grad: autograd's answer read back, status integrity at that line; the "
        "gradients after it are graded on autograd's dhpreact", 33,
        _replace(_body(), ("dhpreact = (1.0 - h**2) * dh\ndbngain",
                           "dhpreact = hpreact.grad\ndbngain")), True),
    "literal_size": (
        "F.one_hot(..., num_classes=27): right at the lecture's sizes, wrong at another "
        "vocabulary; the message names the literal", 33,
        _replace(_body(), ("num_classes=logits.shape[1]) * dlogit_maxes",
                           "num_classes=27) * dlogit_maxes")), True),
    "stale_kernel": (
        "the exercise code reads ones, which no cell assigns (the cell that did was deleted): "
        "the notebook only ran because of an earlier kernel state", 33,
        _replace(_body(), ("dcounts += torch.ones_like(counts) * dcounts_sum",
                           "dcounts += ones * dcounts_sum")), True),
    "element_count": (
        "dbndiff2 left at (1, 64): another element count than bndiff2's (32, 64), wrong even "
        "though the lecture's cmp broadcasts it", 33,
        _replace(_body(), ("dbndiff2 = (1.0/(n-1))*torch.ones_like(bndiff2) * dbnvar",
                           "dbndiff2 = (1.0/(n-1)) * dbnvar")), True),
}


def head_comment(name: str, shows: str, score: int) -> str:
    words, line, out = shows.split(), "#", []
    for word in words:
        if len(line) + len(word) > 96:
            out.append(line)
            line = "#"
        line += " " + word
    out.append(line)
    return f"# real-notebook pattern: {name}\n" + "\n".join(out) + f"\n# expect-score: {score}\n\n"


def notebook(head: str, body: str) -> nbformat.NotebookNode:
    cells = [c.strip("\n") for c in body.split("# %%\n") if c.strip()]
    nb = new_notebook(cells=[new_markdown_cell(head.replace("# ", "").strip())])
    for k, source in enumerate(cells):
        if k == 0 and source.startswith("import torch"):
            source += "\n%matplotlib inline"
        nb.cells.append(new_code_cell(source))
    for k, cell in enumerate(nb.cells):     # fixed ids: the same notebook each build
        cell.id = f"cell-{k}"
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    return nb


def python_twin(name: str) -> str:
    """The fixture as a .py file, for the patterns that are valid Python (built by the tests:
    only the notebooks are kept here)."""
    shows, score, body, _ = FIXTURES[name]
    return head_comment(name, shows, score) + body


def main() -> None:
    for name, (shows, score, body, _) in FIXTURES.items():
        nbformat.write(notebook(head_comment(name, shows, score), body), HERE / f"{name}.ipynb")
    nbformat.write(notebook(LECTURE[:LECTURE.index("# %%")], _body()), HERE / "lecture.ipynb")


if __name__ == "__main__":
    main()
