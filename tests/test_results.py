"""Results files: written whole or not at all, with the permissions open() would give them."""

from __future__ import annotations

import os
import stat

import pytest

from grader.output.results import write_atomic


def test_a_file_is_written_whole_and_no_temp_file_stays(tmp_path):
    target = tmp_path / "deep" / "results.json"
    write_atomic(target, '{"a": 1}')
    write_atomic(target, b'{"a": 2}')
    assert target.read_text() == '{"a": 2}'
    assert sorted(p.name for p in target.parent.iterdir()) == ["results.json"]


def test_the_umask_in_force_when_writing_decides_the_permissions(tmp_path):
    previous = os.umask(0o027)          # set after grader.output.results was imported
    try:
        write_atomic(tmp_path / "report.html", "<p>hi</p>")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "report.html").stat().st_mode) == 0o640


def test_a_write_that_fails_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("old")

    class Unwritable(str):
        def encode(self, *args: object) -> bytes:
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_atomic(target, Unwritable("new"))
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
