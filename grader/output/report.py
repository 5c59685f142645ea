"""HTML reports: one page per submission and one class summary, from results alone.

Everything goes through the jinja2 templates under ``grader/output/templates/`` with autoescaping on:
a student's output, messages and tracebacks appear as text. The pages are self-contained (inline
CSS, inline SVG heatmaps and charts, no network: a Content-Security-Policy forbids every fetch and
every script but our own) and read fine with JavaScript off; a small script sorts tables and
expands or collapses the details.

This module only reads ``Result`` objects (or saved results JSON): it never runs any code.
"""

from __future__ import annotations

import base64
import collections
import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2
from markupsafe import Markup

from .formatting import EXERCISE_TITLES, page_number, page_points
from .heatmap import Heatmap, heatmaps
from .results import PASSING, SCHEMA, GradientResult, Result, read_result, write_atomic

__all__ = ["ReportSet", "find_results", "render_report", "render_summary", "template_environment",
           "write_report", "write_reports"]

_TEMPLATES = Path(__file__).resolve().parent / "templates"
_MAX_OUTPUT = 20_000          # characters of captured output shown (the tail)
_MAX_TRACEBACK_LINES = 40

# Status: a word, a symbol and a CSS class, so that colour is never the only cue.
_STATUS = {
    "exact": ("exact", "✓"), "approx": ("approximate", "≈"), "wrong": ("wrong", "✗"),
    "shape": ("wrong shape", "▭"), "nonfinite": ("NaN / inf", "∞"), "error": ("error", "!"),
    "missing": ("missing", "–"), "integrity": ("integrity", "⚑"), "timeout": ("timeout", "⚠"),
    "graded": ("graded", "✓"), "review": ("held for review", "⚐"),
}


# ---------------------------------------------------------------- page data


