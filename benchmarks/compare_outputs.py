"""Prove that a refactor of ``grader/`` changes no output: same class, two trees, file by file.

    python3 benchmarks/compare_outputs.py make-class DIR [--src TREE]
    python3 benchmarks/compare_outputs.py grade TREE CLASS OUT
    python3 benchmarks/compare_outputs.py compare A B [--same-code A2]

``make-class`` writes a fixed class of 107 students (plus a README.md that ``grade`` skips) read
from the repository ``--src`` (default: this script's own): the solution; the stubs
(``exercises/backprop.py`` and ``.ipynb``); every file of ``tests/submissions/{mistakes,wrong,
alternatives,hidden,broken,hostile}`` appended to the solution, as the tests' ``with_overrides``
does (the hostile placeholders become a port nobody listens on and paths in and beside DIR);
``lecture/*.py`` and ``notebooks/*.ipynb`` as they are; four that cannot be graded (syntax error,
garbage and non-JSON ``.ipynb``, empty file); three folders (one file, one nested with a stray
script, one ambiguous) and three zips (a .py, a notebook in a subfolder, a broken one). Ids name
the source: ``hostile__fork_bomb``. No hostile file is left out: with ``call_seconds = 2`` the
loops cost seconds. The bytes depend on DIR only, not on the tree they were read from.

``grade`` runs ``python3 -m grader grade CLASS --out OUT --jobs 2 --regrade --config CFG`` in TREE
with ``PYTHONPATH=TREE`` (the working folder comes first on ``sys.path``, so it must be TREE too),
CFG being ``[limits] call_seconds = 2``, and prints which ``grader`` ran and the wall time.

``compare`` compares every file in two output folders (``gradebook.csv``, ``summary.html``,
``batch.json``, ``.lock``, ``students/*/{results,gradescope,record}.json`` and ``report.html``)
as bytes after normalising, on both sides, only what is printed under "normalised": versions,
``record.json``'s ``seconds`` and ``config_sha256`` (a hash of grader/'s own source files: it
changes with any edit, by design). Output that depends on timing with identical code is reported
under "unstable across runs of the same code", never hidden: the fork bomb's process count (see
TIMING), and with ``--same-code A2`` (a second run of A's code) any file where A and A2 differ;
B's file then passes when it equals one of A's variants. Exit 0 when identical, 1 otherwise.

Snapshot before a refactor, then check after it::

    cd /work/compare && S=/work/main/benchmarks/compare_outputs.py
    python3 $S make-class class --src /work/before
    python3 $S grade /work/before class before1 && python3 $S grade /work/before class before2
    python3 $S compare before1 before2                      # must say IDENTICAL
    python3 $S grade /work/main class after                 # after the refactor
    python3 $S compare before1 after --same-code before2
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OVERRIDES = ("mistakes", "wrong", "alternatives", "hidden", "broken", "hostile")
CONFIG = "[limits]\ncall_seconds = 2\n"
ZIP_DATE = (2020, 1, 1, 0, 0, 0)


# -- make-class ---------------------------------------------------------------------------------

def _zip(members: dict[str, bytes]) -> bytes:
    """A zip with fixed dates and no compression: the same bytes every time."""
    with tempfile.TemporaryFile() as f:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
            for name, data in members.items():
                info = zipfile.ZipInfo(name, ZIP_DATE)
                info.external_attr = 0o644 << 16
                z.writestr(info, data)
        f.seek(0)
        return f.read()


def class_files(src: Path, folder: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file of the class, with student ids naming the source."""
    solution = (src / "solutions" / "backprop.py").read_bytes()
    subs = src / "tests" / "submissions"
    holes = {b"__SOLUTION_PATH__": repr(str(folder / "solution.py")),
             b"__OTHER_SUBMISSION__": repr(str(folder / "wrong__wrong_sign.py")),
             b"__OUTPUT_DIR__": repr(str(folder.parent)),   # where the outputs go, not the class
             b"__PORT__": "9"}
    files = {"solution.py": solution,
             "exercises__stubs.py": (src / "exercises" / "backprop.py").read_bytes(),
             "exercises__stubs_notebook.ipynb": (src / "exercises" / "backprop.ipynb").read_bytes()}
    for kind in OVERRIDES:
        for p in sorted((subs / kind).glob("*.py")):
            code = p.read_bytes()
            for hole, value in holes.items():
                code = code.replace(hole, value.encode())
            files[f"{kind}__{p.stem}.py"] = solution + b"\n\n" + code
    for p in sorted((subs / "lecture").glob("*.py")):
        files[f"lecture__{p.stem}.py"] = p.read_bytes()
    for p in sorted((subs / "notebooks").glob("*.ipynb")):
        files[f"notebooks__{p.stem}.ipynb"] = p.read_bytes()
    mistake = solution + b"\n\n" + (subs / "wrong" / "wrong_sign.py").read_bytes()
    files.update({
        "bad__syntax_error.py": b"def dprobs(:\n",
        "bad__garbage.ipynb": b'{"cells": [ {"cell_type": "code", "source": ',
        "bad__not_json.ipynb": b"print('a .py file named .ipynb')\n",
        "bad__empty.py": b"",
        "folder__solution/backprop.py": solution,
        "folder__solution/notes.txt": b"my notes, not a submission\n",
        "folder__mistake/mine/backprop.py": mistake,
        "folder__mistake/scratch.py": b"print('scratch')\n",
        "folder__ambiguous/a.py": solution,
        "folder__ambiguous/b.py": mistake,
        "zip__solution.zip": _zip({"backprop.py": solution}),
        "zip__notebook.zip": _zip({"hw/backprop.ipynb":
                                   (subs / "notebooks" / "correct.ipynb").read_bytes()}),
        "zip__broken.zip": b"PK\x03\x04 not really a zip",
        "README.md": b"instructions, not a submission: listed as skipped\n",
    })
    return files


