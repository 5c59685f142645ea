"""The memory limit holds for a submission as a whole: all its processes and memory files, in a
memory cgroup of its own; where none can be made, the per-process limits hold alone."""

from __future__ import annotations

import socket
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Iterator

import pytest
import torch

from grader.sandbox import launch
from grader.sandbox.limits import Limits
from grader.sandbox.runner import SandboxRunner
from grader.sandbox.session import SandboxSession, run_in_sandbox
from grader.sandbox.worker import memory_groups

from conftest import SUBMISSIONS, require_bwrap

SESSIONS = SUBMISSIONS / "hostile" / "sessions"
MEMORY = Limits(memory_bytes=512 * 2**20)
X = {"x": torch.ones(1)}


def _start(stack: ExitStack, isolation: str) -> SandboxRunner:
    runner = stack.enter_context(SandboxRunner(isolation=isolation))
    if isolation == "bwrap":
        require_bwrap(runner)
    return runner.start()


@pytest.fixture(scope="module", params=["bwrap", "process"])
def runner(request) -> Iterator[SandboxRunner]:
    """A runner whose children each get a memory cgroup, where the kernel lets us make one."""
    with ExitStack() as stack:
        r = _start(stack, request.param)
        if r.memory_problem:
            pytest.skip(f"no memory cgroup for the children here: {r.memory_problem}")
        yield r


@pytest.fixture(scope="module", params=["bwrap", "process"])
def runner_without_groups(request) -> Iterator[SandboxRunner]:
    """A runner where no memory cgroup could be made (the fallback)."""
    with ExitStack() as stack:
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        patch.setattr(launch, "make_worker_group", lambda: "no cgroup (the test says so)")
        yield _start(stack, request.param)


def worker_folder(runner: SandboxRunner) -> Path:
    group = runner._worker.group       # type: ignore[union-attr]
    assert isinstance(group, memory_groups.WorkerGroup)
    return Path(group.path)


def test_helpers_and_memory_files_together_cannot_pass_the_limit(runner):
    """Six forked helpers of 250 MiB and 60 memfds of 16 MiB, each under every per-process
    limit, while the file loads: the submission is ended at 512 MiB, and told so."""
    with SandboxSession((SESSIONS / "memory_helpers.py").read_text(), "memory_helpers.py",
                        MEMORY, runner=runner) as s:
        out = s.start()
        assert "ALL ALLOCATED" not in s.output()
    assert out.status == "error" and out.limit == "memory"
    assert "ran out of memory" in out.message and "(limit: memory)" in out.message


def test_memory_files_made_in_a_call_count_too(runner):
    code = ("import os\n"
            "def f(x):\n"
            "    fds = [os.memfd_create('m') for _ in range(60)]\n"
            "    for fd in fds:\n"
            "        for _ in range(16):\n"
            "            os.write(fd, bytes(2**20))\n"
            "    return x\n"
            "def g(x):\n"
            "    return x * 2\n")
    with SandboxSession(code, "s.py", MEMORY, runner=runner) as s:
        assert s.start().status == "ok"
        out = s.call("f", X)
        assert out.status == "error" and out.limit == "memory"
        assert s.call("g", X).tensors["result"].item() == 2.0      # in a fresh child


def test_a_session_within_its_limit_is_untouched(runner):
    code = "import torch\ndef f(x):\n    return x * torch.ones(2**24).sum()\n"     # 64 MiB
    out = run_in_sandbox(code, X, MEMORY, function="f", runner=runner)
    assert out.status == "ok" and out.tensors["result"].item() == 2**24


def test_a_child_is_in_its_own_group_before_the_students_code_runs(runner):
    """The spare joins the group the worker made for it before it takes a session: the file's
    first line already runs there."""
    code = ("line = next(l for l in open('/proc/self/cgroup') if ':memory:' in l)\n"
            "print(line.strip().rsplit('/', 2)[-2:])\n"
            "def f(x):\n    return x\n")
    with SandboxSession(code, "s.py", MEMORY, runner=runner) as s:
        assert s.start().status == "ok"
        folder, group = eval(s.output().strip())          # noqa: S307  our own print
    assert folder == worker_folder(runner).name and group.startswith("child-")


def test_the_worker_hears_whether_a_spare_joined_its_group():
    from grader.sandbox.worker.spare import joined_group

    for said, joined in ((b"1", True), (b"0", False)):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with ours, theirs:
            theirs.send(said)
            assert joined_group(ours) is joined
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.close()                                  # the spare ended before it said anything
    with ours, pytest.raises(OSError):
        joined_group(ours)


def test_a_spare_that_cannot_join_its_group_says_so(capsys):
    from grader.sandbox.worker import spare

    class Refused(memory_groups.SessionGroup):
        def __init__(self) -> None:
            pass

        def join(self) -> None:
            raise PermissionError(13, "Permission denied")

    assert spare._joined(Refused()) is False
    assert "no memory cgroup for a child" in capsys.readouterr().err


def test_each_childs_group_goes_with_its_session_and_the_folder_with_the_worker():
    with SandboxRunner() as r:
        r.start()
        if r.memory_problem:
            pytest.skip(f"no memory cgroup for the children here: {r.memory_problem}")
        folder = worker_folder(r)
        with SandboxSession("def f(x):\n    return x\n", "s.py", MEMORY, runner=r) as s:
            assert s.start().status == "ok"
            assert s.call("f", X).status == "ok"
            groups = {p.name for p in folder.iterdir() if p.is_dir()}     # and the spare's
            ours = [g for g in groups
                    if (folder / g / "memory.limit_in_bytes").exists()
                    and int((folder / g / "memory.limit_in_bytes").read_text()) == 512 * 2**20]
            assert len(ours) == 1
        deadline = time.monotonic() + 5          # the worker tidies up after the session
        while (folder / ours[0]).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not (folder / ours[0]).exists()
    assert not folder.exists()


def test_folders_of_a_grader_that_died_are_removed_by_the_next_one(tmp_path):
    found = memory_groups._parent()
    if isinstance(found, str):
        pytest.skip(f"no memory cgroup for the children here: {found}")
    parent, _ = found
    dead = next(p for p in range(4_000_000, 4_100_000) if not memory_groups._alive(p))
    stale = Path(parent) / f"backprop-grader-{dead}-1"
    (stale / "child-7").mkdir(parents=True)
    made = memory_groups.make_worker_group()
    try:
        assert isinstance(made, memory_groups.WorkerGroup)
        assert not stale.exists()
    finally:
        if isinstance(made, memory_groups.WorkerGroup):
            made.remove()
    assert not Path(made.path).exists()


def test_on_cgroup_v2_the_groups_are_v2_ones(runner):
    if runner.worker_info.get("memory_groups") != 2:
        pytest.skip("cgroup v2 with a delegated memory controller: this machine's memory "
                    f"cgroups are v{runner.worker_info.get('memory_groups')}")
    assert (worker_folder(runner).parent / "cgroup.subtree_control").exists()


def test_without_a_group_the_runner_says_why_and_each_process_is_still_limited(
        runner_without_groups):
    assert runner_without_groups.memory_problem == "no cgroup (the test says so)"
    code = "import torch\ndef f(x):\n    return torch.ones(2**28)\n"      # 1 GiB in one go
    out = run_in_sandbox(code, X, MEMORY, function="f", runner=runner_without_groups)
    assert out.status == "error" and out.limit == "memory"
