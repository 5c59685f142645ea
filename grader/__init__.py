"""backprop-grader: grade the "backprop ninja" exercise against autograd."""

__version__ = "0.1.0"

from .api import GradeRequest, grade_submission, lecture_config  # noqa: E402
from .assignment import Assignment, AssignmentError, load_assignment  # noqa: E402
from .batch import BatchSummary, discover_submissions, grade_many  # noqa: E402
from .compare import Comparison, Tolerance, compare_gradient  # noqa: E402
from .configs import HiddenConfigs, HiddenVariant  # noqa: E402
from .grading import GradingOptions  # noqa: E402
from .lecture import Config, build_lecture_state  # noqa: E402
from .loader import Submission, SubmissionError, load_submission  # noqa: E402
from .report import render_report, render_summary, write_reports  # noqa: E402
from .results import Result, read_result, write_result  # noqa: E402
from .sandbox import Limits  # noqa: E402
from .selfcheck import CheckReport, check  # noqa: E402

__all__ = [
    "Assignment",
    "AssignmentError",
    "BatchSummary",
    "CheckReport",
    "Comparison",
    "Config",
    "GradeRequest",
    "GradingOptions",
    "HiddenConfigs",
    "HiddenVariant",
    "Limits",
    "Result",
    "Submission",
    "SubmissionError",
    "Tolerance",
    "__version__",
    "build_lecture_state",
    "check",
    "compare_gradient",
    "discover_submissions",
    "grade_many",
    "grade_submission",
    "lecture_config",
    "load_assignment",
    "load_submission",
    "read_result",
    "render_report",
    "render_summary",
    "write_reports",
    "write_result",
]
