"""A submitted Jupyter notebook as Python source: its code cells, joined (grader.submissions.
code_cells); markdown and outputs are never read. Every problem with the file is a one-line
SubmissionError naming it."""

from __future__ import annotations

import ast
import json
import re
import warnings
from pathlib import Path
from typing import Any

from .code_cells import CodeCell, join_cell_trees
from .submission import MAX_SOURCE_BYTES, SubmissionError, read_submission_text

__all__ = ["load_notebook_cells", "load_notebook_source", "read_notebook"]

MAX_NOTEBOOK_BYTES = 64 * 2**20     # outputs (images) make notebooks large; they are never read
MAX_CELLS = 5_000                   # the lecture's notebook has about 100
# What is never read (outputs, metadata, markdown, other tools' fields) is emptied before
# nbformat copies and validates the notebook: its cost is then that of the code alone. nbformat
# is imported only for a notebook it must repair or validate: importing it (jsonschema,
# fastjsonschema) costs more than a tenth of a second of every grading run's start-up
_CELL_KEYS = {"cell_type", "source", "id", "execution_count"}
_TOP_KEYS = {"nbformat", "nbformat_minor", "cells"}


def read_notebook(path: str | Path) -> dict[str, Any]:
    """Read and validate a notebook (its JSON, emptied of what is never read, as nbformat's
    normalize would leave it); every problem is a one-line SubmissionError naming the file."""
    p = Path(path)
    text = read_submission_text(p, max_bytes=MAX_NOTEBOOK_BYTES, kind="notebook", too_large=(
        "a notebook may have: clear its outputs (Kernel > Restart & Clear Output) and save"))
    if text.count('"cell_type"') > MAX_CELLS:      # before parsing: counting is cheap
        raise _too_many_cells(p, text.count('"cell_type"'))
    data = _notebook_json(p, text)
    nb = data if _plainly_valid(data) else _validated(p, data)
    if not nb["cells"]:
        raise SubmissionError(f"{p}: the notebook is empty (no cells)")
    return nb


_CELL_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")


def _plainly_valid(data: dict) -> bool:
    """Whether the notebook, as _notebook_json left it, is one nbformat's normalize and schema
    accept as it is: the usual case, checked in a few microseconds a cell where nbformat takes
    ~7 ms a notebook. False sends the notebook through nbformat, whose messages are kept; so
    only what nbformat surely accepts may pass here (bool is not a schema integer)."""
    minor, cells = data["nbformat_minor"], data.get("cells")
    if type(minor) is not int or not 0 <= minor <= 5 or type(cells) is not list:
        return False
    for cell in cells:
        if type(cell) is not dict or "source" not in cell:
            return False
        kind, source = cell.get("cell_type"), cell["source"]
        if kind == "code":
            count = cell.get("execution_count", "missing")
            if count is not None and (type(count) is not int or count < 0):
                return False
        elif kind not in ("markdown", "raw"):
            return False
        if type(source) is not str and (type(source) is not list
                                        or any(type(s) is not str for s in source)):
            return False
        if "id" in cell and (minor < 5 or type(cell["id"]) is not str
                             or not _CELL_ID.fullmatch(cell["id"])):
            return False    # nbformat adds missing ids and repairs duplicates; bad ones fail
    return True


def _validated(p: Path, data: dict) -> dict[str, Any]:
    """The notebook through nbformat's normalize and validation."""
    import nbformat
    from nbformat.validator import ValidationError, normalize

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # missing cell ids and the like: normalize() fixes them
        try:
            _, data = normalize(data, 4, data["nbformat_minor"], relax_add_props=True,
                                strip_invalid_metadata=True)
            nb = nbformat.from_dict(data)
            nbformat.validate(nb, relax_add_props=True)   # tools add fields of their own
        except ValidationError as e:
            where = "/".join(str(x) for x in getattr(e, "absolute_path", ())) or "top level"
            raise SubmissionError(f"{p}: not a valid notebook: {str(e.message)[:200]} (at {where})") \
                from None
        except (TypeError, KeyError, AttributeError) as e:
            raise SubmissionError(f"{p}: not a valid notebook: {type(e).__name__}: {e}") from None
        except (RecursionError, MemoryError):
            raise SubmissionError(f"{p}: not a valid notebook: nested too deeply to read") \
                from None
    return nb


