"""One run of lecture-style code in the sandbox: the request a program becomes, and the reply
checked.

The statements grader.submissions.lecture_source picked out run in the child (op "lecture",
grader.sandbox.worker.lecture_code) with the grader's forward tensors, parameters, sizes and,
where the student's own cannot be used, autograd's gradients substituted after a step. The reply
says, per step, what raised, and holds each gradient as it was right after the statements that
compute it, what cmp() was given, and what was changed in place.
"""

from __future__ import annotations

import marshal
import threading
import warnings
from dataclasses import dataclass
from types import CodeType
from typing import Any

import torch

from ..lecture.model import FORWARD_NAMES, PARAMETER_NAMES, LectureState
from ..sandbox.session import CallOutcome
from ..sandbox.worker.lecture_code import compile_step, compiled_steps
from ..submissions.kept import KeptByText
from ..submissions.lecture_source import LectureProgram

__all__ = ["LecturePlan", "LectureRun", "Substituted", "parse_reply"]

_MAX_FILES_BYTES = 1_000_000      # cell texts sent along for tracebacks
_INPUT_NAMES = frozenset((*FORWARD_NAMES, *PARAMETER_NAMES, "Xb", "Yb"))

# Each step's code, compiled here and sent along, by its line and text: most steps of a class are
# the same few lines, which a child would otherwise compile again for every student. Only a
# short step whose code stays small: compile() runs here without the child's limits, and folds
# constants (a few characters can make a large one); a step compile() warns about is left to
# the child too, where the warning is the student's output. False: the child compiles it.
_MAX_STEP_CHARS = 2_000
_MAX_STEP_CODE_BYTES = 32 * 1024
_MAX_COMPILED_BYTES = 1 << 20         # a request's compiled steps, all together
_STEP_CODE: KeptByText[tuple[CodeType, int] | bool] = KeptByText(4096)
_CATCHING_WARNINGS = threading.Lock()   # warnings.catch_warnings changes the whole process's


def _step_code(line: int, code: str) -> tuple[CodeType, int] | None:
    if len(code) > _MAX_STEP_CHARS:
        return None

    def make(_: str) -> tuple[CodeType, int] | bool:
        with _CATCHING_WARNINGS, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                found = compile_step("<step>", line, code)
            except Exception:  # noqa: BLE001  a step that does not compile raises in the child
                return False
        if caught or len(marshal.dumps(found[0])) > _MAX_STEP_CODE_BYTES:
            return False
        return found
    return _STEP_CODE.of(f"{line}:{code}", make) or None


def _compiled(program: LectureProgram) -> bytes:
    steps = [program.statement(i) for i in program.run]
    blob = compiled_steps(((st.file, st.line, st.code) for st in steps), _step_code)
    return blob if len(blob) <= _MAX_COMPILED_BYTES else marshal.dumps({})


# gradient name -> (the step position after which autograd's replaces it, -1: from the start;
# the variables that take it)
Substituted = dict[str, tuple[int, list[str]]]


