"""Discovery of a class: one entry per student, whatever they handed in, and what was skipped."""

from __future__ import annotations

import pytest

from grader.submissions.discovery import DiscoveryError, discover_submissions, \
    pick_submission_file, unpack_class_zip

from test_batch import write, zip_of


def test_discovery_finds_files_folders_and_zips_and_says_what_it_skipped(tmp_path):
    d = tmp_path / "in"
    write(d / "alice.py", "x = 1\n")
    write(d / "bob.ipynb", "{}")
    write(d / "carol" / "work" / "backprop.py", "x = 1\n")
    write(d / "carol" / "notes.md", "my notes")
    write(d / "carol" / ".ipynb_checkpoints" / "backprop-checkpoint.py", "old")
    zip_of(d / "dave.zip", {"dave/backprop.ipynb": "{}", "__MACOSX/dave/._backprop.ipynb": "x"})
    write(d / "grades.xlsx", b"\x00")
    write(d / ".DS_Store", b"\x00")
    (d / "link.py").symlink_to(d / "alice.py")
    found = discover_submissions(d)
    assert [(e.student, e.label, e.problem) for e in found.entries] == [
        ("alice", "alice.py", None), ("bob", "bob.ipynb", None),
        ("carol", "carol/work/backprop.py", None), ("dave", "dave.zip/dave/backprop.ipynb", None)]
    assert {s.path: s.reason for s in found.skipped} == {
        ".DS_Store": "hidden or system file", "grades.xlsx": "not a .py, .ipynb or .zip file, "
        "nor a folder", "link.py": "a symbolic link (not followed)"}


def test_a_folder_without_one_clear_submission_gets_an_error_row_not_a_guess(tmp_path):
    d = tmp_path / "in"
    write(d / "erin" / "a.py", "")
    write(d / "erin" / "b.py", "")
    write(d / "fay" / "backprop.py", "")
    write(d / "fay" / "scratch.py", "")
    write(d / "gus" / "readme.txt", "")
    (d / "hal").mkdir()
    write(d / "ivy.zip", b"not a zip")
    entries = {e.student: e for e in discover_submissions(d).entries}
    assert "several files could be the submission in erin/: a.py, b.py" in entries["erin"].problem
    assert entries["fay"].problem is None and entries["fay"].label == "fay/backprop.py"
    assert entries["gus"].problem == "no .py or .ipynb file in gus/ (found: readme.txt)"
    assert entries["hal"].problem == "no .py or .ipynb file in hal/ (it is empty)"
    assert "ivy.zip: not a readable zip file" in entries["ivy"].problem


def test_two_submissions_with_one_id_make_one_row_naming_both(tmp_path):
    d = tmp_path / "in"
    write(d / "Jo.py", "")
    write(d / "jo.ipynb", "{}")
    (entry,) = discover_submissions(d).entries
    assert entry.problem == "several submissions for Jo: Jo.py, jo.ipynb; keep one and grade again"


def test_student_ids_are_safe_folder_names(tmp_path):
    d = tmp_path / "in"
    write(d / "Smith, Ann_1234_assignsubmission_file_.py", "")
    write(d / "..py", "")
    ids = [e.student for e in discover_submissions(d).entries]
    assert ids == ["Smith_Ann_1234_assignsubmission_file"]  # "..py" is hidden: skipped


def test_pick_submission_file_prefers_the_exercise_name():
    assert pick_submission_file(["a/backprop.ipynb", "a/util.py"], where="x") == \
        ("a/backprop.ipynb", None)
    assert pick_submission_file(["backprop.py", "backprop.ipynb"], where="x")[0] is None


def test_a_class_zip_is_unpacked_without_paths_outside_its_folder(tmp_path):
    zip_of(tmp_path / "class.zip", {"hw4/a/backprop.py": "x = 1\n", "../escape.py": "x = 1\n",
                                    "/abs.py": "x = 1\n"})
    (tmp_path / "into").mkdir()
    top = unpack_class_zip(tmp_path / "class.zip", tmp_path / "into")
    assert top == tmp_path / "into" / "hw4" and (top / "a" / "backprop.py").is_file()
    assert [p.name for p in tmp_path.rglob("*.py")] == ["backprop.py"]      # nothing else


def test_a_zip_too_large_once_unpacked_is_refused_for_the_class_and_for_a_student(tmp_path,
                                                                                  monkeypatch):
    import grader.submissions.discovery

    monkeypatch.setattr(grader.submissions.discovery, "_MAX_ZIP_MEMBERS", 2)
    (tmp_path / "in").mkdir()
    zip_of(tmp_path / "in" / "big.zip", {"a.py": "", "b.py": "", "backprop.py": ""})
    with pytest.raises(DiscoveryError, match="big.zip: too large once unpacked"):
        unpack_class_zip(tmp_path / "in" / "big.zip", tmp_path)
    (entry,) = discover_submissions(tmp_path / "in").entries
    assert entry.problem == "big.zip: too large once unpacked (more than 200 MB or 2 files)"


def test_a_missing_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(DiscoveryError, match="nowhere: no such folder"):
        discover_submissions(tmp_path / "nowhere")
