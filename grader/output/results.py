"""Results as frozen dataclasses, and their JSON form (schema "backprop-grader/result/v1")."""

from __future__ import annotations

import functools
import json
import math
import os
import secrets
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

__all__ = [
    "REVIEW_KINDS",
    "SCHEMA",
    "write_atomic",
    "ConfigVerdict",
    "ExerciseResult",
    "GradientResult",
    "IntegrityFlag",
    "ModeVerdict",
    "Result",
    "TensorView",
    "read_result",
    "result_from_dict",
    "result_to_dict",
    "write_result",
]

SCHEMA = "backprop-grader/result/v1"
# integrity flags recorded at run time that send a submission to review (grader.judge.review)
REVIEW_KINDS = ("tamper", "process", "load")
PASSING = ("exact", "approx")


@dataclass(frozen=True)
class ConfigVerdict:
    config: str
    status: str
    maxdiff: float | None = None
    mode: str = "isolated"
    message: str | None = None
    probe: bool = False           # graded with random upstream gradients (grader/judge/probes.py)
    label: str = ""               # the config's sizes and seed
    limit: str | None = None      # the sandbox limit the call ran into ("wall time", "memory", ...)


@dataclass(frozen=True)
class ModeVerdict:
    """One mode's verdict on one gradient, in the lecture config."""

    mode: str                     # "isolated" | "chained"
    status: str
    exact: bool
    approx: bool
    allclose: bool
    maxdiff: float | None
    rel_error: float | None = None
    ulps: int | None = None
    message: str | None = None
    hint: str | None = None       # a known mistake this mode's answer matches
    hint_key: str | None = None
    explanation: str | None = None


@dataclass(frozen=True)
class TensorView:
    """A small picture of one tensor for the report, at most about 32 x 32 cells.

    The tensor is laid out in 2-D (1-D as one row, 3-D and up as (first dim, the rest)) and pooled
    in blocks of at most ``cell`` elements: averaged for values, the largest kept for differences.
    Cells that hold NaN or infinity are ``None``.
    """

    label: str                                       # "expected" | "actual" | "difference"
    shape: tuple[int, ...]                           # the tensor's own shape
    values: tuple[tuple[float | None, ...], ...]     # rows of cells
    cell: tuple[int, int] = (1, 1)                   # elements per cell (rows, columns), at most
    pooling: str = "none"                            # "none" | "mean" | "max"
    worst_cell: tuple[int, int] | None = None        # the cell holding the worst element


@dataclass(frozen=True)
class GradientResult:
    name: str
    variable: str
    status: str
    exact: bool
    approx: bool
    maxdiff: float | None
    points: float
    max_points: float
    message: str | None = None
    hint: str | None = None
    hint_key: str | None = None      # which known mistake (grader/judge/hints.py), or "sign" etc.
    configs: tuple[ConfigVerdict, ...] = ()
    allclose: bool = False
    rel_error: float | None = None
    ulps: int | None = None
    forward: str = ""
    shape: str = ""
    actual_shape: tuple[int, ...] | None = None
    expected_shape: tuple[int, ...] | None = None
    modes: tuple[ModeVerdict, ...] = ()
    traceback: str | None = None
    explanation: str | None = None   # why approximate rather than exact, when known
    # a failing gradient's mismatch summary and pictures (filled from the tensors by views.py)
    mismatched: int | None = None               # elements outside the tolerance
    numel: int | None = None                    # elements compared
    worst_index: tuple[int, ...] | None = None  # where |actual - expected| is greatest
    worst_actual: float | None = None
    worst_expected: float | None = None
    views: tuple[TensorView, ...] = ()          # expected, actual, difference
    views_from: str | None = None               # which config and mode the pictures show

    @property
    def passed(self) -> bool:
        return self.status in PASSING

    @property
    def shape_differs(self) -> bool:
        """The answer's shape is not the tensor's (in the lecture config): a passing one was
        graded on its values, its shape differing by size-1 dimensions in front."""
        return self.actual_shape is not None and self.expected_shape is not None \
            and tuple(self.actual_shape) != tuple(self.expected_shape)


@dataclass(frozen=True)
class ExerciseResult:
    name: str
    score: float
    max_score: float
    gradients: tuple[GradientResult, ...] = ()


@dataclass(frozen=True)
class IntegrityFlag:
    kind: str
    detail: str


@dataclass(frozen=True)
class Result:
    submission: str
    status: str                   # "graded" | "review" | "error" | "timeout"
    message: str | None
    score: float
    max_score: float
    mode: str
    loss: float | None
    exercises: tuple[ExerciseResult, ...] = ()
    integrity: tuple[IntegrityFlag, ...] = ()
    first_wrong: str | None = None     # first gradient wrong in isolated mode
    output: str = ""                   # the student's captured stdout/stderr (capped)
    notes: tuple[str, ...] = ()
    configs: tuple[str, ...] = ()
    grader_version: str = ""
    schema: str = SCHEMA
    # "review": why the score is withheld until an instructor clears it (grader/judge/review.py),
    # each naming the line; the score it would have had
    review: tuple[str, ...] = ()
    withheld_score: float | None = None

    def gradients(self) -> tuple[GradientResult, ...]:
        return tuple(g for ex in self.exercises for g in ex.gradients)

    @property
    def all_passed(self) -> bool:
        return self.status == "graded" and all(g.passed for g in self.gradients())


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    """A dataclass's field names, looked up once per class (``fields()`` filters on every call)."""
    return tuple(f.name for f in fields(cls))