@dataclass(frozen=True)
class LecturePlan:
    """The request a program becomes: steps in order, where to read each gradient."""

    program: LectureProgram
    positions: dict[int, int]                # statement index -> step position
    compiled: bytes                          # the steps' code (worker.lecture_code.compiled_steps)

    @classmethod
    def of(cls, program: LectureProgram) -> LecturePlan:
        return cls(program, {index: position for position, index in enumerate(program.run)},
                   _compiled(program))

    def record_key(self, k: int) -> str:
        return f"r{k}"

    def step_where(self, position: int) -> str:
        st = self.program.statement(self.program.run[position])
        return st.where()

    def step_text(self, position: int) -> str:
        return self.program.statement(self.program.run[position]).first_line_text()

    def request(self, state: LectureState, substituted: Substituted
                ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """The request's header and tensors for a run in ``state``'s config."""
        inputs = {**state.forward, **state.params, "Xb": state.Xb, "Yb": state.Yb}
        tensors = dict(inputs)
        # bytes travel as int32 (the wire's smallest integer), zeros after them (marshal stops
        # at its end)
        tensors["compiled"] = torch.frombuffer(
            bytearray(self.compiled) + bytes(-len(self.compiled) % 4), dtype=torch.int32)
        substitutions = []
        for k, (name, (after, names)) in enumerate(sorted(substituted.items())):
            key = f"s{k}"
            tensors[key] = state.grads[name]
            substitutions.append((after, names, key))
        return self._meta(state, list(inputs), substitutions), tensors

    def _meta(self, state: LectureState, inputs: list[str],
              substitutions: list[tuple[int, list[str], str]]) -> dict[str, Any]:
        program = self.program
        files = {program.statement(i).file for i in program.run}
        texts = {f: program.files[f] for f in sorted(files)}
        if sum(len(t) for t in texts.values()) > _MAX_FILES_BYTES:
            texts = {}
        config = state.config
        return {
            "op": "lecture",
            "files": texts,
            "steps": [{"file": program.statement(i).file, "line": program.statement(i).line,
                       "code": program.statement(i).code, "capture": i in program.captures}
                      for i in program.run],
            "records": [{"after": self.positions[src.steps[-1]], "var": src.var,
                         "key": self.record_key(k)} for k, src in enumerate(program.sources)],
            "aliases": dict(program.aliases),
            "sizes": dict(program.sizes),
            "checker": program.checker,
            "scalars": {"n": config.n, "batch_size": config.n, "vocab_size": state.vocab_size,
                        "n_embd": config.n_embd, "n_hidden": config.n_hidden,
                        "block_size": config.block_size},
            "inputs": inputs,
            "substitute": [{"after": after, "vars": names, "key": key}
                           for after, names, key in substitutions],
        }


@dataclass
class LectureRun:
    """One run of the program in one config: what came back, checked."""

    errors: dict[int, dict[str, Any]]        # step position -> kind, message, traceback, limit
    records: dict[str, torch.Tensor]         # record key -> tensor
    problems: dict[str, dict[str, Any]]      # record key -> problem, detail
    modified: dict[str, int]                 # record key -> position of the step that changed it
    captures: list[tuple[int, str | None, str | None, torch.Tensor]]  # step, label, input, value
    changed_inputs: dict[str, int]           # grader tensor -> step that changed it in place


def parse_reply(outcome: CallOutcome, plan: LecturePlan) -> LectureRun:
    """Check what the child sent: it runs student code, so nothing in it is trusted."""
    reply = _Reply(outcome.meta, len(plan.program.run))
    tensors = outcome.tensors
    keys = {plan.record_key(k) for k in range(len(plan.program.sources))}
    problems = _problems(reply, keys)
    return LectureRun(
        errors=_errors(reply),
        records={k: tensors[k] for k in keys if k in tensors and k not in problems},
        problems=problems,
        modified=_modified(reply, keys),
        captures=_captures(reply, tensors),
        changed_inputs=_changed_inputs(reply))


@dataclass(frozen=True)
class _Reply:
    """The reply's header, read defensively."""

    meta: dict[str, Any]
    steps: int

    def items(self, name: str) -> list[dict[str, Any]]:
        value = self.meta.get(name)
        return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []

    def position(self, x: dict[str, Any]) -> int | None:
        p = x.get("step")
        return p if isinstance(p, int) and 0 <= p < self.steps else None


def _errors(reply: _Reply) -> dict[int, dict[str, Any]]:
    errors: dict[int, dict[str, Any]] = {}
    for e in reply.items("errors"):
        p = reply.position(e)
        if p is not None and p not in errors:
            errors[p] = {"kind": "missing" if e.get("kind") == "missing" else "error",
                         "message": str(e.get("message", "raised an exception"))[:500],
                         "traceback": str(e.get("traceback", ""))[:4000],
                         "limit": str(e["limit"])[:40] if e.get("limit") else None}
    return errors


def _problems(reply: _Reply, keys: set[str]) -> dict[str, dict[str, Any]]:
    problems = {}
    for r in reply.items("problems"):
        key = r.get("key")
        if key in keys:
            problems[key] = {"problem": str(r.get("problem", ""))[:40],
                             "detail": str(r.get("detail", ""))[:200],
                             "shape": [int(d) for d in r.get("shape", []) if isinstance(d, int)]
                             if isinstance(r.get("shape"), list) else None}
    return problems


def _modified(reply: _Reply, keys: set[str]) -> dict[str, int]:
    modified = {}
    for m in reply.items("modified"):
        p, key = reply.position(m), m.get("key")
        if p is not None and key in keys:
            modified[key] = p
    return modified


def _captures(reply: _Reply, tensors: dict[str, torch.Tensor]
              ) -> list[tuple[int, str | None, str | None, torch.Tensor]]:
    captures = []
    for c in reply.items("cmp"):
        p, key = reply.position(c), c.get("key")
        if p is None or not isinstance(key, str) or key not in tensors:
            continue
        label = c.get("label") if isinstance(c.get("label"), str) else None
        given = c.get("input") if isinstance(c.get("input"), str) else None
        captures.append((p, label, given, tensors[key]))
    return captures


def _changed_inputs(reply: _Reply) -> dict[str, int]:
    changed: dict[str, int] = {}
    for c in reply.items("changed_inputs"):
        p, name = reply.position(c), c.get("input")
        if p is not None and name in _INPUT_NAMES and name not in changed:
            changed[name] = p
    return changed
