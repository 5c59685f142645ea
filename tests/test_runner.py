"""The sandbox's worker: started early without torch, shared with forked processes."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from grader.sandbox.runner import SandboxRunner
from grader.sandbox.session import run_in_sandbox

from conftest import ROOT, descendants, is_fork_server, worker_pid

DOUBLE = "def f(x):\n    return x * 2\n"


def _own_fork_servers() -> int:
    """How many fork servers this process started (among its descendants)."""
    return sum(is_fork_server(argv) for _, argv in descendants(os.getpid()))


def _grade_in_forked_process(twin: SandboxRunner) -> dict:
    """Use ``twin`` in a forked process; what it saw, as a dict."""
    ours, theirs = multiprocessing.get_context("fork").Pipe()

    def body() -> None:
        with twin as runner:
            out = run_in_sandbox(DOUBLE, {"x": torch.ones(2)}, function="f", runner=runner)
            theirs.send_bytes(json.dumps({
                "status": out.status, "result": out.tensors["result"].tolist() if out.tensors
                else None, "servers": _own_fork_servers(), "isolation": runner.isolation}).encode())

    process = multiprocessing.get_context("fork").Process(target=body)
    process.start()
    twin.detach()
    seen = json.loads(ours.recv_bytes()) if ours.poll(60) else {}
    process.join(30)
    return seen


def test_importing_the_command_line_and_the_runner_does_not_import_torch():
    code = ("import sys, grader, grader.cli, grader.sandbox.runner; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_the_package_still_exports_its_api_on_first_use():
    import grader

    assert grader.check.__module__ == "grader.selfcheck"
    assert grader.Limits.__module__ == "grader.sandbox.limits"
    assert set(grader.__all__) <= set(dir(grader))
    with pytest.raises(AttributeError):
        grader.no_such_name  # noqa: B018


def test_a_launched_runner_grades_once_its_worker_is_ready_and_leaves_nothing_behind():
    runner = SandboxRunner().launch()
    try:
        out = run_in_sandbox(DOUBLE, {"x": torch.ones(2)}, function="f", runner=runner)
        proc = runner._worker.proc
    finally:
        runner.close()
    assert out.status == "ok" and torch.equal(out.tensors["result"], torch.full((2,), 2.0))
    assert proc is not None and proc.poll() is not None


def test_a_launched_runner_closed_unused_stops_its_worker():
    runner = SandboxRunner().launch()
    launch = runner._launch
    runner.close()
    assert launch is not None and launch.proc is not None and launch.proc.poll() is not None


def test_processes_forked_after_attach_share_the_runners_worker():
    with SandboxRunner().launch() as owner:
        owner.start()
        twins = [owner.attach(), owner.attach()]
        seen = [_grade_in_forked_process(t) for t in twins]
        assert all(s["status"] == "ok" and s["result"] == [2.0, 2.0] for s in seen), seen
        assert [s["servers"] for s in seen] == [0, 0]        # no worker of their own
        assert {s["isolation"] for s in seen} == {owner.isolation}
        # the twins are gone, the worker still serves its owner
        again = run_in_sandbox(DOUBLE, {"x": torch.ones(1)}, function="f", runner=owner)
        assert again.status == "ok"


def test_an_attached_runner_whose_worker_died_starts_one_of_its_own():
    with SandboxRunner() as owner:
        owner.start()
        twin = owner.attach()
        os.kill(worker_pid(owner), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while owner._worker.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        seen = _grade_in_forked_process(twin)
    assert seen["status"] == "ok" and seen["result"] == [2.0, 2.0]
    assert seen["servers"] >= 1          # its own (a fork server, and its spare child)


def test_a_runner_used_across_a_fork_without_attach_is_refused():
    with SandboxRunner() as runner:
        runner.start()
        ours, theirs = multiprocessing.get_context("fork").Pipe()

        def body() -> None:
            try:
                runner.start()
                theirs.send_bytes(b"used")
            except RuntimeError as e:
                theirs.send_bytes(str(e).encode())

        process = multiprocessing.get_context("fork").Process(target=body)
        process.start()
        message = ours.recv_bytes().decode() if ours.poll(30) else ""
        process.join(10)
    assert "cannot cross a fork" in message and "attach()" in message
