"""The package's layers: one job per package, imports pointing one way, small modules.

Every import of a grader module counts, at module level or inside a function (a function-level
import is still an arrow: it only moves the moment the cycle bites). ``grader/__init__.py``'s
lazy re-exports of the public API are strings, not imports, and stay outside the graph.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "grader"
MAX_LINES = 450

# what each package may import (besides itself and grader/__init__.py, which imports nothing);
# the top-level modules (api, cli, ...) are the face and may import any package, but no package
# imports them except batch, which grades through api and reads assignment settings
ALLOWED: dict[str, set[str]] = {
    "grader.lecture": set(),
    "grader.submissions": {"grader.lecture"},
    "grader.sandbox.worker": {"grader.lecture", "grader.sandbox.wire", "grader.sandbox.limits"},
    "grader.sandbox": {"grader.lecture", "grader.sandbox.worker"},
    "grader.output": {"grader.lecture"},
    "grader.judge": {"grader.lecture", "grader.submissions", "grader.sandbox", "grader.output"},
    "grader.batch": {"grader.lecture", "grader.submissions", "grader.sandbox", "grader.output",
                     "grader.judge", "grader.api", "grader.assignment"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(current: str, is_package: bool, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def grader_imports(module: str) -> set[str]:
    """The grader modules ``module`` imports, anywhere in its body."""
    path = MODULES[module]
    tree = ast.parse(path.read_text("utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, path.name == "__init__.py", node.level, node.module)
            # `from .pkg import mod` imports the module pkg.mod when there is one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:     # `import grader.x.y` names a module
                target = target.rpartition(".")[0]
            if target.startswith("grader") and target != module:
                found.add(target)
    return found


GRAPH = {m: grader_imports(m) for m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def _package_of(module: str) -> str | None:
    """The most specific package of ALLOWED that holds ``module``."""
    holders = [p for p in ALLOWED if module == p or module.startswith(p + ".")]
    return max(holders, key=len) if holders else None


def test_no_module_imports_itself_back_through_others():
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_the_layers_below_it(package):
    wrong = []
    for module, targets in GRAPH.items():
        if _package_of(module) != package:
            continue
        for target in targets:
            home = _package_of(target)
            allowed = home == package or target == "grader" or any(
                target == a or target.startswith(a + ".") for a in ALLOWED[package])
            if not allowed:
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_no_module_is_longer_than_the_limit():
    long = {m: n for m, p in MODULES.items()
            if (n := len(p.read_text("utf-8").splitlines())) > MAX_LINES}
    assert long == {}


_SEEN_BY_STUDENT = """
import json, sys
print(json.dumps(sorted(m for m in sys.modules if m.startswith("grader") or m == "nbformat")))
"""


def test_a_students_file_sees_only_the_worker_side_of_the_grader_loaded():
    """What the worker imported is what a submission's process has: the lecture, the wire
    format, the limits and the worker's own modules; never the judge, the readers of
    submissions, the outputs or the batch, nor nbformat. A fresh worker: nothing else of the
    test session's reaches it."""
    from grader.sandbox.limits import Limits
    from grader.sandbox.runner import SandboxRunner
    from grader.sandbox.session import SandboxSession

    with SandboxRunner() as runner:
        session = SandboxSession(_SEEN_BY_STUDENT, "seen.py", Limits(), runner=runner)
        try:
            assert session.start().status == "ok"
        finally:
            session.close()
    loaded = json.loads(session.output().strip().splitlines()[-1])
    assert "grader.sandbox.worker.child" in loaded      # the check can see the worker's modules
    assert "nbformat" not in loaded
    for package in ("grader.judge", "grader.submissions", "grader.output", "grader.batch",
                    "grader.api"):
        assert [m for m in loaded if m == package or m.startswith(package + ".")] == []


def test_reading_submissions_and_writing_outputs_import_no_torch():
    """The readers never run what they read, and a report renders from saved JSON alone: neither
    needs torch (1.5 s to import), nor does anything they import."""
    code = ("import sys\n"
            "import grader.output.report, grader.output.exports, grader.output.terminal\n"
            "import grader.submissions.loader, grader.submissions.lecture_source\n"
            "import grader.submissions.discovery, grader.lecture.catalog\n"
            "print('torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    assert done.stdout.strip() == "False"


def test_the_lecture_package_offers_every_public_name_of_the_model():
    import grader.lecture
    import grader.lecture.model

    assert sorted(grader.lecture.__all__) == sorted(grader.lecture.model.__all__)
    assert grader.lecture.Config is grader.lecture.model.Config