def make_class(folder: Path, src: Path) -> None:
    if folder.exists() and any(folder.iterdir()):
        raise SystemExit(f"{folder}: exists and is not empty")
    folder = folder.resolve()
    files = class_files(src.resolve(), folder)
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    students = sorted({rel.split("/")[0] for rel in files} - {"README.md"})
    by_kind: dict[str, int] = {}
    for s in students:
        k = s.split("__")[0] if "__" in s else Path(s).stem
        by_kind[k] = by_kind.get(k, 0) + 1
    print(f"{len(students)} students in {folder} (read from {src}): "
          + ", ".join(f"{n} {k}" for k, n in by_kind.items()))


# -- grade --------------------------------------------------------------------------------------

def grade(tree: Path, klass: Path, out: Path) -> int:
    tree = tree.resolve()
    env = {**os.environ, "PYTHONPATH": str(tree)}
    where = subprocess.run([sys.executable, "-c", "import grader; print(grader.__file__)"],
                           env=env, cwd=tree, capture_output=True, text=True, check=True)
    print(f"grader from {where.stdout.strip()}")
    with tempfile.TemporaryDirectory(prefix="bpg-compare-") as tmp:
        config = Path(tmp) / "assignment.toml"
        config.write_text(CONFIG)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "grader", "grade", str(klass.resolve()),
                               "--out", str(out.resolve()), "--jobs", "2", "--regrade",
                               "--config", str(config)], env=env, cwd=tree)
        print(f"grade took {time.perf_counter() - start:.1f} s (exit {proc.returncode})")
    return proc.returncode


# -- compare ------------------------------------------------------------------------------------

# (file names, pattern, what it hides): applied to both sides' bytes, as narrowly as found needed
# by grading one class twice with the same code. Group 1 is kept, the rest becomes "<...>".
NOISE: list[tuple[tuple[str, ...], re.Pattern[str], str]] = [
    (("record.json",), re.compile(r'("seconds": )-?[0-9.]+(?:[eE][-+]?[0-9]+)?'),
     "timing: record.json 'seconds' spent grading the student"),
    (("record.json", "batch.json"), re.compile(r'("config_sha256": ")[0-9a-f]{64}(?=")'),
     "bookkeeping: 'config_sha256' hashes the grader's own source files (any edit of grader/ "
     "changes it) with the config; the config itself is the same file both runs"),
    (("results.json", "gradescope.json", "record.json", "batch.json"),
     re.compile(r'("grader_version": ?")[^"]*(?=")'), "version: 'grader_version'"),
    ((".html",), re.compile(r"(backprop-grader )[0-9][^ <]*"),
     "version: 'backprop-grader X.Y.Z' in the reports' footers"),
]
# outputs that depend on timing even with identical code: not hidden, reported as unstable.
# A fork bomb's process count when the limit stops it: 32 idle, 28 to 31 under load (seen).
TIMING = [(re.compile(r"started \d+ processes"), "started <N> processes")]


def _normalise(rel: str, text: str, seen: dict[str, list[str]] | None = None) -> str:
    name = rel.rsplit("/", 1)[-1]
    for files, pattern, what in NOISE:
        if any(name == f or (f.startswith(".") and name.endswith(f)) for f in files):
            if seen is not None:
                seen.setdefault(what, []).extend(m.group(0) for m in pattern.finditer(text))
            # the placeholder keeps JSON valid: "<...>" inside a string, a string for a number
            text = pattern.sub(lambda m: m.group(1) + ("<...>" if m.group(1).endswith('"')
                                                       else '"<...>"'), text)
    return text


def _masked(text: str) -> str:
    for pattern, replacement in TIMING:
        text = pattern.sub(replacement, text)
    return text


def _lines(rel: str, text: str) -> list[str]:
    """For showing a difference: JSON as 'path = value' lines (results.json is one line)."""
    def flat(value: Any, path: str) -> list[str]:
        if isinstance(value, (dict, list)) and value:
            items = value.items() if isinstance(value, dict) else enumerate(value)
            return [x for k, v in items
                    for x in flat(v, f"{path}.{k}" if isinstance(value, dict) else f"{path}[{k}]")]
        return [f"{path} = {json.dumps(value, ensure_ascii=False)}"]
    if rel.endswith(".json"):
        try:
            return flat(json.loads(text), "$")
        except ValueError:
            pass
    return text.splitlines()