def _anchor(exercise: str, gradient: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{exercise}-{gradient}")


def _trim_traceback(text: str | None) -> str | None:
    if not text:
        return None
    lines = text.rstrip().splitlines()
    if len(lines) > _MAX_TRACEBACK_LINES:
        cut = len(lines) - _MAX_TRACEBACK_LINES
        lines = [f"... ({cut} earlier lines cut)"] + lines[-_MAX_TRACEBACK_LINES:]
    return "\n".join(lines)


def _trim_output(text: str) -> tuple[str, int]:
    if len(text) <= _MAX_OUTPUT:
        return text, 0
    return text[-_MAX_OUTPUT:], len(text) - _MAX_OUTPUT


def _limits_hit(result: Result) -> list[str]:
    """The sandbox limits this submission ran into: the calls that hit one (each verdict names
    its limit), the output cut and the restarts (notes)."""
    hits: list[str] = []
    if result.status == "timeout":
        hits.append(result.message or "the submission ran out of time")
    seen: set[str] = set()
    for ex in result.exercises:
        for g in ex.gradients:
            for c in g.configs:
                m = c.message or f"{c.limit} limit"
                if c.limit and m not in seen:
                    seen.add(m)
                    hits.append(m if m.startswith(g.name) else f"{g.name}: {m}")
    hits += [n for n in result.notes if "restarted" in n or "(limit: output bytes)" in n]
    return hits


def _mode_verdicts(g: GradientResult) -> dict[str, object]:
    return {m.mode: m for m in g.modes}


@dataclass(frozen=True)
class _GradientView:
    ex: str
    anchor: str
    g: GradientResult
    modes: dict[str, object]
    heatmaps: tuple[Heatmap, ...]
    traceback: str | None
    is_first_wrong: bool


class _PerStatus(dict[str, Markup]):
    """A macro of _macros.html.j2 that takes a status, rendered once per known status: a report
    shows a badge in every row of its tables, the class summary a mark in each of its
    students × gradients cells, and a macro call costs more than the rest of the row."""

    def __init__(self, macro: str) -> None:
        super().__init__()
        self.macro = macro

    def __missing__(self, status: str) -> Markup:
        markup = getattr(template_environment().get_template("_macros.html.j2").module,
                         self.macro)(status)
        if status in _STATUS:     # any other status (a hand-edited JSON) is not kept
            self[status] = markup
        return markup


class _StatusText(dict[str, str]):
    """A status's word or symbol (``part`` 0 or 1 of _STATUS); an unknown status (a
    hand-edited JSON) reads as itself, with "?" for its symbol. A lookup, not a function: the
    class summary asks once per cell."""

    def __init__(self, part: int) -> None:
        super().__init__({status: texts[part] for status, texts in _STATUS.items()})
        self.part = part

    def __missing__(self, status: str) -> str:
        return (status, "?")[self.part]


_STATUS_WORDS, _STATUS_SYMBOLS = _StatusText(0), _StatusText(1)


@functools.lru_cache(maxsize=1)
def template_environment() -> jinja2.Environment:
    """The templates under grader/output/templates/, once per process (the report, the class summary,
    check()'s notebook view)."""
    # auto_reload off: the templates are package files, so no stat() per template per render
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, auto_reload=False)
    env.filters["num"] = page_number
    env.filters["score"] = page_points
    env.filters["yesno"] = lambda flag: "yes" if flag else "no"
    env.filters["shape"] = lambda s: "–" if s is None else "(" + ", ".join(map(str, s)) + \
        ("," if len(s) == 1 else "") + ")"
    env.globals["status_words"] = _STATUS_WORDS
    env.globals["status_symbols"] = _STATUS_SYMBOLS
    env.globals["passing"] = PASSING
    env.globals["badges"] = _PerStatus("badge")
    env.globals["matrix_marks"] = _PerStatus("matrix_mark")
    script = (_TEMPLATES / "page.js").read_text("utf-8")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    env.globals["script"] = Markup(script)
    env.globals["csp"] = (f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                          f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'")
    return env


def render_report(result: Result, *, student: str | None = None,
                  summary_href: str | None = None) -> str:
    """One submission's report: scores, first wrong step, every gradient, pictures of failures.

    ``student`` is shown beside the submission's name (an id from the course platform);
    ``summary_href`` links back to the class summary.
    """
    gradients = []
    for ex in result.exercises:
        for g in ex.gradients:
            anchor = _anchor(ex.name, g.name)
            gradients.append(_GradientView(
                ex.name, anchor, g, _mode_verdicts(g),
                heatmaps(g, anchor) if g.views else (),
                _trim_traceback(g.traceback),
                g.name == result.first_wrong and ex.name != "ex4"))
    first_wrong = next((gv for gv in gradients if gv.is_first_wrong), None)
    output, cut = _trim_output(result.output)
    return template_environment().get_template("report.html.j2").render(
        r=result, student=student, summary_href=summary_href, gradients=gradients,
        exercise_titles=EXERCISE_TITLES, first_wrong=first_wrong, limits=_limits_hit(result),
        output=output, output_cut=cut, percent=_percent(result.score, result.max_score))


# ---------------------------------------------------------------- class summary


def _percent(score: float, max_score: float) -> float:
    return 100.0 * score / max_score if max_score else 0.0


@dataclass(frozen=True)
class _Column:
    key: tuple[str, str]       # (exercise, gradient)
    label: str
    passed: int
    graded: int

    @property
    def rate(self) -> float:
        return 100.0 * self.passed / self.graded if self.graded else 0.0


@dataclass(frozen=True)
class _Bar:
    label: str
    count: int
    x: float
    y: float
    height: float


def _histogram(percents: list[float], *, bins: int = 10, height: float = 120.0,
               bar: float = 40.0) -> tuple[list[_Bar], int]:
    counts = [0] * bins
    for p in percents:
        counts[min(bins - 1, max(0, int(p / (100 / bins))))] += 1
    top = max(counts, default=0) or 1
    step = 100 // bins
    bars = []
    for i, c in enumerate(counts):
        h = height * c / top
        label = f"{i * step}–{(i + 1) * step}%"
        bars.append(_Bar(label, c, i * (bar + 8) + 40, height - h + 10, h))
    return bars, top


@dataclass(frozen=True)
class _Row:
    r: Result
    link: str | None
    note: str | None                                  # tells apart submissions of one name
    cells: dict[tuple[str, str], GradientResult]
    percent: float
    failing: int


def render_summary(results: Sequence[Result], *, links: Mapping[str, str] | None = None,
                   title: str = "Class summary") -> str:
    """The class at a glance: score histogram, pass rate per gradient, students × gradients,
    a sortable table linking to each report (``links``: submission -> href), and the submissions
    that could not be graded, with why."""
    links = links or {}
    return _render_summary(results, [links.get(r.submission) for r in results],
                           [None] * len(results), title=title)


def _render_summary(results: Sequence[Result], row_links: Sequence[str | None],
                    row_notes: Sequence[str | None], *, title: str) -> str:
    rows = []
    columns: dict[tuple[str, str], list[int]] = {}
    for r, link, note in zip(results, row_links, row_notes):
        mine: dict[tuple[str, str], GradientResult] = {}
        if r.status == "graded":
            for ex in r.exercises:
                for g in ex.gradients:
                    key = (ex.name, g.name)
                    mine[key] = g
                    tally = columns.setdefault(key, [0, 0])
                    tally[0] += g.passed
                    tally[1] += 1
        rows.append(_Row(r, link, note, mine, _percent(r.score, r.max_score),
                         sum(not g.passed for g in mine.values())))
    rows.sort(key=lambda row: (row.r.submission.lower(), row.note or ""))
    graded = [row for row in rows if row.r.status == "graded"]
    cols = [_Column(k, k[1] if k[0] in ("ex1", "ex2", "ex3") else f"{k[0]}: {k[1]}", v[0], v[1])
            for k, v in columns.items()]
    hardest = sorted(range(len(cols)), key=lambda i: (cols[i].rate, i))
    # students x gradients: each cell's status and the end of its title, worked out here
    # (cheaper than lookups per cell in the template; a class of 1,000 has 36,000 cells)
    matrix = [(row, [(g.status, f"{c.label} {_STATUS_WORDS[g.status]}")
                     if (g := row.cells.get(c.key))
                     else (None, f"{c.label} not graded") for c in cols]) for row in graded]
    percents = [row.percent for row in graded]
    bars, top = _histogram(percents)
    mean = sum(percents) / len(percents) if percents else 0.0
    median = sorted(percents)[len(percents) // 2] if percents else 0.0
    return template_environment().get_template("summary.html.j2").render(
        title=title, rows=rows, graded=graded, matrix=matrix,
        review=[row for row in rows if row.r.status == "review"],
        ungraded=[row for row in rows if row.r.status not in ("graded", "review")], columns=cols,
        hardest=[cols[i] for i in hardest], bars=bars, bar_top=top, mean=mean, median=median,
        full=sum(1 for row in graded if row.r.all_passed))


# ---------------------------------------------------------------- a folder of reports


@dataclass(frozen=True)
class ReportSet:
    """What ``write_reports`` wrote: the summary page and one page per submission."""

    summary: Path
    reports: tuple[Path, ...]      # one per results file, in the order given
    unreadable: tuple[str, ...]    # results files that could not be read, with why


def _safe_name(name: str, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).strip("._") or "submission"
    candidate, i = stem, 2
    while candidate.lower() in taken or candidate.lower() in ("index", "summary"):
        candidate, i = f"{stem}-{i}", i + 1
    taken.add(candidate.lower())
    return candidate


def write_reports(results_paths: Iterable[str | Path], out_dir: str | Path) -> ReportSet:
    """Render a report per saved results JSON and the class summary into ``out_dir``.

    Runs no submission code: everything comes from the JSON. A file that is not a readable
    results JSON is listed in the summary as not graded, with the reason.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    unreadable: list[str] = []
    sources: list[Path] = []
    for path in map(Path, results_paths):
        sources.append(path)
        try:
            results.append(read_result(path))
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else \
                "not valid JSON" if isinstance(e, json.JSONDecodeError) else str(e) or type(e).__name__
            unreadable.append(f"{path}: {reason}")
            results.append(Result(submission=path.name, status="error",
                                  message=f"could not read the results file: {reason}",
                                  score=0.0, max_score=0.0, mode="isolated", loss=None))
    taken: set[str] = set()
    names = [r.submission for r in results]
    hrefs: list[str | None] = []
    reports: list[Path] = []
    for result in results:
        name = _safe_name(result.submission, taken) + ".html"
        hrefs.append(name)
        reports.append(out / name)
        write_atomic(out / name, render_report(result, summary_href="index.html"))
    seen = collections.Counter(names)
    notes = [str(p) if seen[n] > 1 else None for p, n in zip(sources, names)]
    summary = out / "index.html"
    write_atomic(summary, _render_summary(results, hrefs, notes, title="Class summary"))
    return ReportSet(summary, tuple(reports), tuple(unreadable))


def write_report(result: Result, path: str | Path) -> Path:
    """Render one submission's report to ``path`` (atomically)."""
    target = Path(path)
    write_atomic(target, render_report(result))
    return target


def _looks_like_result(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(256)
    except OSError:
        return False
    # a results file starts with its schema (result_to_dict puts it first); other JSON that
    # mentions the schema further in (a batch's gradescope.json) is not one
    return re.match(rb'\s*\{\s*"schema"\s*:\s*"' + re.escape(SCHEMA.encode()) + rb'"', head) is not None


def find_results(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders searched for results JSON (other JSON, e.g. exports, skipped)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += [f for f in sorted(p.rglob("*.json")) if _looks_like_result(f)]
        else:
            found.append(p)
    return found
