"""backprop-grader: grade the "backprop ninja" exercise against autograd."""

__version__ = "0.1.0"

# name -> the module that defines it, imported on first use (PEP 562): `import grader.cli` and
# `backprop-grader --help` do not import torch, and a command can start the sandbox's worker first
_EXPORTS = {
    "GradeRequest": "api", "grade_submission": "api", "lecture_config": "api",
    "Assignment": "assignment", "AssignmentError": "assignment", "load_assignment": "assignment",
    "BatchSummary": "batch", "discover_submissions": "batch", "grade_many": "batch",
    "Comparison": "compare", "Tolerance": "compare", "compare_gradient": "compare",
    "HiddenConfigs": "configs", "HiddenVariant": "configs",
    "GradingOptions": "grading",
    "Config": "lecture", "build_lecture_state": "lecture",
    "Submission": "loader", "SubmissionError": "loader", "load_submission": "loader",
    "render_report": "report", "render_summary": "report", "write_reports": "report",
    "Result": "results", "read_result": "results", "write_result": "results",
    "Limits": "sandbox",
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
