"""Autograd use in lecture-style code, at the student's own cell and line.

Two things, both read from the statements grader.submissions.lecture_source picked out:

* the gradient whose statements read autograd's answer (``dhpreact = hpreact.grad``,
  ``torch.autograd.grad(...)``, ``loss.backward()``) instead of computing it: under the "zero"
  policy it gets status "integrity" and no points, and the gradients after it are graded on
  autograd's value in its place (grader.judge.lecture_style substitutes unusable gradients);
* the static flags: every statement that runs is scanned (grader.judge.integrity), and so is an
  autograd call anywhere among the exercise statements; the forward cell before them, which
  calls ``loss.backward()`` in the lecture's own notebook and which the grader never runs, is
  not. Each flag names the cell and line the gradient's message names.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Mapping

from ..output.results import IntegrityFlag
from ..submissions.kept import KeptByNode
from ..submissions.lecture_source import GradientSource, LectureProgram
from ..submissions.statements import Statement
from .grading import GradingOptions, Verdict
from .integrity import flagged_use, integrity_flags, scan_source

__all__ = ["AutogradRead", "autograd_checked", "autograd_read", "lecture_integrity_flags",
           "runtime_autograd"]

_SHOWN = 60
_AUTOGRAD_MODULES = ("autograd", "functorch")
_MAX_FLAGS = 30


@dataclass(frozen=True)
class AutogradRead:
    """Where a gradient's statements take autograd's answer, and how."""

    where: str          # "cell 12, line 40", or "line 117" in a .py file
    code: str           # that line, as written
    what: str           # "hpreact.grad", "torch.autograd.grad(...)", "loss.backward()"

    def message(self) -> str:
        return (f"{self.where}: `{self.code}` reads autograd's answer ({self.what}) instead of "
                "computing it")


def autograd_read(statements: Iterable[Statement], texts: Mapping[str, str]
                  ) -> AutogradRead | None:
    """The first place in ``statements`` (one gradient's) that reads ``.grad`` or calls autograd;
    ``texts``: each statement's file, for the line as written."""
    for st in statements:
        found = sorted((sub.lineno, sub.col_offset, what) for sub in ast.walk(st.node)
                       if (what := _answer_taken(sub)) is not None)
        if found:
            line, _, what = found[0]
            return AutogradRead(_where(st, line), _line_text(texts, st, line), what)
    return None


def autograd_checked(verdict: Verdict, program: LectureProgram, source: GradientSource,
                     options: GradingOptions, *, seen: Mapping[int, str] | None = None
                     ) -> Verdict:
    """``verdict`` for the gradient ``source`` computes: under the "zero" policy, status
    "integrity" and no points where its statements (or the helper lines they read, such as
    ``g = hpreact.grad`` before ``dhpreact = g.clone()``) read autograd's answer, or where the
    run-time watch saw autograd at one of its statements (``seen``: runtime_autograd); under
    "flag", the verdict its value earns, with the same words in front."""
    read = _read_of(program, source)
    if read is not None:
        said = read.message()
    else:
        record = next((seen[i] for i in source.steps if seen and i in seen), None)
        if record is None:
            return verdict
        said = f"computed with autograd ({record})"
    if options.integrity_policy == "zero":
        return Verdict(verdict.gradient, verdict.config, verdict.mode, "integrity",
                       message=f"{said}: the exercise is to derive this gradient by "
                               "hand. Scored 0 (integrity policy 'zero').",
                       substituted=verdict.substituted)
    return replace(verdict, message="; ".join(m for m in (said, verdict.message) if m))


# what autograd_read finds in a gradient's statements depends on the program alone, and each
# gradient is checked after every run of every config: kept per program, by its source
_READS: KeptByNode[dict[str, AutogradRead | None]] = KeptByNode(4)


def _read_of(program: LectureProgram, source: GradientSource) -> AutogradRead | None:
    reads = _READS.of(program, dict)
    if source.gradient.name not in reads:
        reads[source.gradient.name] = autograd_read(_with_helpers(program, source),
                                                    program.files)
    return reads[source.gradient.name]


def runtime_autograd(program: LectureProgram, events: Iterable[Mapping[str, str]]
                     ) -> dict[int, str]:
    """Statement index -> the run-time record of autograd used at one of its lines. The watch
    names a line as "nb.ipynb, cell 7, line 3: ..." (a cell's file, "nb.ipynb [cell 7]", said
    as flags say it) or, in a .py file, "top level, line 117: ..."."""
    found: dict[int, str] = {}
    for event in events:
        detail = str(event.get("detail", ""))
        if event.get("kind") != "autograd":
            continue
        for st in program.statements:
            shown = st.file[:-1].replace(" [", ", ", 1) if st.cell is not None else "top level"
            for line in range(st.line, st.end_line + 1):
                if detail.startswith(f"{shown}, line {line}:"):
                    found.setdefault(st.index, detail)
    return found


def _with_helpers(program: LectureProgram, source: GradientSource) -> list[Statement]:
    """The statements of ``source``, each after the last statement that runs before it and
    binds a name it reads, unless that name holds another gradient (whose own check it is)."""
    gradients = {s.var for s in program.sources}
    out: list[Statement] = []
    for i in source.steps:
        st = program.statement(i)
        for name in sorted(st.reads - gradients):
            helper = next((program.statement(j) for j in reversed(program.run)
                           if j < i and name in program.statement(j).assigns), None)
            if helper is not None and helper not in out:
                out.append(helper)
        out.append(st)
    return out


# what a statement's tree shows depends on the tree alone, and the lecture's statements are the
# same shared nodes in every notebook of a class (grader.submissions.kept)
_USES: KeptByNode[list[tuple[int, str]]] = KeptByNode(8192)
_CALLS: KeptByNode[list[tuple[int, str]]] = KeptByNode(8192)


def _found(node: ast.AST, what_of: Callable[[ast.AST], str | None]) -> list[tuple[int, str]]:
    """(line, what) for every node under ``node`` that ``what_of`` names, sorted, once each."""
    return sorted({(sub.lineno, what) for sub in ast.walk(node)
                   if (what := what_of(sub)) is not None})


def lecture_integrity_flags(program: LectureProgram, *, filename: str, backward_code: str,
                            events: Iterable[Mapping[str, str]]) -> tuple[IntegrityFlag, ...]:
    """The run-time records, then the static flags of the exercise code: the statements that run
    (every flagged use), autograd calls among the exercise statements that do not run, and
    exercise 4's backward() (``backward_code``), each at the student's cell and line."""
    ran = set(program.run)
    steps = [i for src in program.sources for i in src.steps]
    span = range(min(steps), max(steps) + 1) if steps else range(0)
    flags: list[IntegrityFlag] = []
    for st in program.statements:
        if st.index in ran:
            uses = _USES.of(st.node, lambda: _found(st.node, flagged_use))
        elif st.index in span and st.kind != "training":
            uses = _CALLS.of(st.node, lambda: _found(st.node, _autograd_call))
        else:
            continue
        for line, what in uses:
            flag = IntegrityFlag("source", f"{filename}, {_where(st, line)}: {what}: "
                                           f"{_line_text(program.files, st, line)}")
            if flag not in flags:
                flags.append(flag)
    flags += [f for f in _backward_flags(program, filename, backward_code) if f not in flags]
    return integrity_flags(flags[:_MAX_FLAGS], events)


def _backward_flags(program: LectureProgram, filename: str, code: str) -> list[IntegrityFlag]:
    """Flags in exercise 4's backward(), made of the training loop's lines: each at the line of
    the loop it comes from (found by its text), or at the function where none matches."""
    if not code:
        return []
    training = [st for st in program.statements if st.kind == "training"]
    flags = []
    for flag in scan_source(code, filename="backward()"):
        detail = flag.detail.split(": ", 1)[1]            # "calls .backward(): loss.backward()"
        text = detail.split(": ", 1)[1] if ": " in detail else ""
        where = next((_where(st, line) for st in training
                      for line in range(st.line, st.end_line + 1)
                      if text and _line_text(program.files, st, line) == text),
                     "exercise 4's backward lines")
        flags.append(IntegrityFlag("source", f"{filename}, {where}: {detail}"))
    return flags


def _answer_taken(node: ast.AST) -> str | None:
    """How ``node`` takes autograd's answer, shown in the student's terms, if it does:
    reading ``.grad``, calling ``.backward()`` or an autograd function."""
    if isinstance(node, ast.Attribute) and node.attr == "grad" and \
            isinstance(node.ctx, ast.Load) and _dotted(node.value)[-1:] not in (["autograd"],
                                                                               ["func"]):
        return _short(ast.unparse(node))
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "backward":
            return _short(ast.unparse(func)) + "()"
        if _is_autograd(_dotted(func)):
            return _short(ast.unparse(func)) + "(...)"
        if isinstance(func, ast.Name) and func.id == "getattr" and len(node.args) >= 2 and \
                isinstance(node.args[1], ast.Constant) and node.args[1].value == "grad":
            return "getattr(..., 'grad')"
    return None


def _autograd_call(node: ast.AST) -> str | None:
    """What a call of ``.backward()`` or of an autograd function does, as the scan says it."""
    if not isinstance(node, ast.Call):
        return None
    if isinstance(node.func, ast.Attribute) and node.func.attr == "backward":
        return flagged_use(node.func)
    dotted = _dotted(node.func)
    if _is_autograd(dotted):
        return f"calls {'.'.join(dotted)}()"
    return None


def _is_autograd(dotted: list[str]) -> bool:
    """``torch.autograd.grad``, ``autograd.functional.jacobian``, ``torch.func.vjp``, ..."""
    return any(part in _AUTOGRAD_MODULES for part in dotted) or dotted[:2] == ["torch", "func"]


def _dotted(node: ast.AST) -> list[str]:
    """``torch.autograd.grad`` -> ["torch", "autograd", "grad"]; [] for anything else."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return []
    return [node.id, *reversed(parts)]


def _where(st: Statement, line: int) -> str:
    return f"{st.cell}, line {line}" if st.cell else f"line {line}"


def _line_text(texts: Mapping[str, str], st: Statement, line: int) -> str:
    lines = texts.get(st.file, "").splitlines()
    text = lines[line - 1].strip() if 0 < line <= len(lines) else st.first_line_text()
    return _short("".join(c if c.isprintable() else "?" for c in text))


def _short(text: str) -> str:
    return text if len(text) <= _SHOWN else text[:_SHOWN - 3] + "..."
