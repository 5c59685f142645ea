"""Assignment config: a TOML file an instructor writes once -> a ``GradeRequest`` and settings.

Every key is checked: an unknown key, a wrong type or an impossible value is an
``AssignmentError`` naming the file and the key (with a suggestion when one is close), never a
silent default. An example with every key::

    title = "Backprop ninja"
    words = "names.txt"                 # relative to this file; default: the embedded list
    exercises = ["ex1", "ex2", "ex3", "ex4"]   # which exercises count
    modes = ["isolated", "chained"]

    [points.gradients]                  # points of single gradients (exercises 1-3)
    dlogprobs = 2
    [points.gradients.ex4]              # exercise 4's names repeat exercise 1's: its own table
    training = 1
    [points.exercises]                  # an exercise's total, shared among the gradients
    ex4 = 8                             # not set above, in proportion to their default points

    [tolerance]
    rtol = 1e-5
    atol_scale = 1e-6
    exact_required = ["dlogprobs"]      # or "all": approx earns nothing there
    strict_shapes = false               # true: (64,) for a (1, 64) tensor is wrong ("shape")

    [training]                          # exercise 4
    steps = 10
    lr = 0.1

    [hidden]                            # further configs with other sizes and seeds
    enabled = true
    seed = 4242                         # final grading's data: set your own
    exercise4 = true                    # exercise 4's gradients on the first one too
    [[hidden.variants]]                 # replace the default variants (grader/lecture/configs.py)
    name = "odd"
    n = 19
    n_hidden = 23
    drop_letters = "qxz"                # a smaller vocabulary
    # or [[hidden.configs]] with seed, n, n_embd, n_hidden, block_size: used exactly as given

    [integrity]
    autograd = "zero"                   # "zero": a gradient got via autograd scores 0; "flag"

    [limits]                            # per submission
    call_seconds = 20
    memory_mb = 4096

    [gradescope]
    visibility = "visible"
    stdout_visibility = "hidden"
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (e.g. the Ubuntu 22.04 Gradescope image)
    import tomli as tomllib  # type: ignore[no-redef]

from .api import GradeRequest, lecture_config
from .lecture.catalog import EXERCISES
from .judge.compare import Tolerance
from .lecture.configs import HiddenConfigs, HiddenVariant, resolve_hidden_configs
from .judge.grading import MODES, GradingOptions
from .judge.integrity import POLICIES
from .lecture.model import Config
from .config_table import AssignmentError, Table, describe
from .sandbox.limits import Limits

__all__ = ["Assignment", "AssignmentError", "GradescopeSettings", "load_assignment",
           "parse_assignment"]

VISIBILITIES = ("hidden", "after_due_date", "after_published", "visible")


@dataclass(frozen=True)
class GradescopeSettings:
    """Top-level visibility of the Gradescope results (see grader.output.exports)."""

    visibility: str = "visible"
    stdout_visibility: str = "hidden"


@dataclass(frozen=True)
class Assignment:
    """What an assignment file decides: the grading request and how results are published."""

    request: GradeRequest = field(default_factory=GradeRequest)
    title: str = "Backprop ninja"
    integrity_autograd: str = "zero"
    gradescope: GradescopeSettings = field(default_factory=GradescopeSettings)
    source: str = ""                # the file it came from, "" for the defaults
    words: str | None = None        # the word list as named in the file (relative to it)


def _names(table: Table, name: str, known: tuple[str, ...], default: tuple[str, ...]
           ) -> tuple[str, ...]:
    value = table.get(name, list, None)
    if value is None:
        return default
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or item not in known:
            close = difflib.get_close_matches(str(item), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise table.fail(name, f"contains {item!r}{hint}; known: {', '.join(known)}")
        if item not in out:
            out.append(item)
    if not out:
        raise table.fail(name, "is empty: list at least one")
    return tuple(out)


# -- sections --------------------------------------------------------------------------------

_DEFAULT_POINTS: dict[str, float] = {
    f"{ex}.{g.name}": g.points for ex, gs in EXERCISES.items() for g in gs}
# a bare name means the first exercise that has it (dC is exercise 1's; ex4's is [...gradients.ex4])
_BY_NAME: dict[str, str] = {}
for _key in _DEFAULT_POINTS:
    _BY_NAME.setdefault(_key.split(".", 1)[1], _key)


def _gradient_key(table: Table, name: str, exercise: str | None) -> str:
    if exercise is not None:
        key = f"{exercise}.{name}"
        known = [g.name for g in EXERCISES[exercise]]
    else:
        key = _BY_NAME.get(name, "")
        known = list(_BY_NAME)
    if key not in _DEFAULT_POINTS:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f": did you mean '{close[0]}'?" if close else f" (known: {', '.join(known)})"
        raise table.fail(name, f"is not a gradient of {exercise or 'this exercise'}{hint}")
    return key


def _points(table: Table) -> dict[str, float]:
    """Points keyed "ex1.dlogprobs": explicit ones, then exercise totals shared among the rest."""
    gradients = table.table("gradients")
    points: dict[str, float] = {}
    for name in list(gradients.data):
        if name in EXERCISES and isinstance(gradients.data[name], dict):
            sub = gradients.table(name)
            for inner in list(sub.data):
                points[_gradient_key(sub, inner, name)] = float(sub.number(inner, positive=False))
            sub.finish()
            continue
        key = _gradient_key(gradients, name, None)
        if key in points:
            raise gradients.fail(name, "is given twice")
        points[key] = float(gradients.number(name, positive=False))
    gradients.finish()
    exercises = table.table("exercises")
    for ex in list(exercises.data):
        if ex not in EXERCISES:
            raise exercises.fail(ex, f"is not an exercise (known: {', '.join(EXERCISES)})")
        total = float(exercises.number(ex, positive=False))
        keys = [f"{ex}.{g.name}" for g in EXERCISES[ex]]
        fixed = sum(points[k] for k in keys if k in points)
        free = [k for k in keys if k not in points]
        if not free:
            if not math.isclose(fixed, total):
                raise exercises.fail(ex, f"is {total:g} but its gradients' points, all set in "
                                         f"[points.gradients], add up to {fixed:g}")
            continue
        if total < fixed:
            raise exercises.fail(ex, f"is {total:g}, less than the {fixed:g} points already given "
                                     "to its gradients in [points.gradients]")
        weight = sum(_DEFAULT_POINTS[k] for k in free)
        for k in free:
            points[k] = (total - fixed) * _DEFAULT_POINTS[k] / weight
    exercises.finish()
    table.finish()
    return points


def _config_from(table: Table, base: Config, index: int) -> Config:
    changes: dict[str, Any] = {}
    for f in fields(Config):
        if f.name in ("words", "name"):
            continue
        value = table.number(f.name, None, integer=True, positive=f.name != "seed")
        if value is not None:
            changes[f.name] = value
    name = table.get("name", str, f"hidden-{index}")
    table.finish()
    if "n" in changes and changes["n"] < 2:
        raise table.fail("n", "must be at least 2 (batch norm divides by n - 1)")
    return replace(base, name=name, **changes)


def _variant_from(table: Table, index: int) -> HiddenVariant:
    values: dict[str, Any] = {"name": table.get("name", str, f"hidden-{index}"),
                              "drop_letters": table.get("drop_letters", str, "")}
    for f in fields(HiddenVariant):
        if f.name not in values:
            value = table.number(f.name, None, integer=True, positive=f.name != "seed")
            if value is not None:
                values[f.name] = value
    table.finish()
    return HiddenVariant(**values)


def _tables(table: Table, key: str) -> list[Table]:
    items = table.get(key, list, [])
    out = []
    for i, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise table.fail(key, f"entry {i} is {describe(item)}, expected a table "
                                  f"([[{table.key(key)}]])")
        out.append(Table(item, f"{table.key(key)}[{i}]", table.file))
    return out


def _hidden(table: Table, lecture: Config) -> HiddenConfigs:
    """[hidden]: on/off, final grading's seed, exercise 4 on the first hidden config, and either
    variants of the lecture config ([[hidden.variants]]) or exact configs ([[hidden.configs]])."""
    default = HiddenConfigs()
    enabled = table.get("enabled", bool, True)
    seed = table.number("seed", default.seed, integer=True, positive=False)
    exercise4 = table.get("exercise4", bool, default.exercise4)
    variants = tuple(_variant_from(t, i) for i, t in enumerate(_tables(table, "variants"), 1))
    configs = tuple(_config_from(t, lecture, i) for i, t in enumerate(_tables(table, "configs"), 1))
    if variants and configs:
        raise table.fail("configs", "and 'hidden.variants' are both given: keep one")
    if "variants" in table.data and not variants:
        raise table.fail("variants", "is empty: to grade on the lecture config only, set "
                                     "enabled = false")
    table.finish()
    hidden = HiddenConfigs(enabled=enabled, seed=seed, exercise4=exercise4,
                           variants=variants or default.variants, configs=configs)
    try:
        resolve_hidden_configs(lecture, hidden)
    except ValueError as e:
        raise AssignmentError(f"{table.file}: [hidden]: {e}") from None
    return hidden


def _limits(table: Table) -> Limits:
    default = Limits()
    changes: dict[str, Any] = {}
    units = {"memory_mb": ("memory_bytes", 2**20), "output_kb": ("output_bytes", 1024)}
    for key, (name, scale) in units.items():
        value = table.number(key, None)
        if value is not None:
            changes[name] = int(value * scale)
    for f in fields(Limits):
        value = getattr(default, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if f.name in changes:   # given in friendlier units above
            if f.name in table.data:
                friendly = next(k for k, (n, _) in units.items() if n == f.name)
                raise table.fail(f.name, f"and '{table.key(friendly)}' are both given: keep one")
            continue
        got = table.number(f.name, None, integer=isinstance(value, int))
        if got is not None:
            changes[f.name] = type(value)(got)
    table.finish()
    return replace(default, **changes)


def parse_assignment(data: Mapping[str, Any], *, file: str = "assignment.toml",
                     base_dir: Path | None = None) -> Assignment:
    """Check a parsed TOML document and build the assignment it describes."""
    top = Table(data, "", file)
    title = top.get("title", str, Assignment.title)
    words = top.get("words", str, None)
    if words is not None:
        words_path = (base_dir or Path(".")) / words
        if not words_path.is_file():
            raise top.fail("words", f"names {str(words_path)!r}, which is not a file")
        lecture = lecture_config(words_path)
    else:
        lecture = Config()
    exercises = _names(top, "exercises", tuple(EXERCISES), GradingOptions().exercises)
    modes = _names(top, "modes", MODES, GradingOptions().modes)
    points = _points(top.table("points"))

    tol = top.table("tolerance")
    base_tol = Tolerance()
    tolerance = Tolerance(**{f.name: float(tol.number(f.name, getattr(base_tol, f.name)))
                             for f in fields(Tolerance) if f.name != "strict_shapes"},
                          strict_shapes=tol.get("strict_shapes", bool, base_tol.strict_shapes))
    exact = tol.get("exact_required", (list, str), [])
    if isinstance(exact, str):
        if exact != "all":
            raise tol.fail("exact_required", f"is {exact!r}: give a list of gradients or \"all\"")
        exact_required = frozenset(_BY_NAME)
    else:
        exact_required = frozenset(_names(tol, "exact_required", tuple(_BY_NAME), ()))
    tol.finish()

    training = top.table("training")
    steps = training.number("steps", GradingOptions().train_steps, integer=True)
    lr = float(training.number("lr", GradingOptions().train_lr))
    training.finish()

    hidden = _hidden(top.table("hidden"), lecture)
    integrity = top.table("integrity")
    autograd = integrity.choice("autograd", POLICIES, "zero")
    integrity.finish()
    limits = _limits(top.table("limits"))
    gs = top.table("gradescope")
    gradescope = GradescopeSettings(
        visibility=gs.choice("visibility", VISIBILITIES, GradescopeSettings.visibility),
        stdout_visibility=gs.choice("stdout_visibility", VISIBILITIES,
                                    GradescopeSettings.stdout_visibility))
    gs.finish()
    top.finish()

    options = GradingOptions(modes=modes, tolerance=tolerance, train_steps=steps, train_lr=lr,
                             exact_required=exact_required, points=points, exercises=exercises,
                             integrity_policy=autograd)
    request = GradeRequest(config=lecture, hidden=hidden, options=options, limits=limits)
    return Assignment(request=request, title=title, integrity_autograd=autograd,
                      gradescope=gradescope, source=file, words=words)


def load_assignment(path: str | Path) -> Assignment:
    """Read an assignment TOML file; every problem is an ``AssignmentError`` naming the file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise AssignmentError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise AssignmentError(f"{p}: is a folder, expected an assignment .toml file") from None
    except OSError as e:
        raise AssignmentError(f"{p}: cannot read: {e.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise AssignmentError(f"{p}: not UTF-8 text (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise AssignmentError(f"{p}: not valid TOML: {e}") from None
    return parse_assignment(data, file=str(p), base_dir=p.parent)
