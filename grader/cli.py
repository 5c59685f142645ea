"""Command line: thin commands over grader.api; each command's --help gives its exit codes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from . import __version__
from .output.control_chars import escape_control_chars as shown     # no torch: starts fast

if TYPE_CHECKING:     # each command imports what it needs: --help and `grade` start without torch
    from .api import GradeRequest

__all__ = ["main", "run"]

EXIT_PASS, EXIT_FAIL, EXIT_CANNOT_GRADE, EXIT_INTERRUPTED = 0, 1, 2, 130

_DESCRIPTION = """\
Grade the "backprop ninja" exercise (makemore part 4) against autograd.

Student code runs in a separate, limited process; the grader compares every gradient you
return with autograd's, in two modes: isolated (each step gets autograd's upstream gradients,
so each local derivative is graded on its own: this gives the points) and chained (each step
gets your own upstream gradients, as the notebook does).
"""

_EPILOG = """\
exit codes: 0 every gradient passes (in every config), 1 some fail or the score is held for
review, 2 the file cannot be graded (report: 0 every results file rendered, 2 some could not be
read or written).
review: a file that does what no answer needs and could hide autograd from the grader (imports
modules by name, reaches a function's closure or __wrapped__, forward-mode AD, torch._C, starts
processes, runs code built from strings) is graded, but its score is withheld ("HELD FOR
REVIEW", status "review") until an instructor clears it (--clear-review).
hidden configs: besides the lecture's sizes, check grades each gradient at other sizes and seeds
(odd and prime batch sizes, n = 2, other n_embd, n_hidden, block_size, vocabulary), the same kinds
as final grading but with other data; a gradient passes only if it passes in all of them.
examples:
  backprop-grader check exercises/backprop.py
  backprop-grader check my_backprop.py --words names.txt --json result.json
  backprop-grader check my_backprop.py --html report.html
  backprop-grader report results/*.json --out reports/
  backprop-grader check my_notebook.ipynb
  backprop-grader notebook exercises/backprop.py -o exercises/backprop.ipynb
"""


_GRADE_EPILOG = """\
files written in OUT:
  students/<id>/results.json     the student's result (backprop-grader/result/v1)
  students/<id>/report.html      the student's report
  students/<id>/gradescope.json  the same result in Gradescope's format
  students/<id>/record.json      hashes of what was graded, written last: a student whose
                                 record matches the submission and the config is kept
  summary.html                   the class summary, linking to every report
  gradebook.csv                  one row per student: points per exercise and per gradient
  batch.json                     what was found, skipped and graded
  .lock                          held while a run writes to OUT: one run at a time
exit codes: 0 every student has a row, whatever their grade (a submission that cannot be graded
is that student's error row), 2 the batch cannot run (no such folder, a wrong config, another
run writing to OUT), 130 interrupted by Ctrl-C (run the same command again to grade the rest).
"""


def _add_grading_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--words", metavar="FILE",
                   help="word list, one word a line (the lecture's names.txt); default: the "
                        "embedded list of U.S. census first names")
    p.add_argument("--mode", choices=("both", "isolated", "chained"), default="both",
                   help="which modes to run (default: both; points come from isolated mode for "
                        "the stub format)")
    p.add_argument("--steps", type=int, default=10, metavar="K",
                   help="exercise 4: SGD steps to train with your backward() (default 10)")
    p.add_argument("--timeout", type=float, default=20.0, metavar="SECONDS",
                   help="time limit for one call of your code (default 20)")
    p.add_argument("--integrity", choices=("zero", "flag"), default="zero",
                   help="a gradient computed with autograd: scores 0 (default) or is only flagged")
    p.add_argument("--isolation", choices=("auto", "bwrap", "process"), default="auto",
                   help="sandbox: bubblewrap where it works (auto, default), bubblewrap or fail "
                        "(bwrap), or process isolation only (process); see README, Security model")
    p.add_argument("--hidden", action=argparse.BooleanOptionalAction, default=True,
                   help="also grade on hidden configs (other sizes and seeds, the same kinds as "
                        "final grading): a gradient passes only if it passes in every config "
                        "(default: on)")
    p.add_argument("--seed", type=int, metavar="N",
                   help="seed of the hidden configs (default: the self-check's own, which is "
                        "not final grading's)")
    p.add_argument("--probes", action=argparse.BooleanOptionalAction, default=True,
                   help="isolated mode: also feed each step random upstream gradients and "
                        "compare with autograd's vector-Jacobian product (default: on)")


def _request(args: argparse.Namespace) -> GradeRequest:
    from .api import GradeRequest, lecture_config
    from .lecture.configs import HiddenConfigs
    from .judge.grading import GradingOptions
    from .sandbox.limits import Limits

    modes = ("isolated", "chained") if args.mode == "both" else (args.mode,)
    hidden = HiddenConfigs.self_check(args.seed) if args.hidden else HiddenConfigs.off()
    return GradeRequest(config=lecture_config(args.words), hidden=hidden,
                        options=GradingOptions(modes=modes, train_steps=max(args.steps, 1),
                                               probes=args.probes,
                                               integrity_policy=args.integrity),
                        limits=Limits(call_seconds=args.timeout))


def _cmd_check(args: argparse.Namespace) -> int:
    if args.words and not Path(args.words).is_file():
        print(f"backprop-grader: --words {args.words}: no such file", file=sys.stderr)
        return EXIT_CANNOT_GRADE
    from .sandbox.runner import SandboxRunner

    with SandboxRunner(isolation=args.isolation).launch() as runner:   # starts while torch loads
        from .api import grade_submission
        from .output.results import write_result
        from .output.terminal import render_text, use_color

        result = grade_submission(args.file, request=_request(args), runner=runner)
        if args.clear_review:
            from .judge.review import clear_review

            result = clear_review(result)
    sys.stdout.write(render_text(result, color=use_color(sys.stdout), verbose=args.verbose))
    if args.json:
        write_result(result, args.json)
        print(f"results written to {args.json}")
    if args.html:
        from .output.report import write_report

        try:
            write_report(result, args.html)
            print(f"report written to {args.html}")
        except OSError as e:
            print(f"backprop-grader: cannot write {args.html}: {e.strerror or e}", file=sys.stderr)
            return EXIT_CANNOT_GRADE
    if result.status == "review":
        return EXIT_FAIL
    if result.status != "graded":
        return EXIT_CANNOT_GRADE
    return EXIT_PASS if result.all_passed else EXIT_FAIL


def _load_assignment(path: str | None):  # -> Assignment
    from .assignment import Assignment, load_assignment

    return load_assignment(path) if path else Assignment()


def _cmd_grade(args: argparse.Namespace) -> int:
    import contextlib

    from .sandbox.runner import SandboxRunner, can_share_worker

    # one sandbox worker for the batch, started while torch loads, where the workers can share it
    shared = (SandboxRunner().launch() if can_share_worker()
              else contextlib.nullcontext())
    with shared as runner:
        from .assignment import AssignmentError
        from .batch.run import BatchError, grade_many

        try:
            assignment = _load_assignment(args.config)
            summary = grade_many(args.dir, args.out, request=assignment.request, jobs=args.jobs,
                                 resume=not args.regrade, progress=sys.stderr,
                                 gradescope=assignment.gradescope,
                                 config_extra=(assignment.integrity_autograd,),
                                 title=assignment.title, runner=runner,
                                 cleared=args.clear_review or ())
        except (AssignmentError, BatchError) as e:      # may name a class zip's member
            print(f"backprop-grader: {shown(str(e))}", file=sys.stderr)
            return EXIT_CANNOT_GRADE
    counts: dict[str, int] = {}
    for status in summary.statuses.values():
        counts[status] = counts.get(status, 0) + 1
    print(f"{summary.students} student(s): " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
          + f"; graded now {summary.graded} in {summary.seconds:.1f} s ({summary.rate:.1f}/s), "
          f"unchanged {summary.unchanged}")
    for skipped in summary.skipped:
        print(f"skipped {shown(str(skipped.path))}: {shown(skipped.reason)}")
    for note in summary.notes:
        print(f"note: {shown(note)}")
    print(f"gradebook: {Path(args.out) / 'gradebook.csv'}")
    print(f"summary: {Path(args.out) / 'summary.html'}")
    if summary.interrupted:
        print("interrupted: run the same command again to grade the rest", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _cmd_gradescope_build(args: argparse.Namespace) -> int:
    from .assignment import AssignmentError
    from .gradescope import build_autograder

    try:
        path = build_autograder(args.out, config=args.config, torch_spec=args.torch)
    except (AssignmentError, OSError) as e:
        print(f"backprop-grader: {e}", file=sys.stderr)
        return EXIT_CANNOT_GRADE
    print(f"autograder written to {path}: upload it in Gradescope's Configure Autograder page")
    return 0


def _cmd_gradescope_run(args: argparse.Namespace) -> int:
    from .assignment import AssignmentError
    from .gradescope import RESULTS_PATH, SUBMISSION_DIR, run_gradescope

    try:
        assignment = _load_assignment(args.config)
    except AssignmentError as e:
        print(f"backprop-grader: {e}", file=sys.stderr)
        assignment = None
    results = args.results or RESULTS_PATH
    data = run_gradescope(submission_dir=args.submission or SUBMISSION_DIR, results_path=results,
                          assignment=assignment)
    print(f"score {data['score']:g}; results written to {results}")
    return 0


def _add_batch_commands(sub: argparse._SubParsersAction) -> None:
    grade = sub.add_parser(
        "grade", help="grade a folder of submissions: reports, gradebook.csv, Gradescope JSON",
        description="Grade every submission in DIR: one file per student (.py/.ipynb), one\n"
                    "folder per student, or a .zip of either; the student id is the file or\n"
                    "folder name. Students whose file and grading config are unchanged since\n"
                    "they were graded are kept, so an interrupted run continues where it stopped.",
        epilog=_GRADE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    grade.add_argument("dir", help="folder of submissions (or a .zip of it, as course "
                                   "platforms download them)")
    grade.add_argument("--out", required=True, metavar="DIR", help="output folder")
    grade.add_argument("--jobs", type=int, default=2, metavar="N",
                       help="submissions graded at once, each in a worker process of its own "
                            "(default 2); one whose code runs long (a stub call past "
                            "slow_seconds) does not count, up to 2N processes in all")
    grade.add_argument("--config", metavar="TOML", help="assignment config (points, tolerances, "
                                                        "limits, ...); see grader/assignment.py")
    again = grade.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="keep unchanged students' earlier results (the default)")
    again.add_argument("--regrade", action="store_true",
                       help="grade everyone again, even if unchanged")
    grade.add_argument("--clear-review", action="append", metavar="STUDENT",
                       help="a student whose submission, held for review, you have looked at "
                            "and cleared: their score is given back (repeat for several)")
    grade.set_defaults(func=_cmd_grade)

    gs = sub.add_parser("gradescope", help="package or run the grader as a Gradescope autograder")
    gs_sub = gs.add_subparsers(dest="gradescope_command", metavar="ACTION", required=True)
    build = gs_sub.add_parser("build", help="write autograder.zip (setup.sh, run_autograder, "
                                            "config, the grader)")
    build.add_argument("--out", default="autograder.zip", metavar="ZIP")
    build.add_argument("--config", metavar="TOML", help="assignment config to package")
    build.add_argument("--torch", metavar="SPEC",
                       help="what setup.sh installs from PyTorch's CPU index (default: "
                            "torch==<this torch's version>)")
    build.set_defaults(func=_cmd_gradescope_build)
    run = gs_sub.add_parser("run", help="inside Gradescope: grade /autograder/submission")
    run.add_argument("--submission", metavar="DIR",
                     help="the submission folder (default: Gradescope's, /autograder/submission)")
    run.add_argument("--results", metavar="JSON",
                     help="where to write the results (default: Gradescope's, "
                          "/autograder/results/results.json)")
    run.add_argument("--config", metavar="TOML")
    run.set_defaults(func=_cmd_gradescope_run)


def _cmd_report(args: argparse.Namespace) -> int:
    from .output.report import find_results, write_reports

    paths = find_results(args.results)
    if not paths:
        print("backprop-grader report: no results JSON files found in "
              + ", ".join(args.results), file=sys.stderr)
        return EXIT_CANNOT_GRADE
    try:
        written = write_reports(paths, args.out)
    except OSError as e:
        print(f"backprop-grader report: cannot write to {args.out}: {e.strerror or e}",
              file=sys.stderr)
        return EXIT_CANNOT_GRADE
    for problem in written.unreadable:        # a results file's name, what is wrong with it
        print(f"backprop-grader report: {shown(problem)}", file=sys.stderr)
    print(f"{len(written.reports)} report(s) and the class summary written to {written.summary}")
    return EXIT_CANNOT_GRADE if written.unreadable else EXIT_PASS


def _cmd_notebook(args: argparse.Namespace) -> int:
    from .exercise_notebook import exercise_notebook_text, write_exercise_notebook

    source = Path(args.source)
    if not source.is_file():
        print(f"backprop-grader: {source}: no such file", file=sys.stderr)
        return EXIT_CANNOT_GRADE
    out = Path(args.output) if args.output else source.with_suffix(".ipynb")
    if args.check:
        current = out.read_text("utf-8") if out.is_file() else None
        if current != exercise_notebook_text(source):
            print(f"{out} is out of date with {source}: run backprop-grader notebook {source} "
                  f"-o {out}")
            return EXIT_FAIL
        print(f"{out} is up to date with {source}")
        return EXIT_PASS
    changed = write_exercise_notebook(source, out)
    print(f"{'wrote' if changed else 'unchanged:'} {out}")
    return EXIT_PASS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backprop-grader", description=_DESCRIPTION,
                                     epilog=_EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = sub.add_parser("check", help="grade one submission (.py or .ipynb) and print a table",
                           description="Grade one submission and print, per gradient: status, "
                                       "exact, approximate, maxdiff and points.",
                           epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("file", help="your exercise file: backprop.py or a notebook")
    _add_grading_options(check)
    check.add_argument("--json", metavar="OUT", help="also write the results JSON here")
    check.add_argument("-v", "--verbose", action="store_true",
                       help="show every message and what your code printed")
    check.add_argument("--html", metavar="OUT", help="also write the HTML report here")
    check.add_argument("--clear-review", action="store_true",
                       help="instructors: this file was looked at and is cleared: give back a "
                            "score held for review")
    check.set_defaults(func=_cmd_check)
    _add_batch_commands(sub)
    report = sub.add_parser("report", help="HTML reports and a class summary from saved results JSON",
                            description="Render one HTML report per results JSON file and a class "
                                        "summary (index.html) into --out. Runs no submission code.")
    report.add_argument("results", nargs="+", metavar="RESULTS",
                        help="results JSON files (from check --json or grade), or folders of them")
    report.add_argument("--out", required=True, metavar="DIR", help="folder to write the pages to")
    report.set_defaults(func=_cmd_report)
    notebook = sub.add_parser("notebook", help="generate the exercise notebook from the .py "
                                               "exercise file",
                              description="Write the Jupyter notebook students get, generated "
                                          "from the exercise file: an introduction on how to "
                                          "self-check, one cell per exercise function, and a "
                                          "check() cell.")
    notebook.add_argument("source", help="the exercise file, e.g. exercises/backprop.py")
    notebook.add_argument("-o", "--output", metavar="NOTEBOOK",
                          help="where to write it (default: beside the source, .ipynb)")
    notebook.add_argument("--check", action="store_true",
                          help="write nothing; exit 1 when the notebook differs from what "
                               "would be generated")
    notebook.set_defaults(func=_cmd_notebook)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_CANNOT_GRADE
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def run() -> None:
    """The ``backprop-grader`` command: main(), then exit without tearing the interpreter down
    (with torch loaded that is slow, and every file is written and closed by then). Python's
    cyclic garbage collector stays off meanwhile: importing torch and keeping what it grades,
    this process would spend much of its CPU walking objects that all stay, and it makes few
    cycles (student code runs elsewhere; grade's grading processes turn the collector back on,
    grader.batch.processes)."""
    import gc
    import os

    gc.disable()
    # numpy's BLAS, loaded with torch, starts a thread for each core that spins a while: CPU
    # taken from this process's imports and the sandbox worker's, which run side by side then.
    # The tensors here are small, and torch's own work is on one thread too (api)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:         # e.g. `| head` closed the pipe: nothing more to say there
            pass
    os._exit(code)
