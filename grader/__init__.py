"""backprop-grader: grade the "backprop ninja" exercise against autograd."""

__version__ = "0.1.0"

# name -> the module that defines it, imported on first use (PEP 562): `import grader.cli` and
# `backprop-grader --help` do not import torch, and a command can start the sandbox's worker first
_EXPORTS = {
    "GradeRequest": "api", "grade_submission": "api", "lecture_config": "api",
    "Assignment": "assignment", "AssignmentError": "assignment", "load_assignment": "assignment",
    "BatchSummary": "batch.run", "grade_many": "batch.run",
    "discover_submissions": "submissions.discovery",
    "Comparison": "judge.compare", "Tolerance": "judge.compare", "compare_gradient": "judge.compare",
    "HiddenConfigs": "lecture.configs", "HiddenVariant": "lecture.configs",
    "GradingOptions": "judge.grading",
    "Config": "lecture.model", "build_lecture_state": "lecture.model",
    "Submission": "submissions.loader", "SubmissionError": "submissions.loader", "load_submission": "submissions.loader",
    "render_report": "output.report", "render_summary": "output.report", "write_reports": "output.report",
    "Result": "output.results", "read_result": "output.results", "write_result": "output.results",
    "Limits": "sandbox.limits",
    "CheckReport": "selfcheck", "check": "selfcheck",
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'grader' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = ["__version__", *_EXPORTS]
