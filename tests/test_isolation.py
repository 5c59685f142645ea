"""Between students: nothing a child makes outlives its session or reaches another child (IPC
objects, temporary files, a full /tmp), and no process starts once the file has run.

Each runs with bubblewrap and without; the fallback (a worker without CAP_SYS_ADMIN, as root in
a container may be: no namespaces of the children's own) runs too, where it applies.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from contextlib import ExitStack
from typing import Iterator

import pytest
import torch

from grader.sandbox import launch
from grader.sandbox.limits import Limits
from grader.sandbox.runner import SandboxRunner
from grader.sandbox.session import SandboxSession

from conftest import SUBMISSIONS, require_bwrap

SESSIONS = SUBMISSIONS / "hostile" / "sessions"
_MIB = 2**20
X = {"x": torch.ones(1)}

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: children drop to their own "
                                                       "uid only when the grader runs as root")


def _without_sys_admin(command: list[str]) -> list[str]:
    """The worker's command run without CAP_SYS_ADMIN (setpriv, inside bubblewrap where it is
    used): as root in a container that does not grant it."""
    return ["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin", "--"] + command


def _runner(stack: ExitStack, kind: str) -> SandboxRunner:
    isolation_kind, _, fallback = kind.partition("-")
    if fallback:
        if os.geteuid() != 0 or not shutil.which("setpriv"):
            pytest.skip("the fallback is made by dropping CAP_SYS_ADMIN: needs root and setpriv")
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        original = launch.python_command
        patch.setattr(launch, "python_command",
                      lambda **kw: _without_sys_admin(original(**kw)))
    runner = stack.enter_context(SandboxRunner(isolation=isolation_kind, tmp_bytes=32 * _MIB))
    if isolation_kind == "bwrap":
        require_bwrap(runner)
    runner.start()
    return runner


@pytest.fixture(scope="module", params=["bwrap", "process"])
def runner(request) -> Iterator[SandboxRunner]:
    """A runner whose children get namespaces of their own where the kernel allows it."""
    with ExitStack() as stack:
        r = _runner(stack, request.param)
        if not r.namespaces:
            pytest.skip("the kernel gives the children no namespaces of their own here (not "
                        "root, no CAP_SYS_ADMIN): the fallback tests cover this")
        yield r


@pytest.fixture(scope="module", params=["bwrap-fallback", "process-fallback"])
def fallback_runner(request) -> Iterator[SandboxRunner]:
    """A runner whose worker may not make namespaces: the children share its IPC namespace and
    temporary folders."""
    with ExitStack() as stack:
        r = _runner(stack, request.param)
        assert not r.namespaces
        yield r


def session(name: str, runner: SandboxRunner, limits: Limits = Limits()) -> SandboxSession:
    s = SandboxSession((SESSIONS / name).read_text(), name, limits, runner=runner)
    assert s.start().status == "ok"
    return s


def printed(s: SandboxSession, word: str) -> str:
    """What ``s`` printed after ``word`` (its last such line)."""
    lines = re.findall(rf"^{word} (.*)$", s.output(), re.M)
    return lines[-1] if lines else ""


def test_a_recorders_ipc_objects_and_files_reach_no_replayer_beside_it_or_after_it(runner):
    recorder = session("ipc_recorder.py", runner)
    with recorder:
        assert recorder.call("record", X).status == "ok"
        assert "sysv" in printed(recorder, "made")       # it did make them, in its own
        with session("ipc_replayer.py", runner) as beside:
            assert beside.call("replay", X).status == "ok"
            assert printed(beside, "found") == "[]"
    with session("ipc_replayer.py", runner) as after:
        assert after.call("replay", X).status == "ok"
        assert printed(after, "found") == "[]"


def _needs_own_uids(runner: SandboxRunner) -> None:
    if not runner.can_drop_uid:
        pytest.skip("children without a uid of their own share the grader's: nothing of theirs "
                    "can be told apart and removed")


def test_without_namespaces_what_a_session_left_is_removed_before_another_child_runs(
        fallback_runner):
    _needs_own_uids(fallback_runner)
    with session("ipc_recorder.py", fallback_runner) as recorder:
        assert recorder.call("record", X).status == "ok"
        assert "sysv" in printed(recorder, "made")
    with session("ipc_replayer.py", fallback_runner) as after:
        assert after.call("replay", X).status == "ok"
        assert printed(after, "found") == "[]"


def test_without_namespaces_a_session_whose_child_ended_is_cleared_before_its_uid_serves_again(
        fallback_runner, monkeypatch):
    """The first session's child ends by itself (a timer signal) and the uid goes to a second
    session before the first is closed (as if its stop were still unread): the worker clears
    the first session before the second child runs, never while it runs."""
    _needs_own_uids(fallback_runner)
    ends = ("import signal\n"
            "def f(x):\n"
            "    signal.setitimer(signal.ITIMER_REAL, 0.05)\n"
            "    return x\n")
    keeps = ("import ctypes\n"                   # a SysV segment: the IPC namespace is shared
             "libc = ctypes.CDLL(None, use_errno=True)\n"
             "made = libc.shmget(0x5EC12E8, 4096, 0o1000 | 0o600) >= 0\n"
             "def f(x):\n"
             "    print('kept', made, libc.shmget(0x5EC12E8, 4096, 0) >= 0)\n"
             "    return x\n")
    with SandboxSession(ends, "ends.py", Limits(), runner=fallback_runner) as first:
        assert first.start().status == "ok" and first.call("f", X).status == "ok"
        uid = first.uid
        time.sleep(0.5)                   # its child is gone, and reaped by the worker
        monkeypatch.setattr(fallback_runner._uids, "take", lambda: uid)
        second = SandboxSession(keeps, "keeps.py", Limits(), runner=fallback_runner)
        assert second.start().status == "ok" and second.uid == uid
        monkeypatch.undo()
    with second:                          # the first's stop is read now
        time.sleep(0.2)
        assert second.call("f", X).status == "ok"
        assert printed(second, "kept") == "True True"


def test_no_posix_message_queue_can_be_made(runner):
    code = ("import ctypes, os\n"
            "rt = ctypes.CDLL('librt.so.1', use_errno=True)\n"
            "def f(x):\n"
            "    q = rt.mq_open(b'/recorded', os.O_CREAT | os.O_RDWR, 0o666, None)\n"
            "    print('queue', q, ctypes.get_errno())\n"
            "    return x\n")
    with SandboxSession(code, "s.py", Limits(), runner=runner) as s:
        assert s.start().status == "ok" and s.call("f", X).status == "ok"
        assert printed(s, "queue").split()[0] == "-1"


def test_one_child_filling_its_tmp_leaves_room_for_another_beside_it(runner):
    with session("fills_tmp.py", runner) as filler:
        assert filler.call("fill", X).status == "ok"
        full = printed(filler, "full").split()
        assert full[1] == "ENOSPC" and int(full[0]) <= 32        # its own 32 MiB
        with session("fills_tmp.py", runner) as other:
            assert other.call("write_a_little", X).status == "ok"


def test_a_full_temporary_folder_is_reported_as_a_limit(runner):
    with session("fills_tmp.py", runner) as filler:
        out = filler.call("fill_and_fail", X)
    assert out.status == "error" and out.limit == "temporary space"
    assert "(limit: temporary space)" in out.message and "32 MiB" in out.message


@as_root
def test_a_child_has_no_capabilities_once_it_runs_as_its_uid(runner):
    code = ("def f(x):\n"
            "    status = open('/proc/self/status').read()\n"
            "    print(*[l for l in status.splitlines() if l.startswith(('CapEff', 'CapPrm'))])\n"
            "    return x\n")
    with SandboxSession(code, "s.py", Limits(), runner=runner) as s:
        assert s.start().status == "ok" and s.call("f", X).status == "ok"
    assert sorted(s.output().split()) == ["0" * 16, "0" * 16, "CapEff:", "CapPrm:"]


@pytest.mark.parametrize("start", [
    "os.fork()",
    "subprocess.run(['true'])",
    "os.posix_spawn('/bin/true', ['true'], {})",
    "threading.Thread(target=print).start()",
])
def test_starting_a_process_or_thread_after_the_file_has_run_is_that_calls_error(runner,
                                                                                  start):
    code = f"import os, subprocess, threading\ndef f(x):\n    {start}\n" \
           "    return x\ndef g(x):\n    return x * 2\n"
    with SandboxSession(code, "s.py", Limits(), runner=runner) as s:
        assert s.start().status == "ok"
        out = s.call("f", X)
        assert out.status == "error" and out.limit == "processes"
        assert "after your file had run" in out.message
        assert s.call("g", X).tensors["result"].item() == 2.0       # the session goes on


def test_starting_processes_while_the_file_loads_still_works(runner):
    code = "import subprocess\nsubprocess.run(['true'], check=True)\ndef f(x):\n    return x\n"
    with SandboxSession(code, "s.py", Limits(), runner=runner) as s:
        assert s.start().status == "ok"


@as_root
def test_a_helper_started_while_the_file_loaded_is_gone_once_it_has(runner):
    with session("forks_at_load.py", runner) as s:
        assert s.call("helper_alive", X).status == "ok"
        assert s.output().split() == ["gone"]