def _notebook_json(p: Path, text: str) -> dict:
    """The notebook's JSON, checked to be nbformat 4, with the outputs of its code cells emptied."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SubmissionError(f"{p}: not a valid notebook: broken JSON at line {e.lineno}, column "
                              f"{e.colno} ({e.msg}); was the file cut short or edited by hand?") \
            from None
    except RecursionError:
        raise SubmissionError(f"{p}: not a valid notebook: JSON nested too deeply") from None
    except (ValueError, MemoryError) as e:     # e.g. an integer of more than 4,300 digits
        raise SubmissionError(f"{p}: not a valid notebook: {str(e)[:120]}") from None
    if not isinstance(data, dict) or "nbformat" not in data:
        raise SubmissionError(f"{p}: not a Jupyter notebook (no 'nbformat' field at the top)")
    version = data.get("nbformat")
    if version != 4:
        raise SubmissionError(
            f"{p}: notebook format version {version!r}, but only version 4 is read: open and save "
            "it with a current Jupyter, or `jupyter nbconvert --to notebook --nbformat 4`")
    minor = data.get("nbformat_minor")
    if not isinstance(minor, int):
        raise SubmissionError(f"{p}: not a valid notebook: 'nbformat_minor' is {minor!r}")
    cells = data.get("cells")
    if isinstance(cells, list):
        if len(cells) > MAX_CELLS:
            raise _too_many_cells(p, len(cells))
        data["cells"] = cells = [_only_what_is_read(cell) for cell in cells]
        code = sum(_source_length(c["source"]) for c in cells
                   if isinstance(c, dict) and c.get("cell_type") == "code" and "source" in c)
        if code > MAX_SOURCE_BYTES:
            raise SubmissionError(f"{p}: {code:,} characters of code, more than the "
                                  f"{MAX_SOURCE_BYTES:,} a submission may have")
    data = {k: v for k, v in data.items() if k in _TOP_KEYS}
    data["metadata"] = {}
    return data


def _too_many_cells(p: Path, count: int) -> SubmissionError:
    return SubmissionError(f"{p}: {count:,} cells, more than the {MAX_CELLS:,} a notebook may have")


def _only_what_is_read(cell: object) -> object:
    """A cell with its metadata, attachments and outputs emptied, a markdown cell's text
    dropped, and fields of other tools left out (the schema's other checks stay)."""
    if not isinstance(cell, dict):
        return cell
    kept = {k: v for k, v in cell.items() if k in _CELL_KEYS}
    kept["metadata"] = {}
    if cell.get("cell_type") == "code":
        kept["outputs"] = []
    elif "source" in kept:
        kept["source"] = ""
    return kept


def _source_length(source: object) -> int:
    if isinstance(source, str):
        return len(source)
    if isinstance(source, list):
        return sum(len(s) for s in source if isinstance(s, str))
    return 0


def load_notebook_source(path: str | Path) -> tuple[str, tuple[str, ...]]:
    """A notebook's code cells as one Python source, and notes on what was dropped."""
    code, notes, _ = load_notebook_cells(path)
    return code, notes


def load_notebook_cells(path: str | Path
                        ) -> tuple[str, tuple[str, ...], tuple[ast.Module, ...]]:
    """load_notebook_source, and the kept cells' trees (code_cells.join_cell_trees)."""
    p = Path(path)
    nb = read_notebook(p)
    cells = [CodeCell(f"cell {i}", _cell_text(cell["source"]))
             for i, cell in enumerate(nb["cells"], 1) if cell["cell_type"] == "code"]
    if not cells:
        raise SubmissionError(f"{p}: the notebook has no code cells")
    if not any(c.source.strip() for c in cells):
        raise SubmissionError(f"{p}: every code cell of the notebook is empty")
    code, notes, trees = join_cell_trees(cells)
    if not code.strip():
        raise SubmissionError(f"{p}: no Python code in the notebook ({'; '.join(notes)})")
    if len(code) > MAX_SOURCE_BYTES:
        raise SubmissionError(f"{p}: {len(code):,} characters of code, more than the "
                              f"{MAX_SOURCE_BYTES:,} a submission may have")
    return code, notes, trees


def _cell_text(source: object) -> str:
    if isinstance(source, list):
        return "".join(str(s) for s in source)
    return str(source)
