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
    top, skipped = unpack_class_zip(tmp_path / "class.zip", tmp_path / "into")
    assert top == tmp_path / "into" / "hw4" and (top / "a" / "backprop.py").is_file()
    assert [p.name for p in tmp_path.rglob("*.py")] == ["backprop.py"]      # nothing else
    assert {s.path: s.reason for s in skipped} == {
        "../escape.py": "a path outside the class folder (absolute or with ..): not unpacked",
        "/abs.py": "a path outside the class folder (absolute or with ..): not unpacked"}


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


def _lie_about_size(path, member: str, size: int) -> None:
    """Rewrite the central directory so that ``member`` claims ``size`` bytes."""
    data = bytearray(path.read_bytes())
    at = data.index(b"PK\x01\x02")
    while True:
        name_len = int.from_bytes(data[at + 28:at + 30], "little")
        if data[at + 46:at + 46 + name_len].decode() == member:
            data[at + 24:at + 28] = size.to_bytes(4, "little")
            break
        at = data.index(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(data))


def _corrupt(path, member: str) -> None:
    """Flip the bytes of ``member``'s compressed data (it was written deflated)."""
    import zipfile
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start, start + info.compress_size):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def test_each_bad_member_of_a_class_zip_is_its_own_skipped_line_and_the_rest_unpacks(tmp_path):
    import stat
    import zipfile

    good = "x = 1\n" * 50
    path = tmp_path / "class.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("alice.py", good)
        z.writestr("x" * 300 + ".py", good)                       # over-long name
        z.writestr("carol", good)                                 # a file, then a folder
        z.writestr("carol/backprop.py", good)
        z.writestr("../escape.py", good)
        z.writestr("/abs.py", good)
        link = zipfile.ZipInfo("link.py")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(link, "/etc/passwd")
        z.writestr("liar.py", good)
        z.writestr("corrupt.py", good)
        z.writestr("zoe.py", good)
    _lie_about_size(path, "liar.py", 3)
    _corrupt(path, "corrupt.py")
    top, skipped = unpack_class_zip(path, tmp_path / "into")
    reasons = {s.path: s.reason for s in skipped}
    assert sorted(p.name for p in top.iterdir()) == ["alice.py", "carol", "zoe.py"]
    assert reasons["x" * 300 + ".py"].startswith("could not be read (OSError")
    assert reasons["carol/backprop.py"] == ("another member already has this name (as a file "
                                            "or as a folder)")
    assert reasons["../escape.py"] == reasons["/abs.py"] == (
        "a path outside the class folder (absolute or with ..): not unpacked")
    assert reasons["link.py"] == "a symbolic link (not followed)"
    assert reasons["liar.py"].startswith("could not be read (BadZipFile")
    assert reasons["corrupt.py"].startswith("could not be read (")
    assert len(skipped) == 7


def test_a_fifo_in_the_class_folder_or_a_students_folder_is_skipped_never_opened(tmp_path):
    import os

    d = tmp_path / "in"
    write(d / "alice.py", "x = 1\n")
    write(d / "bob" / "notes.md", "x")
    os.mkfifo(d / "eve.py")          # opening it to read would block: the test would hang
    os.mkfifo(d / "bob" / "backprop.py")
    found = discover_submissions(d)
    assert {s.path: s.reason for s in found.skipped} == {
        "eve.py": "not a regular file (a FIFO, socket or device): not read"}
    entries = {e.student: e for e in found.entries}
    assert set(entries) == {"alice", "bob"}
    assert entries["bob"].problem.startswith("no .py or .ipynb file in bob/")


def test_names_that_make_one_id_are_both_graded_under_distinct_ids_and_listed(tmp_path):
    d = tmp_path / "in"
    write(d / "alice!.py", "x = 2\n")
    write(d / "alice.py", "x = 1\n")
    write(d / "alice?.py", "x = 3\n")
    found = discover_submissions(d)
    assert [(e.student, e.source, e.problem) for e in found.entries] == [
        ("alice", "alice.py", None), ("alice-2", "alice!.py", None),
        ("alice-3", "alice?.py", None)]
    assert found.collisions == (
        "alice.py (graded as alice) and alice!.py (graded as alice-2) and alice?.py (graded as "
        "alice-3) make the same id: each is graded under its own",)


def test_a_link_in_a_students_zip_is_never_their_submission(tmp_path):
    import stat
    import zipfile

    (tmp_path / "in").mkdir()
    with zipfile.ZipFile(tmp_path / "in" / "dave.zip", "w") as z:
        link = zipfile.ZipInfo("backprop.py")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(link, "/etc/passwd")
    (entry,) = discover_submissions(tmp_path / "in").entries
    assert entry.zip_member is None and entry.problem.startswith("no .py or .ipynb file in dave.zip")


def test_a_file_that_cannot_be_read_keeps_its_student_in_the_class(tmp_path, monkeypatch):
    import builtins

    import grader.submissions.discovery as discovery

    (tmp_path / "alice.py").write_text("x = 1\n")
    (tmp_path / "bob.py").write_text("x = 2\n")

    def refusing_open(path, *args, **kwargs):
        if str(path).endswith("alice.py"):
            raise PermissionError(13, "Permission denied")
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(discovery, "open", refusing_open, raising=False)
    found = discovery.discover_submissions(tmp_path)
    assert [e.student for e in found.entries] == ["alice", "bob"]
