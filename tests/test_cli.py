"""The command line: readable table, exit codes scripts can use, no tracebacks of ours."""

import json
import os
import subprocess
import sys

import pytest

from conftest import EXERCISE, ROOT, SOLUTION, SUBMISSIONS, with_overrides

RAW_CONTROLS = ("\x1b", "\x07", "\r", "\x9b", "\u202e")


def run(*args):
    return subprocess.run([sys.executable, "-m", "grader", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def run_raw(*args):
    """Like run, but stdout and stderr exactly as written: a carriage return stays one."""
    p = subprocess.run([sys.executable, "-m", "grader", *args], capture_output=True, cwd=ROOT,
                       timeout=300)
    return subprocess.CompletedProcess(p.args, p.returncode, p.stdout.decode(),
                                       p.stderr.decode())


def test_check_on_the_solution_exits_0_with_a_table_and_json(tmp_path):
    out = tmp_path / "r.json"
    p = run("check", str(SOLUTION), "--steps", "2", "--json", str(out))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "dlogprobs" in p.stdout and "total: 34 / 34" in p.stdout
    assert json.loads(out.read_text())["schema"] == "backprop-grader/result/v1"


def test_check_on_the_stubs_exits_1():
    p = run("check", str(EXERCISE), "--mode", "isolated", "--steps", "1")
    assert p.returncode == 1 and "total: 0 / 34" in p.stdout


def test_check_on_a_missing_file_exits_2_with_one_clear_line():
    p = run("check", "nowhere.py")
    assert p.returncode == 2 and "no such file" in p.stdout and "Traceback" not in p.stdout + p.stderr


def test_check_on_a_syntax_error_exits_2(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def dprobs(:\n")
    p = run("check", str(bad))
    assert p.returncode == 2 and "syntax error" in p.stdout and "Traceback" not in p.stderr


def test_help_explains_the_modes_and_exit_codes():
    p = run("check", "--help")
    assert p.returncode == 0 and "isolated" in p.stdout and "exit codes" in p.stdout


def test_grade_help_gives_the_exit_codes_and_every_file_it_writes():
    p = run("grade", "--help")
    assert p.returncode == 0
    for text in ("exit codes: 0", "2 the batch cannot run", "130 interrupted",
                 "students/<id>/results.json", "students/<id>/report.html",
                 "students/<id>/gradescope.json", "students/<id>/record.json", "summary.html",
                 "gradebook.csv", "batch.json", ".lock"):
        assert text in p.stdout, text


def test_grade_says_where_the_gradebook_and_the_summary_are(tmp_path):
    (tmp_path / "class").mkdir()
    (tmp_path / "class" / "README.md").write_text("no submission here")
    out = tmp_path / "out"
    p = run("grade", str(tmp_path / "class"), "--out", str(out))
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"gradebook: {out / 'gradebook.csv'}\nsummary: {out / 'summary.html'}\n" in p.stdout
    assert (out / "gradebook.csv").is_file() and (out / "summary.html").is_file()


def test_check_on_a_3000_term_expression_exits_2_and_still_writes_json_and_html(tmp_path):
    deep = tmp_path / "deep.py"
    deep.write_text("x = " + "+".join(["1"] * 3000) + "\n")
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    p = run("check", str(deep), "--no-hidden", "--json", str(out_json), "--html", str(out_html))
    assert p.returncode == 2 and "nested too deeply" in p.stdout
    assert "Traceback" not in p.stdout + p.stderr
    assert "nested too deeply" in out_json.read_text() and out_html.read_text()


def test_check_on_a_fifo_refuses_at_once_instead_of_reading_it(tmp_path):
    fifo = tmp_path / "eve.py"
    os.mkfifo(fifo)
    p = run("check", str(fifo), "--no-hidden")
    assert p.returncode == 2 and "not a regular file" in p.stdout


def test_check_shows_a_submissions_escape_sequences_and_its_own_total_stands_alone(tmp_path):
    attack = tmp_path / "eve\x1b]0;pwned\x07.py"
    attack.write_text(with_overrides(SUBMISSIONS / "hostile" / "terminal_escapes.py"))
    p = run_raw("check", str(attack), "--no-hidden", "--mode", "isolated", "--steps", "1", "-v")
    assert p.returncode == 1, p.stdout + p.stderr
    assert [line for line in p.stdout.splitlines() if line.startswith("total:")] == \
        ["total: 33 / 34"]
    for raw in RAW_CONTROLS:
        assert raw not in p.stdout + p.stderr, raw
    assert "\\x1b[2J\\x1b[Htotal: 34 / 34 (all passed)" in p.stdout     # shown, not obeyed
    assert "eve\\x1b]0;pwned\\x07.py" in p.stdout


def test_grade_shows_escape_sequences_in_file_names_instead_of_obeying_them(tmp_path):
    (tmp_path / "class").mkdir()
    (tmp_path / "class" / "eve\x1b]0;pwned\x07.py").write_text("def dprobs(:\n")
    (tmp_path / "class" / "notes\x1b[2J\x07\r.txt").write_text("not a submission")
    p = run_raw("grade", str(tmp_path / "class"), "--out", str(tmp_path / "out"))
    assert p.returncode == 0, p.stdout + p.stderr
    for raw in RAW_CONTROLS:
        assert raw not in p.stdout + p.stderr, raw
    assert "skipped notes\\x1b[2J\\x07\\r.txt: not a .py" in p.stdout


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc/self/task "
                                                                "(Linux)")
def test_the_command_starts_no_blas_threads_beside_its_imports():
    """numpy's BLAS, loaded with torch, would start a thread for each core that spins while
    the command and the sandbox's worker import torch side by side (cli.run); a setting of
    the user's own is kept."""
    code = ("import os, grader.cli as cli\n"
            "def main():\n"
            "    import numpy\n"
            "    print(os.environ['OPENBLAS_NUM_THREADS'], len(os.listdir('/proc/self/task')))\n"
            "    return 0\n"
            "cli.main = main\n"
            "cli.run()\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["1", "1"], out.stderr
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OPENBLAS_NUM_THREADS": "2"},
                         capture_output=True, text=True)
    assert out.stdout.split()[:1] == ["2"], out.stderr