@functools.cache
def _field_set(cls: type) -> frozenset[str]:
    return frozenset(_field_names(cls))


def _json_value(value: Any) -> Any:
    """Dataclasses to dicts in one pass, without asdict's deep copies; JSON has no NaN/inf, so
    they are written as strings and the file stays strict JSON.

    The exact built-in types come first, without isinstance chains: a result holds thousands of
    floats (its heatmap views); subclasses and anything else take ``_json_other``."""
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else str(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is tuple or kind is list:
        return _json_list(value)
    return _json_other(value)


def _json_list(items: tuple[Any, ...] | list[Any]) -> list[Any]:
    # scalars inline (a view row is 32 floats), the rest through _json_value
    return [v if (kind := type(v)) is str or kind is int or kind is bool or v is None
            or (kind is float and math.isfinite(v)) else _json_value(v) for v in items]


def _json_other(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if hasattr(value, "__dataclass_fields__"):
        return {name: _json_value(getattr(value, name)) for name in _field_names(type(value))}
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return _json_list(value)
    return value


def result_to_dict(result: Result) -> dict[str, Any]:
    data = _json_value(result)
    order = ["schema", "submission", "status", "message", "score", "max_score", "review",
             "withheld_score", "mode", "loss", "exercises", "integrity"]
    ordered = {k: data[k] for k in order}
    ordered.update({k: v for k, v in data.items() if k not in ordered})
    return ordered


def _float(value: Any) -> float | None:
    if value is None:
        return None
    return float(value)


def _build(cls: type, data: dict[str, Any]) -> Any:
    names = _field_set(cls)
    return cls(**{k: v for k, v in data.items() if k in names})


def _view_from_dict(data: dict[str, Any]) -> TensorView:
    v = dict(data)
    v["shape"] = tuple(v.get("shape", ()))
    # _float inline: a view holds up to 32 x 32 cells
    v["values"] = tuple(tuple([None if x is None else float(x) for x in row])
                        for row in v.get("values", ()))
    v["cell"] = tuple(v.get("cell", (1, 1)))
    if v.get("worst_cell") is not None:
        v["worst_cell"] = tuple(v["worst_cell"])
    return _build(TensorView, v)


def result_from_dict(data: dict[str, Any]) -> Result:
    """Inverse of result_to_dict; unknown fields are ignored, so older files still load."""
    if data.get("schema") != SCHEMA:
        raise ValueError(f"not a backprop-grader result (schema {data.get('schema')!r})")
    exercises = []
    for ex in data.get("exercises", []):
        grads = []
        for g in ex.get("gradients", []):
            g = dict(g)
            g["configs"] = tuple(_build(ConfigVerdict, c) for c in g.get("configs", []))
            g["modes"] = tuple(_build(ModeVerdict, {**m, "maxdiff": _float(m.get("maxdiff"))})
                               for m in g.get("modes", []))
            for key in ("maxdiff", "rel_error", "worst_actual", "worst_expected"):
                g[key] = _float(g.get(key))
            for key in ("actual_shape", "expected_shape", "worst_index"):
                if g.get(key) is not None:
                    g[key] = tuple(g[key])
            g["views"] = tuple(_view_from_dict(v) for v in g.get("views", []))
            grads.append(_build(GradientResult, g))
        exercises.append(_build(ExerciseResult, {**ex, "gradients": tuple(grads)}))
    top = dict(data)
    top["exercises"] = tuple(exercises)
    top["integrity"] = tuple(_build(IntegrityFlag, f) for f in data.get("integrity", []))
    top["notes"] = tuple(data.get("notes", ()))
    top["configs"] = tuple(data.get("configs", ()))
    top["loss"] = _float(data.get("loss"))
    top["review"] = tuple(str(r) for r in data.get("review", ()))
    top["withheld_score"] = _float(data.get("withheld_score"))
    return _build(Result, top)


def _new_temp_file(path: Path) -> tuple[int, str]:
    """A new, empty file beside ``path`` (an fd open for writing, and its name), with the
    permissions open() would give ``path``: 0o666 less the umask, which the kernel applies."""
    while True:
        tmp = str(path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp"))
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, then rename: readers see all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new_temp_file(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_result(result: Result, path: str | Path) -> dict[str, Any]:
    """Write atomically (write_atomic); returns what was written, as a dict."""
    data = result_to_dict(result)
    # compact: json's C encoder only runs without indent (a results file holds heatmap views)
    write_atomic(Path(path), json.dumps(data, separators=(",", ":")))
    return data


def read_result(path: str | Path) -> Result:
    return result_from_dict(json.loads(Path(path).read_text("utf-8")))
