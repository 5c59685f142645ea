"""Builds the test notebooks from their .py twins (cells marked ``# %%``); run from anywhere:

    python tests/submissions/notebooks/build.py

The notebooks are committed; this script says how they were made. Each notebook holds the same
code as its twin, so both must get the same verdicts, plus what only notebooks have:

* correct.ipynb, mistakes.ipynb  <- ../lecture/correct.py, ../lecture/mistakes.py
* raises.ipynb                   <- ../lecture/raises.py, with the error output of its run
* magics.ipynb                   <- ../lecture/correct.py with %matplotlib, !pip, a %%time cell,
                                    a %%bash cell, help lines, execution counts and outputs
                                    (text, an image, an error)
* stubs.ipynb                    <- stubs.py (exercise functions) plus a data-loading cell, a
                                    %matplotlib line and a check() cell
"""

from __future__ import annotations

import base64
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

HERE = Path(__file__).resolve().parent
LECTURE = HERE.parent / "lecture"
# a 1x1 PNG, standing in for a plot
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000" "1f15c4890000000d49444154789c6360"
    "000002000001e221bc330000000049454e44ae426082")).decode()


def cells_of(path: Path) -> tuple[str, list[str]]:
    """(the comment block before the first cell, the cells' sources)."""
    text = path.read_text()
    head, *cells = text.split("# %%\n")
    return head, [c.strip("\n") for c in cells]


def notebook(head: str, sources: list[str | nbformat.NotebookNode]) -> nbformat.NotebookNode:
    intro = "\n".join(line.lstrip("# ") for line in head.strip().splitlines()
                      if not line.startswith("# expect-"))
    cells = [new_markdown_cell(intro)]
    cells += [s if isinstance(s, nbformat.NotebookNode) else new_code_cell(s) for s in sources]
    for i, cell in enumerate(cells, 1):
        cell.id = f"cell-{i:02d}"
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}})
    nbformat.validate(nb)
    return nb


def ran(source: str, count: int, *outputs: nbformat.NotebookNode) -> nbformat.NotebookNode:
    cell = new_code_cell(source, execution_count=count, outputs=list(outputs))
    for out in cell.outputs:
        if "execution_count" in out:
            out.execution_count = count
    return cell


def build_magics() -> nbformat.NotebookNode:
    head, cells = cells_of(LECTURE / "correct.py")
    out: list[str | nbformat.NotebookNode] = []
    for k, src in enumerate(cells, 1):
        if src.startswith("import random"):
            src = "%matplotlib inline\n!pip install -q torch\n" + src
        elif src.startswith("words = open"):
            out.append(ran(src, k, new_output("stream", name="stdout", text="32033\n")))
            continue
        elif src.startswith('cmp("logprobs"'):
            text = "".join(f"{name:15s} | exact: True  | approximate: True  | maxdiff: 0.0\n"
                           for name in ("logprobs", "probs", "counts_sum_inv"))
            out.append(ran("%time 1 + 1\ntorch.zeros?\n" + src, k,
                           new_output("stream", name="stdout", text=text)))
            continue
        elif src.startswith("dlogits = F.softmax"):
            src = "%%time\n" + src
        elif src.startswith("plt.plot"):
            out.append(ran(src, k, new_output("display_data", data={"image/png": PNG,
                                                                    "text/plain": "<Figure>"}),
                           new_output("error", ename="KeyboardInterrupt", evalue="",
                                      traceback=["KeyboardInterrupt"])))
            out.append("%%bash\necho this cell is a shell script\nexit 3")
            continue
        out.append(src)
    return notebook(head, out)


def build_raises() -> nbformat.NotebookNode:
    head, cells = cells_of(LECTURE / "raises.py")
    out: list[str | nbformat.NotebookNode] = []
    for k, src in enumerate(cells, 1):
        if "dbnvar_invv" in src:
            out.append(ran(src, k, new_output(
                "error", ename="NameError", evalue="name 'dbnvar_invv' is not defined",
                traceback=["NameError: name 'dbnvar_invv' is not defined"])))
        else:
            out.append(src)
    return notebook(head, out)


def build_stubs() -> nbformat.NotebookNode:
    head, cells = cells_of(HERE / "stubs.py")
    data = ("%matplotlib inline\nwords = open('names.txt', 'r').read().splitlines()\n"
            "print(len(words), 'words')")
    check = "from grader import check\n\ncheck()"
    return notebook(head, [cells[0], data, *cells[1:], check])


def main() -> None:
    for name in ("correct", "mistakes"):
        head, cells = cells_of(LECTURE / f"{name}.py")
        nbformat.write(notebook(head, list(cells)), HERE / f"{name}.ipynb")
    nbformat.write(build_magics(), HERE / "magics.ipynb")
    nbformat.write(build_raises(), HERE / "raises.ipynb")
    nbformat.write(build_stubs(), HERE / "stubs.ipynb")


if __name__ == "__main__":
    main()
