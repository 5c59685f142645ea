"""Plain-text rendering of a Result for the terminal: one row per gradient, backward order."""

from __future__ import annotations

import os
from typing import Callable, TextIO

from .control_chars import escape_control_chars
from .formatting import EXERCISE_TITLES, REVIEW_WHY, table_maxdiff, withheld_text
from .results import GradientResult, Result

__all__ = ["render_text", "use_color"]

_COLORS = {"exact": "32", "approx": "36", "wrong": "31", "shape": "31", "nonfinite": "31",
           "error": "35", "missing": "33", "integrity": "35", "review": "35"}


def use_color(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def _yn(flag: bool) -> str:
    return "yes" if flag else "no"


def _mode_status(g: GradientResult, mode: str) -> str:
    for m in g.modes:
        if m.mode == mode:
            return m.status
    return "-"


def render_text(result: Result, *, color: bool = False, verbose: bool = False) -> str:
    """The self-check table, totals per exercise, the first wrong step and the messages. What
    came from the submission (its name, messages, tracebacks, what it printed) is shown with its
    control characters escaped: only the grader's own colours reach the terminal."""
    one_line = escape_control_chars

    def paint(status: str, text: str) -> str:
        return f"\033[{_COLORS.get(status, '0')}m{text}\033[0m" if color else text

    lines = [f"backprop-grader {result.grader_version}: {one_line(result.submission)}"]
    if result.loss is not None:
        lines.append(f"forward loss (lecture config): {result.loss!r}")
    flags = [paint("integrity", one_line(f"INTEGRITY {flag.kind}: {flag.detail}"))
             for flag in result.integrity]
    review = _review_lines(result, paint)
    lines += review
    if result.status not in ("graded", "review"):
        lines.append(paint("error", one_line(f"cannot grade: {result.message}")))
        lines += flags
        if result.output.strip():
            lines += ["", "your code printed:", _indent_text(result.output.strip()[-2000:])]
        return "\n".join(lines) + "\n"
    lines += flags
    lines.append(_configs_line(result))
    header = f"{'gradient':<16} {'status':<9} {'exact':<5} {'approx':<6} {'allclose':<8} " \
             f"{'maxdiff':<8} {'isolated':<9} {'chained':<9} {'points':>7}"
    last_reason = None
    for ex in result.exercises:
        lines += ["", EXERCISE_TITLES.get(ex.name, ex.name), header, "-" * len(header)]
        for g in ex.gradients:
            status = paint(g.status, f"{g.status:<9}")
            lines.append(f"{one_line(g.name):<16} {status} {_yn(g.exact):<5} {_yn(g.approx):<6} "
                         f"{_yn(g.allclose):<8} {table_maxdiff(g.maxdiff):<8} "
                         f"{_mode_status(g, 'isolated'):<9} {_mode_status(g, 'chained'):<9} "
                         f"{g.points:>3g}/{g.max_points:<3g}")
            details = [m for m in (g.message, g.explanation, g.hint and f"hint: {g.hint}") if m]
            traceback = ""
            if g.status not in ("exact", "approx") or verbose:
                if g.traceback and g.status == "error":
                    traceback = g.traceback.strip()
            elif g.status == "approx":
                # why it is approximate, and that its shape is not the tensor's when it is not
                details = [d for d in details if d is g.explanation
                           or (d is g.message and g.shape_differs)]
            if g.explanation and g.explanation in details:
                reason, _, rest = g.explanation.partition("; largest distance")
                if reason == last_reason and rest:
                    details[details.index(g.explanation)] = f"(as above) largest distance{rest}"
                last_reason = reason
            lines += ["    " + one_line(d) for d in details]
            if traceback:
                lines.append(_indent_text(traceback, "    "))
        lines.append(f"{'':<16} {'':>62} {ex.score:>3g}/{ex.max_score:<3g}")
    lines.append("")
    elsewhere = [one_line(g.name) for g in result.gradients() if _failed_elsewhere(g, result.mode)]
    if elsewhere:
        lines.append(paint("wrong", f"right in the lecture config but wrong in a hidden config "
                                    f"or with random upstream gradients: {', '.join(elsewhere)} "
                                    "(see their messages)"))
    if result.first_wrong:
        lines.append(paint("wrong", f"first wrong step (isolated mode): {one_line(result.first_wrong)}: "
                                    "fix this one first, the ones after it may follow"))
    for note in result.notes:
        lines.append(f"note: {one_line(note)}")
    total = f"total: {result.score:g} / {result.max_score:g}"
    lines.append(paint("exact" if result.all_passed else "wrong", total +
                       ("  (all passed)" if result.all_passed else "")))
    if review:                          # last too: the line a student's eye ends on
        lines.append(review[0])
    if result.output.strip() and verbose:
        lines += ["", "your code printed:", _indent_text(result.output.strip()[-4000:])]
    return "\n".join(lines) + "\n"


def _review_lines(result: Result, paint: Callable[[str, str], str]) -> list[str]:
    """A submission held for review: that its score is withheld, and why (first and last)."""
    if result.status != "review":
        return []
    withheld = withheld_text(result.withheld_score, result.max_score)
    lines = [paint("review", f"HELD FOR REVIEW: score withheld{withheld} until an instructor "
                             f"has looked at it; it {REVIEW_WHY}:")]
    return lines + [paint("review", "    " + escape_control_chars(reason))
                    for reason in result.review]


def _configs_line(result: Result) -> str:
    hidden = len(result.configs) - 1
    if hidden <= 0:
        return f"graded in {result.mode} mode (points), in the lecture config only"
    return (f"graded in {result.mode} mode (points), in the lecture config and {hidden} hidden "
            f"config{'s' if hidden > 1 else ''} (other sizes and seeds): a gradient passes only "
            "if it passes in all of them")


def _failed_elsewhere(g: GradientResult, mode: str) -> bool:
    """Wrong overall, though right in the lecture config (a hidden config or a probe failed)."""
    lecture = next((m for m in g.modes if m.mode == mode), None)
    return not g.passed and lecture is not None and lecture.status in ("exact", "approx")


def _indent_text(text: str, prefix: str = "  ") -> str:
    """Multi-line text from the submission (a traceback, what it printed), its control
    characters escaped, each line indented."""
    return "\n".join(prefix + line
                     for line in escape_control_chars(text, multiline=True).split("\n"))

