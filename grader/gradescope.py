"""Gradescope: package the grader as an autograder zip, and the entry that runs inside it.

Gradescope's autograder contract (gradescope-autograders.readthedocs.io/en/latest/specs/): a zip
with ``setup.sh`` (run once, as root, on Ubuntu, to install dependencies) and ``run_autograder``
(run for each submission, with the zip unpacked in /autograder/source and the student's files in
/autograder/submission) that must write /autograder/results/results.json.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import shlex
import sys
import time
import traceback
import zipfile
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from . import __version__
from .api import error_result, grade_submission
from .assignment import Assignment, AssignmentError, load_assignment
from .judge.scoring import points_table
from .output.exports import gradescope_results
from .output.results import write_atomic
from .submissions.discovery import submission_in_folder

__all__ = ["SUBMISSION_DIR", "RESULTS_PATH", "build_autograder", "default_torch_spec",
           "run_gradescope"]

SUBMISSION_DIR = Path("/autograder/submission")
RESULTS_PATH = Path("/autograder/results/results.json")
SOURCE_DIR = "/autograder/source"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
_EPOCH = (1980, 1, 1, 0, 0, 0)     # fixed timestamps: the same inputs give the same zip

_SETUP_SH = """\
#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (Ubuntu 22.04+).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq python3 python3-venv python3-pip bubblewrap
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install -q --upgrade pip
# PyTorch for CPU only (no CUDA download, about 200 MB instead of 2 GB); the same version the
# grader was tested with, since exact/approximate verdicts can differ between torch versions.
/autograder/venv/bin/pip install -q --index-url {index} {torch}
/autograder/venv/bin/pip install -q {source}
"""

_RUN_AUTOGRADER = """\
#!/usr/bin/env bash
# Gradescope runs this for every submission; it writes /autograder/results/results.json.
cd {source}
exec /autograder/venv/bin/python -m grader gradescope run \\
    --config {source}/assignment.toml \\
    --submission /autograder/submission --results /autograder/results/results.json
"""

_DEFAULT_ASSIGNMENT = """\
# backprop-grader assignment config (all keys optional; see grader/assignment.py).
title = "Backprop ninja"
"""


def default_torch_spec() -> str:
    """``torch==X.Y.Z``: the version installed here, without a local tag such as ``+cpu``."""
    import torch

    return f"torch=={torch.__version__.split('+')[0]}"


def _package_files(root: Path) -> list[tuple[str, bytes]]:
    files = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root.parent)
        if p.is_file() and "__pycache__" not in rel.parts and p.suffix not in (".pyc", ".pyo"):
            files.append((rel.as_posix(), p.read_bytes()))
    return files


def _project_files(package: Path) -> list[tuple[str, bytes]]:
    """pyproject.toml and README.md from the checkout, or a minimal pyproject when installed."""
    root = package.parent
    if (root / "pyproject.toml").is_file():
        files = [("pyproject.toml", (root / "pyproject.toml").read_bytes())]
        if (root / "README.md").is_file():
            files.append(("README.md", (root / "README.md").read_bytes()))
        return files
    try:
        requires = importlib.metadata.requires("backprop-grader") or []
    except importlib.metadata.PackageNotFoundError:
        requires = []
    deps = ", ".join(f'"{r}"' for r in requires if "extra ==" not in r)
    text = (f'[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
            f'[project]\nname = "backprop-grader"\nversion = "{__version__}"\n'
            f'requires-python = ">=3.10"\ndependencies = [{deps}]\n\n'
            f'[project.scripts]\nbackprop-grader = "grader.cli:main"\n\n'
            f'[tool.setuptools.packages.find]\ninclude = ["grader*"]\n\n'
            f'[tool.setuptools.package-data]\ngrader = ["data/*.txt", "data/*.md"]\n'
            f'"grader.output" = ["templates/*"]\n')
    return [("pyproject.toml", text.encode())]


def _assignment_files(config: Path | None) -> list[tuple[str, bytes]]:
    """The assignment file (checked now, not at the first submission) and its word list."""
    if config is None:
        return [("assignment.toml", _DEFAULT_ASSIGNMENT.encode())]
    assignment = load_assignment(config)       # raises AssignmentError naming the file and key
    files = [("assignment.toml", config.read_bytes())]
    if assignment.words:
        rel = PurePosixPath(assignment.words)
        if rel.is_absolute() or ".." in rel.parts:
            raise AssignmentError(
                f"{config}: 'words' is {assignment.words!r}; to package it, put the word list "
                "beside the assignment file (or below it) and name it by a relative path")
        files.append((rel.as_posix(), (config.parent / rel).read_bytes()))
    return files


def build_autograder(out: str | Path, *, config: str | Path | None = None,
                     torch_spec: str | None = None) -> Path:
    """Write Gradescope's autograder zip: setup.sh, run_autograder, assignment.toml, the grader."""
    out = Path(out)
    package = Path(__file__).resolve().parent
    torch_spec = torch_spec or default_torch_spec()
    entries: list[tuple[str, bytes, int]] = [
        ("setup.sh", _SETUP_SH.format(index=TORCH_CPU_INDEX, torch=shlex.quote(torch_spec),
                                      source=SOURCE_DIR).encode(), 0o755),
        ("run_autograder", _RUN_AUTOGRADER.format(source=SOURCE_DIR).encode(), 0o755),
    ]
    entries += [(name, data, 0o644) for name, data in _assignment_files(
        Path(config) if config else None)]
    entries += [(name, data, 0o644) for name, data in _project_files(package)]
    entries += [(name, data, 0o644) for name, data in _package_files(package)]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    write_atomic(out, buffer.getvalue())
    return out


# -- inside the container -----------------------------------------------------------------

def _failure_results(message: str) -> dict[str, Any]:
    return {"score": 0.0, "output": message, "output_format": "text", "tests": [],
            "extra_data": {"status": "autograder-error", "grader_version": __version__}}


def run_gradescope(*, submission_dir: str | Path = SUBMISSION_DIR,
                   results_path: str | Path = RESULTS_PATH,
                   assignment: Assignment | None = None) -> dict[str, Any]:
    """Grade the one submission in ``submission_dir`` and write Gradescope's results.json.

    Always writes results.json: a submission that cannot be graded gets a score of 0 with the
    reason for the student; a failure of the grader itself says so, and the traceback goes to
    stdout (shown to instructors only).
    """
    start = time.monotonic()
    assignment = assignment or Assignment()
    request = assignment.request
    try:
        folder = Path(submission_dir)
        if not folder.is_dir():
            result = error_result("submission", f"no submission folder at {folder}",
                                  request=request)
        else:
            entry = submission_in_folder(folder, folder.name)
            if entry.problem or entry.path is None:
                result = error_result(entry.label, entry.problem or "no submission found",
                                      request=request)
            else:
                result = grade_submission(entry.path, request=request)
                result = replace(result, submission=PurePosixPath(entry.label).name)
        data = gradescope_results(result, points=points_table(request.options),
                                  settings=assignment.gradescope,
                                  execution_time=time.monotonic() - start)
    except Exception:  # noqa: BLE001 - Gradescope must always get a results.json
        traceback.print_exc(file=sys.stdout)
        data = _failure_results("The autograder itself failed on this submission (not your "
                                "code's fault, as far as it can tell). Your instructor can see "
                                "the details; please tell them.")
    write_atomic(Path(results_path), json.dumps(data, indent=2) + "\n")
    return data
