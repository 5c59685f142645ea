"""Code cells joined into one source: each under a marker line that names it, magics and shell
lines dropped with a note, and in the exercise-function format only definitions kept."""

from grader.submissions.code_cells import CELL_MARKER_RE, CodeCell, join_cells


def cell_of_line(code: str, line: int) -> tuple[str | None, int]:
    """Which cell a line of the joined source is in, and its line number inside that cell;
    ``(None, line)`` for source without cell markers (a .py file)."""
    label, start = None, 0
    for i, text in enumerate(code.splitlines()[: max(line, 1)], 1):
        m = CELL_MARKER_RE.match(text)
        if m:
            label, start = m.group("label"), i
    return label, line - start


def test_cells_keep_their_numbers_and_lines():
    code, _ = join_cells([CodeCell("cell 1", "a = 1\n"), CodeCell("cell 3", "b = 2\nc = 3\n")])
    line = code.splitlines().index("c = 3") + 1
    assert cell_of_line(code, line) == ("cell 3", 2)
    assert cell_of_line("x = 1\ny = 2\n", 2) == (None, 2)


def test_a_cell_cannot_fake_another_cells_marker():
    code, _ = join_cells([CodeCell("cell 1", "a = (1,\n# %% [cell 9]\n2)\n")])
    assert cell_of_line(code, 4) == ("cell 1", 3)
    assert code.splitlines()[1:] == ["a = (1,", "#  %% [cell 9]", "2)"]


def test_a_magic_line_becomes_pass_so_the_cells_lines_keep_their_numbers():
    code, notes = join_cells([CodeCell("In [1]", "%time x = 1\ny = 2\n")])
    assert code.splitlines() == ["# %% [In [1]]", "pass", "y = 2"]
    assert notes == ("IPython magics and shell lines were dropped (not run): In [1]: %time x = 1",)


def test_a_cell_magic_that_is_not_python_leaves_the_cell_out():
    code, notes = join_cells([CodeCell("cell 1", "%%bash\nrm -rf /\n"),
                              CodeCell("cell 2", "a = 1")])
    assert "rm -rf" not in code and "cell 1" not in code
    assert "cell 1: %%bash cell not run" in notes[0]


def test_in_the_function_format_scratch_work_is_blanked_and_named():
    code, notes = join_cells([CodeCell("cell 1", "def dprobs(dlogprobs, probs):\n    return 1\n"
                                                 "print(dprobs(1, 2))\nEPS = 1e-5\n")])
    assert code.splitlines()[1:] == ["def dprobs(dlogprobs, probs):", "    return 1", "",
                                     "EPS = 1e-5"]
    assert notes == ("not run: cell 1 line 3 (from a notebook in the exercise-function format "
                     "only functions, imports and constants are taken)",)