def _diff(rel: str, a: str, b: str, limit: int = 8) -> list[str]:
    out = [line for line in difflib.unified_diff(_lines(rel, a), _lines(rel, b), n=0, lineterm="")
           if not line.startswith(("---", "+++"))]
    return [line[:240] for line in out[:limit]] + ([f"... ({len(out) - limit} more)"]
                                                   if len(out) > limit else [])


class Tree:
    """One output folder: its files, read and normalised on demand."""

    def __init__(self, root: Path) -> None:
        if not (root / "gradebook.csv").is_file():
            raise SystemExit(f"{root}: no gradebook.csv (not a grade output folder)")
        self.root = root
        self.files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}

    def text(self, rel: str, seen: dict[str, list[str]] | None = None) -> str:
        data = (self.root / rel).read_bytes()
        try:
            return _normalise(rel, data.decode("utf-8"), seen)
        except UnicodeDecodeError:
            return data.hex()


def compare(a_root: Path, b_root: Path, same_code: Path | None) -> int:
    a, b = Tree(a_root), Tree(b_root)
    a2 = Tree(same_code) if same_code else None
    names = sorted(a.files | b.files)
    kinds: dict[str, int] = {}
    for rel in names:
        kind = rel.rsplit("/", 1)[-1] if rel.startswith("students/") else rel
        kinds[kind] = kinds.get(kind, 0) + 1
    print(f"A = {a.root}\nB = {b.root}" + (f"\nA2 = {a2.root} (same code as A)" if a2 else ""))
    print("files: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
    hidden: dict[str, list[str]] = {}      # rule -> files where it hid a difference
    counts: dict[str, int] = {}
    unstable: dict[str, tuple[str, list[str]]] = {}
    differ: list[tuple[str, list[str]]] = []
    for rel in names:
        if rel not in a.files or rel not in b.files:
            differ.append((rel, [f"only in {'A' if rel in a.files else 'B'}"]))
            continue
        seen_a: dict[str, list[str]] = {}
        seen_b: dict[str, list[str]] = {}
        ta, tb = a.text(rel, seen_a), b.text(rel, seen_b)
        for what in seen_a.keys() | seen_b.keys():
            counts[what] = counts.get(what, 0) + len(seen_a.get(what, []))
            if seen_a.get(what) != seen_b.get(what):
                hidden.setdefault(what, []).append(rel)
        ta2 = a2.text(rel) if a2 and rel in a2.files else None
        if ta2 is not None and ta2 != ta:
            unstable[rel] = ("differs between A and A2 (same code)"
                             + ("; B matches A2" if tb == ta2 else ""), _diff(rel, ta, ta2))
        if tb == ta or tb == ta2:
            continue
        if _masked(tb) in (_masked(ta), _masked(ta2 if ta2 is not None else ta)):
            unstable[rel] = (f"differs only in timing-dependent text "
                             f"({', '.join(r for _, r in TIMING)})", _diff(rel, ta, tb))
        else:
            differ.append((rel, _diff(rel, ta, tb)))

    print("\nnormalised (both sides, before comparing):")
    for _, _, what in NOISE:
        files = hidden.get(what, [])
        print(f"  {what}: {counts.get(what, 0)} value(s) in A; differed in {len(files)} file(s)"
              + (f", e.g. {files[0]}" if files else ""))
    print(f"\nunstable across runs of the same code: {len(unstable)} file(s)")
    for rel, (why, lines) in unstable.items():
        print(f"  {rel}: {why}")
        print("".join(f"      {line}\n" for line in lines[:4]), end="")
    print(f"\ndifferences: {len(differ)} file(s)")
    for rel, lines in differ[:40]:
        print(f"  {rel}")
        print("".join(f"      {line}\n" for line in lines), end="")
    if len(differ) > 40:
        print(f"  ... and {len(differ) - 40} more: " + ", ".join(r for r, _ in differ[40:]))
    same = len(names) - len(differ) - len(unstable.keys() - {r for r, _ in differ})
    print(f"\n{len(names)} files: {same} identical, {len(unstable)} unstable (reported above), "
          f"{len(differ)} different -> {'IDENTICAL' if not differ else 'DIFFERENT'}")
    return 1 if differ else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("make-class", help="write the fixed class into DIR")
    p.add_argument("dir", type=Path)
    p.add_argument("--src", type=Path, default=ROOT, help="repository to read the files from")
    p = sub.add_parser("grade", help="grade CLASS into OUT with the grader of TREE")
    p.add_argument("tree", type=Path)
    p.add_argument("klass", metavar="class", type=Path)
    p.add_argument("out", type=Path)
    p = sub.add_parser("compare", help="compare two output folders")
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--same-code", type=Path, metavar="A2",
                   help="a second run of A's code: what differs between A and A2 is unstable")
    args = parser.parse_args()
    if args.command == "make-class":
        make_class(args.dir, args.src)
        return 0
    if args.command == "grade":
        return grade(args.tree, args.klass, args.out)
    return compare(args.a, args.b, args.same_code)


if __name__ == "__main__":
    sys.exit(main())
