"""The sandbox: tensors in, tensors out; failures become outcomes, never exceptions."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch

from grader.sandbox import bubblewrap
from grader.sandbox.limits import Limits
from grader.sandbox.runner import SandboxRunner
from grader.sandbox.session import Call, SandboxSession, run_in_sandbox
from grader.sandbox.wire import WireLimits

from conftest import ROOT, SOLUTION, descendants, require_bwrap, short_wall_time, worker_pid

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: children drop to their own "
                                                       "uid only when the grader runs as root")


@pytest.fixture(scope="module")
def runner():
    with SandboxRunner() as r:
        yield r


def open_session(code: str, *, filename: str, limits: Limits = Limits(),
                 runner: SandboxRunner | None = None) -> SandboxSession:
    """A session whose child has run ``code`` (the file) already."""
    session = SandboxSession(code, filename, limits, runner=runner)
    session.start()
    return session


def needs_bwrap(runner: SandboxRunner) -> None:
    require_bwrap(runner)


def test_a_stub_runs_in_the_child_and_returns_its_tensor(runner):
    with open_session("def f(x):\n    return x * 2\n", filename="s.py", runner=runner) as s:
        out = s.call("f", {"x": torch.ones(3)})
    assert out.status == "ok" and torch.equal(out.tensors["result"], torch.full((3,), 2.0))


def test_scalars_and_tensors_are_passed_by_name(runner):
    with open_session("def f(x, n):\n    return x * n\n", filename="s.py", runner=runner) as s:
        out = s.call("f", {"x": torch.ones(2), "n": 3})
    assert torch.equal(out.tensors["result"], torch.full((2,), 3.0))


def test_run_in_sandbox_runs_the_file_then_one_function_and_keeps_what_it_printed(runner):
    code = "print('loading')\ndef f(x):\n    print('calling')\n    return x + 1\n"
    out = run_in_sandbox(code, {"x": torch.zeros(2)}, Limits(), function="f", runner=runner)
    assert out.status == "ok" and torch.equal(out.tensors["result"], torch.ones(2))
    assert out.output == "loading\ncalling\n"


def test_a_session_without_a_runner_starts_and_stops_a_worker_of_its_own():
    with open_session("def f(x):\n    return x\n", filename="s.py") as s:
        assert s.call("f", {"x": torch.ones(1)}).status == "ok"
        proc = s.runner._worker.proc
    assert proc is not None and proc.poll() is not None


def test_the_student_traceback_keeps_only_student_lines(runner):
    code = "def helper():\n    return 1 / 0\n\ndef f(x):\n    return helper()\n"
    with open_session(code, filename="mine.py", runner=runner) as s:
        out = s.call("f", {"x": torch.ones(1)})
    assert out.status == "error" and "ZeroDivisionError" in out.message
    assert "mine.py" in out.traceback and "_child.py" not in out.traceback


def test_not_implemented_is_missing(runner):
    code = "def f(x):\n    raise NotImplementedError\n"
    with open_session(code, filename="s.py", runner=runner) as s:
        assert s.call("f", {"x": torch.ones(1)}).status == "missing"


def test_a_non_tensor_return_is_a_clear_error(runner):
    with open_session("def f(x):\n    return [1, 2]\n", filename="s.py", runner=runner) as s:
        out = s.call("f", {"x": torch.ones(1)})
    assert out.status == "error" and "list, expected a torch.Tensor" in out.message


def test_a_hang_times_out_and_the_next_call_gets_a_fresh_child(runner):
    code = "def hang(x):\n    while True: pass\n\ndef f(x):\n    return x + 1\n"
    with open_session(code, filename="s.py", limits=short_wall_time(1.0), runner=runner) as s:
        out = s.call("hang", {"x": torch.ones(1)})
        assert out.status == "timeout" and out.limit == "wall time"
        assert "(limit: wall time)" in out.message
        again = s.call("f", {"x": torch.ones(1)})
    assert again.status == "ok" and s.restarts == 1


PRIORITY_CODE = """\
import os, time
import torch

def _niceness_and_group():
    try:
        with open('/proc/self/autogroup') as f:
            group = float('nice 19' in f.read())
    except OSError:
        group = -1.0                    # no autogroups on this kernel
    return float(os.getpriority(os.PRIO_PROCESS, 0)), group

def _priority():
    return torch.tensor(_niceness_and_group())

def busy(seconds):
    # spins until it sees itself lowered (its autogroup too, where it has one), at most seconds
    start = time.monotonic()
    while time.monotonic() - start < seconds and _niceness_and_group() not in ((19, 1), (19, -1)):
        pass
    return _priority()

def quick():
    return _priority()
"""


SLOW_SECONDS = 1.0      # far beyond a quick call, however busy the machine


def _lowered_after_a_long_request(runner: SandboxRunner, code: str = PRIORITY_CODE
                                  ) -> list[list[float]]:
    """The child's niceness and autogroup: at first, after a stub call running past
    slow_seconds (it runs until it sees itself lowered), and at the call after; the runner's
    on_slow_call counted at each."""
    told = []
    runner.on_slow_call = lambda: told.append(1)
    try:
        with open_session(code, filename="s.py", runner=runner,
                          limits=Limits(call_seconds=60.0, slow_seconds=SLOW_SECONDS)) as s:
            seen = []
            for name, inputs in (("quick", {}), ("busy", {"seconds": 30.0}), ("quick", {})):
                out = s.call(name, inputs)
                assert out.status == "ok", out.message
                seen.append(out.tensors["result"].tolist() + [len(told)])
    finally:
        runner.on_slow_call = None
    return seen


def _expect_lowered(seen: list[list[float]]) -> None:
    first, long, after = seen
    assert first[0] == 0 and first[2] == 0            # a quick request: left alone
    assert long[0] == 19 and long[2] == 1             # lowered while it ran; the runner told
    assert after[0] == 19 and after[2] == 1           # it stays low; told once
    if Path("/proc/self/autogroup").exists() and os.geteuid() == 0:
        # the kernel groups processes by session; root is not held to one change per 100 ms
        assert first[1] == 0 and long[1] == 1


def test_a_request_that_runs_long_runs_on_at_the_least_cpu_priority(runner):
    """Code looping until its wall time runs out then uses only CPU nothing else wants; it
    keeps its wall time (the call above succeeds: slow_seconds is not a limit)."""
    _expect_lowered(_lowered_after_a_long_request(runner))


def test_running_the_file_is_never_lowered_however_long_it_takes(runner):
    """A student's file may train a model at top level: seconds, by right."""
    code = PRIORITY_CODE + f"\nbusy({SLOW_SECONDS + 0.5})\n"
    first, long, after = _lowered_after_a_long_request(runner, code)
    assert first[0] == 0 and first[2] == 0 and long[0] == 19


def test_a_child_without_a_fork_server_is_lowered_the_same_way():
    with pytest.warns(RuntimeWarning, match="bubblewrap needs Linux"):
        with SandboxRunner(forkserver=False) as r:
            _expect_lowered(_lowered_after_a_long_request(r))


def test_a_crash_is_described(runner):
    code = "import os\ndef f(x):\n    os._exit(3)\n"
    with open_session(code, filename="s.py", runner=runner) as s:
        out = s.call("f", {"x": torch.ones(1)})
    assert out.status == "error" and "exited with code 3" in out.message


def test_prints_are_captured_and_capped(runner):
    code = "def f(x):\n    print('A' * 100000)\n    return x\n"
    with open_session(code, filename="s.py", limits=Limits(output_bytes=1000),
                      runner=runner) as s:
        assert s.call("f", {"x": torch.ones(1)}).status == "ok"
    text = s.output()
    assert text.startswith("A" * 1000) and "(limit: output bytes)" in text
    assert s.output_dropped == 100001 - 1000


def test_an_error_at_top_level_fails_the_load(runner):
    with open_session("raise RuntimeError('boom')\n", filename="s.py", runner=runner) as s:
        assert s.load_outcome.status == "error"
        assert "run top to bottom" in s.load_outcome.message and "boom" in s.load_outcome.message


def test_inputs_arrive_as_fresh_tensors_with_no_graph_and_no_grad(runner):
    code = ("import torch\n"
            "def f(x):\n"
            "    flags = [x.requires_grad, x.grad is None, x.grad_fn is None]\n"
            "    x.mul_(0)\n"
            "    return torch.tensor(flags)\n")
    x = torch.ones(3, requires_grad=True) * 2          # a graph on the grader's side
    with open_session(code, filename="s.py", runner=runner) as s:
        first = s.call("f", {"x": x.detach()})
        second = s.call("f", {"x": x.detach()})
    assert first.tensors["result"].tolist() == [False, True, True]
    assert second.status == "ok" and torch.equal(x.detach(), torch.full((3,), 2.0))


def test_calls_of_one_request_that_share_a_tensor_each_get_one_of_their_own(runner):
    """The tensor goes once; a call that zeroes its input must not zero the next call's, nor
    the other parameter's when one call takes the same tensor twice."""
    code = ("import torch\n"
            "def f(x):\n"
            "    before = x.sum()\n"
            "    x.mul_(0)\n"
            "    return before.reshape(1)\n"
            "def g(a, b):\n"
            "    a.mul_(0)\n"
            "    return b.sum().reshape(1)\n")
    x = torch.full((3,), 2.0)
    with open_session(code, filename="s.py", runner=runner) as s:
        outcomes = s.call_many([Call("f", {"x": x}), Call("g", {"a": x, "b": x}),
                                Call("f", {"x": x}), Call("g", {"a": x, "b": x})])
    assert [o.tensors["result"].item() for o in outcomes] == [6.0, 6.0, 6.0, 6.0]
    assert torch.equal(x, torch.full((3,), 2.0))


def test_the_worker_forks_children_from_one_thread_with_torch_already_imported(runner):
    runner.start()
    assert runner.worker_info["threads"] == 1
    code = ("import os, sys\n"
            "def f(x):\n"
            "    print(os.getppid(), 'torch' in sys.modules)\n"
            "    return x\n")
    out = run_in_sandbox(code, {"x": torch.ones(1)}, function="f", runner=runner)
    assert out.output.split() == [str(runner.worker_info["pid"]), "True"]


_HUGE_PAGE_SETTINGS = Path("/sys/kernel/mm/transparent_hugepage")


@pytest.mark.skipif(not (_HUGE_PAGE_SETTINGS / "enabled").exists(),
                    reason="needs a kernel with transparent huge pages (their settings in "
                           "/sys/kernel/mm/transparent_hugepage)")
def test_the_worker_asks_glibc_for_huge_pages_and_sees_the_kernels_settings(runner):
    """torch leaves the worker ~150 MB of heap: in 2 MB pages each child's fork and exit cost a
    fraction. glibc puts it there only if it can read the kernel's settings, in bwrap too."""
    runner.start()
    pid = worker_pid(runner)
    assert pid is not None
    environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert b"GLIBC_TUNABLES=glibc.malloc.hugetlb=1" in environment
    seen = Path(f"/proc/{pid}/root") / _HUGE_PAGE_SETTINGS.relative_to("/") / "enabled"
    assert seen.read_text() == (_HUGE_PAGE_SETTINGS / "enabled").read_text()
    if runner.isolation == "bwrap":     # and nothing of /sys but the settings, read-only
        mounts = [line.split() for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()]
        under_sys = [(m[4], m[5].split(",")) for m in mounts if m[4].startswith("/sys")]
        assert [(point, "ro" in options) for point, options in under_sys] == \
            [(str(_HUGE_PAGE_SETTINGS), True)]


def test_bwrap_is_shown_the_huge_page_settings_only_where_they_can_be_read(tmp_path,
                                                                            monkeypatch):
    """bwrap gives up on a bind whose source it cannot reach (a missing one aside), and the
    grader would then fall back to weaker isolation: no bind where the settings are unreadable."""
    def binds(settings: Path) -> list[list[str]]:
        monkeypatch.setattr(bubblewrap, "_HUGE_PAGE_SETTINGS", str(settings))
        args = bubblewrap.sandbox_command(["python"], bwrap="bwrap", package_dir=str(ROOT),
                                          tmp_bytes=2**20, env={})
        return [args[i - 1:i + 2] for i, a in enumerate(args) if a == str(settings)][:1]

    settings = tmp_path / "transparent_hugepage"
    settings.mkdir()
    (settings / "enabled").write_text("always [madvise] never\n")
    assert binds(settings) == [["--ro-bind", str(settings), str(settings)]]
    assert binds(tmp_path / "missing") == []
    monkeypatch.setattr(bubblewrap.os, "access", lambda path, mode: False)   # e.g. not root
    assert binds(settings) == []


def test_student_code_runs_with_the_garbage_collector_on(runner):
    """The worker imports torch with it off (entry.main): its children must not inherit
    that, or code that makes reference cycles in a loop would run out of memory."""
    code = ("import gc\n"
            "def f(x):\n"
            "    print(gc.isenabled())\n"
            "    return x\n")
    out = run_in_sandbox(code, {"x": torch.ones(1)}, function="f", runner=runner)
    assert out.output.split() == ["True"]


@as_root
def test_each_child_runs_as_its_own_unprivileged_uid_without_groups(runner):
    code = ("import os\n"
            "def f(x):\n"
            "    print(os.getuid(), os.geteuid(), os.getgid(), os.getgroups())\n"
            "    return x\n")
    with open_session(code, filename="s.py", runner=runner) as s:
        assert s.call("f", {"x": torch.ones(1)}).status == "ok"
        uid = s.uid
    assert uid is not None and uid > 0
    assert s.output().split() == [str(uid)] * 3 + ["[]"]


def test_each_child_starts_in_a_fresh_empty_folder_that_is_wiped_after(runner):
    code = ("import os\n"
            "def f(x):\n"
            "    print(os.getcwd(), sorted(os.listdir('.')))\n"
            "    open('left-behind.txt', 'w').write('x')\n"
            "    return x\n")
    seen = []
    for _ in range(2):
        out = run_in_sandbox(code, {"x": torch.ones(1)}, function="f", runner=runner)
        cwd, listing = out.output.split(" ", 1)
        seen.append(cwd)
        assert listing.strip() == "[]"
    assert seen[0] != seen[1]
    root = Path(f"/proc/{worker_pid(runner)}/root") if runner.isolation == "bwrap" else Path("/")
    deadline = time.monotonic() + 5
    while any((root / c.lstrip("/")).exists() for c in seen) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any((root / c.lstrip("/")).exists() for c in seen)


@pytest.mark.parametrize("limit, limits, code, returns", [
    ("memory", Limits(memory_bytes=512 * 2**20),
     "import torch\ndef f(x):\n    return torch.ones(2**28)\n", "tensor"),
    # not lowered: the CPU time runs out before the wall time, however busy the machine
    ("CPU time", Limits(cpu_seconds=1, call_seconds=120, slow_seconds=120),
     "def f(x):\n    while True: pass\n", "tensor"),
    ("file size", Limits(file_bytes=2**20),
     "def f(x):\n    open('big', 'wb').write(bytes(2**21))\n    return x\n", "tensor"),
    ("returned tensor count", Limits(wire=WireLimits(max_tensors=4)),
     "def f(x):\n    return [x] * 5\n", "list"),
    ("returned tensor size", Limits(wire=WireLimits(max_tensor_bytes=1024)),
     "import torch\ndef f(x):\n    return torch.zeros(1000)\n", "tensor"),
])
def test_a_limit_that_is_hit_is_reported_by_name(runner, limit, limits, code, returns):
    out = run_in_sandbox(code, {"x": torch.ones(1)}, limits, function="f", returns=returns,
                         runner=runner)
    assert out.status == "error" and out.limit == limit
    assert f"(limit: {limit})" in out.message


def test_the_whole_submission_has_a_time_limit_too(runner):
    """Four calls of 0.7 s each: the last begins past the 2 s, the first long before (the
    worker is started first: only the child's start counts), however busy the machine."""
    runner.start()
    code = "import time\ndef f(x):\n    time.sleep(0.7)\n    return x\n"
    limits = Limits(total_seconds=2.0)
    with open_session(code, filename="s.py", limits=limits, runner=runner) as s:
        outcomes = [s.call("f", {"x": torch.ones(1)}) for _ in range(4)]
    assert outcomes[0].status == "ok"
    assert outcomes[-1].status == "timeout" and outcomes[-1].limit == "total time"


def test_autograd_calls_are_reported_with_the_student_line(runner):
    code = ("def f(x):\n"
            "    x = x.clone().requires_grad_()\n"
            "    (x * x).sum().backward()\n"
            "    return x.grad\n")
    out = run_in_sandbox(code, {"x": torch.ones(2)}, function="f", runner=runner)
    assert out.status == "ok" and torch.equal(out.tensors["result"], torch.full((2,), 2.0))
    kinds = {e["kind"]: e["detail"] for e in out.integrity}
    assert set(kinds) == {"autograd", "requires_grad", "grad"}
    assert "f(), line 3: (x * x).sum().backward()" in kinds["autograd"]


def test_setting_requires_grad_and_calling_autograd_grad_are_seen(runner):
    code = ("import torch\n"
            "def f(x):\n"
            "    x = x.clone()\n"
            "    x.requires_grad = True\n"
            "    return torch.autograd.grad((x ** 3).sum(), x)[0]\n")
    out = run_in_sandbox(code, {"x": torch.ones(2)}, function="f", runner=runner)
    details = " ".join(e["detail"] for e in out.integrity)
    assert "sets .requires_grad = True" in details and "torch.autograd.grad()" in details


def test_torch_func_grad_is_seen_and_gives_no_gradient_beside_the_watch(runner):
    code = ("import torch\n"
            "from torch.func import grad\n"
            "def f(x):\n"
            "    return grad(lambda t: (t ** 3).sum())(x)\n")
    # torch.func's first call imports torch._dynamo (seconds): never lowered, with room to
    # spare, so that a loaded machine cannot turn it into a timeout
    limits = Limits(call_seconds=120, slow_seconds=120)
    out = run_in_sandbox(code, {"x": torch.ones(2)}, limits, function="f", runner=runner)
    # torch.func's grad refuses to run beside the watch's saved-tensors hooks
    assert out.status == "error" and "result" not in out.tensors
    records = {(e["kind"], e["detail"]) for e in out.integrity}
    assert ("autograd", "f(), line 4: return grad(lambda t: (t ** 3).sum())(x) uses "
                        "torch.func's autograd transforms (grad, vjp, jacrev or hessian)") in records


def test_backward_through_a_parameter_and_forward_mode_ad_are_seen(runner):
    code = ("import torch\n"
            "import torch.autograd.forward_ad as fwAD\n"
            "def f(x):\n"
            "    p = torch.nn.Parameter(x.clone())\n"
            "    (p * p).sum().backward()\n"
            "    return p.grad\n"
            "def g(x):\n"
            "    with fwAD.dual_level():\n"
            "        d = fwAD.make_dual(x, torch.ones_like(x))\n"
            "        return fwAD.unpack_dual(d * d).tangent\n")
    # (an unwatched backward pass, reaching the engine without an entry point, is
    # tests/submissions/hostile/unwatched_original.py)
    for function, what in (("f", "calls Tensor.backward()"),
                           ("g", "uses forward-mode AD (jacfwd, jvp or forward_ad)")):
        out = run_in_sandbox(code, {"x": torch.ones(2)}, function=function, runner=runner)
        assert out.status == "ok"
        assert any(e["kind"] == "autograd" and e["detail"].endswith(what)
                   for e in out.integrity), out.integrity


def test_plain_tensor_code_raises_no_integrity_record(runner):
    code = "def f(x):\n    return (x * 2).sum(0, keepdim=True)\n"
    out = run_in_sandbox(code, {"x": torch.ones(2, 2)}, function="f", runner=runner)
    assert out.status == "ok" and out.integrity == ()


@as_root
def test_a_session_stops_without_waiting_and_its_uid_serves_no_second_child_meanwhile(
        runner, monkeypatch):
    """A session's close asks the worker to stop its child and gives the uid back at once; the
    worker, not the runner, makes sure that no two children ever share a uid. Here the uid goes
    to a second session while the first is still open (as if its stop were still unread): the
    worker ends the first child before the second starts."""
    others = ("import os\n"
              "def f(x):\n"
              "    print(sorted(p for p in os.listdir('/proc') if p.isdigit()\n"
              "                 and os.stat('/proc/' + p).st_uid == os.getuid()\n"
              "                 and int(p) != os.getpid()))\n"
              "    return x\n")
    with open_session("def f(x):\n    return x\n", filename="first.py", runner=runner) as first:
        uid = first.uid
        assert uid is not None
        monkeypatch.setattr(runner._uids, "take", lambda: uid)
        with open_session(others, filename="others.py", runner=runner) as second:
            assert second.uid == uid
            assert second.call("f", {"x": torch.ones(1)}).status == "ok"
            seen = second.output().strip()
    assert seen == "[]", f"processes of uid {uid} outside the second child: {seen}"
    monkeypatch.undo()
    with open_session("def f(x):\n    return x\n", filename="s.py", runner=runner) as s:
        assert s.call("f", {"x": torch.ones(1)}).status == "ok"     # fresh uids go on


_PIDS = Path("/sys/fs/cgroup/pids")


@pytest.mark.skipif(not os.access(_PIDS, os.W_OK), reason="needs root and cgroup v1's pids "
                    "controller at /sys/fs/cgroup/pids, to keep the worker from forking")
def test_a_worker_that_cannot_fork_its_next_spare_waits_for_the_next_request(tmp_path):
    """Forking the next spare fails (here: the worker's pids group is full). The worker tries
    again at the next request, not in a loop: idle, it uses no CPU and forks nothing."""
    group = _PIDS / f"backprop-grader-test-{os.getpid()}"
    group.mkdir()
    try:
        with SandboxRunner() as r:
            for _ in range(2):          # two uids, each swept once (the sweep forks too)
                with open_session("def f(x):\n    return x\n", filename="w.py", runner=r):
                    pass
            for pid, _ in descendants(r._worker.proc.pid):     # type: ignore[union-attr]
                (group / "cgroup.procs").write_text(str(pid))
            (group / "pids.max").write_text((group / "pids.current").read_text())
            with open_session("def f(x):\n    return x\n", filename="s.py", runner=r) as s:
                assert s.call("f", {"x": torch.ones(1)}).status == "ok"   # the spare there
                before, failed_before = _cpu_seconds(worker_pid(r)), _failed_forks(group)
                time.sleep(1.0)
                used = _cpu_seconds(worker_pid(r)) - before
                failed = _failed_forks(group) - failed_before
                started = time.monotonic()
                another = SandboxSession("def f(x):\n    return x\n", "t.py", Limits(), runner=r)
                refused = another.start()
                waited = time.monotonic() - started
                another.close()
            (group / "pids.max").write_text("max")
        assert failed <= 5, f"{failed} forks failed in a second"      # a loop: hundreds
        assert used < 0.5, f"the idle worker used {used:.2f} s of CPU in a second"
        # a session that finds no child to be had is told so at once, not after a timeout
        assert refused.status == "error", refused
        assert "could not fork a child" in (refused.message or "") or \
            "could not start a child" in (refused.message or ""), refused.message
        assert waited < 10, f"the refused session waited {waited:.1f} s"
    finally:
        for pid in (group / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                (_PIDS / "cgroup.procs").write_text(pid)
        group.rmdir()


def _failed_forks(group: Path) -> int:
    return int((group / "pids.events").read_text().split()[1])       # "max N"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_sessions_in_threads_share_one_worker_and_each_gets_its_own_uid(runner):
    code = "import os\ndef f(x):\n    print(os.getuid())\n    return x * os.getpid()\n"
    results: list = []

    together = threading.Barrier(4, timeout=60)

    def grade() -> None:
        with open_session(code, filename="s.py", runner=runner) as s:
            out = s.call("f", {"x": torch.ones(1)})
            together.wait()        # all four sessions open at once
            results.append((out.status, s.uid))

    threads = [threading.Thread(target=grade) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [status for status, _ in results] == ["ok"] * 4
    if runner.can_drop_uid:
        assert len({uid for _, uid in results}) == 4


def test_without_bwrap_the_runner_warns_once_and_isolates_processes(monkeypatch):
    monkeypatch.setattr(bubblewrap, "find_bwrap", lambda: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with SandboxRunner() as r:
            out = run_in_sandbox("def f(x):\n    return x\n", {"x": torch.ones(1)}, function="f",
                                 runner=r)
            out = run_in_sandbox("def f(x):\n    return x\n", {"x": torch.ones(1)}, function="f",
                                 runner=r)
    assert out.status == "ok" and r.isolation == "process"
    assert [str(w.message) for w in caught if "bubblewrap" in str(w.message)] == [
        "backprop-grader: bubblewrap (bwrap) is not installed; falling back to process "
        "isolation (student code can read any file this user can read; see the README, "
        "'Security model')"]


def test_a_bwrap_that_cannot_start_also_falls_back(monkeypatch):
    monkeypatch.setattr(bubblewrap, "find_bwrap", lambda: "/bin/false")
    with pytest.warns(RuntimeWarning, match="bubblewrap is installed but the sandbox did not"):
        with SandboxRunner() as r:
            r.start()
    assert r.isolation == "process"


def test_asking_for_bwrap_where_there_is_none_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(bubblewrap, "find_bwrap", lambda: None)
    with SandboxRunner(isolation="bwrap") as r:
        out = run_in_sandbox("def f(x):\n    return x\n", {"x": torch.ones(1)}, function="f",
                             runner=r)
    assert out.status == "error" and "bubblewrap (bwrap) is not installed" in out.message


def test_in_bwrap_the_child_sees_no_work_tree_no_host_tmp_and_no_network(runner, tmp_path):
    needs_bwrap(runner)
    marker = tmp_path / "host-only.txt"
    marker.write_text("secret")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    paths = [str(SOLUTION), str(ROOT / "tests"), str(marker), str(ROOT / "grader")]
    code = ("import os, socket\n"
            "def f(x):\n"
            f"    print(*[os.path.exists(p) for p in {paths!r}])\n"
            "    try:\n"
            f"        socket.create_connection(('127.0.0.1', {listener.getsockname()[1]}), 1)\n"
            "        print('connected')\n"
            "    except OSError:\n"
            "        print('no network')\n"
            "    return x\n")
    with listener:
        out = run_in_sandbox(code, {"x": torch.ones(1)}, function="f", runner=runner)
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert out.output.split("\n")[:2] == ["False False False True", "no network"]


def test_where_there_is_no_fork_server_each_child_is_a_fresh_interpreter():
    code = "def f(x):\n    return x * 3\n\ndef hang(x):\n    while True: pass\n"
    with pytest.warns(RuntimeWarning, match="bubblewrap needs Linux"):
        with SandboxRunner(forkserver=False) as r:
            with open_session(code, filename="s.py", limits=short_wall_time(1.0),
                              runner=r) as s:
                hung = s.call("hang", {"x": torch.ones(1)})
                again = s.call("f", {"x": torch.ones(1)})
    assert r.isolation == "process" and hung.limit == "wall time"
    assert again.status == "ok" and torch.equal(again.tensors["result"], torch.full((1,), 3.0))


def test_a_worker_that_died_is_started_again_for_the_next_session():
    import signal

    with SandboxRunner() as r:
        first = run_in_sandbox("def f(x):\n    return x\n", {"x": torch.ones(1)}, function="f",
                               runner=r)
        os.kill(worker_pid(r), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while r._worker.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        second = run_in_sandbox("def f(x):\n    return x\n", {"x": torch.ones(1)}, function="f",
                                runner=r)
    assert first.status == second.status == "ok"


# -- several calls in one request (SandboxSession.call_many) ------------------------------------

COUNTING = """\
import time
calls = []
def f(x):
    calls.append(1)
    return x * len(calls)
def slow(x):
    while True:
        pass
def grow(x):
    x += 100
    return x
def count(x):
    return x * 0 + len(calls)
"""


def _calls_sent(session, monkeypatch) -> list[list[str]]:
    """The names of the calls in each request the session sends from now on."""
    sent: list[list[str]] = []
    original = session._send_request

    def send_request(meta, *args):
        if meta.get("op") == "calls":
            sent.append([call["name"] for call in meta["calls"]])
        return original(meta, *args)

    monkeypatch.setattr(session, "_send_request", send_request)
    return sent


def _frames_sent(session, monkeypatch) -> list[int]:
    """Counts the frames the session sends from now on."""
    sent: list[int] = []
    original = session._send

    def send(frame, deadline):
        sent.append(len(frame))
        return original(frame, deadline)

    monkeypatch.setattr(session, "_send", send)
    return sent


def test_several_calls_go_in_one_request_and_each_gets_its_own_answer(runner, monkeypatch):
    from grader.sandbox.session import Call

    x = torch.ones(2)
    with open_session(COUNTING, filename="s.py", runner=runner) as s:
        sent = _frames_sent(s, monkeypatch)
        outs = s.call_many([Call("f", {"x": x}), Call("f", {"x": x}), Call("missing", {"x": x}),
                            Call("f", {"x": x})])
    assert len(sent) == 1, "one round trip"
    assert [o.status for o in outs] == ["ok", "ok", "missing", "ok"]
    assert [o.tensors["result"].tolist() for o in outs if o.status == "ok"] == \
        [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]


def test_a_tensor_taken_by_several_calls_is_sent_once_and_copied_for_each(runner, monkeypatch):
    from grader.sandbox.session import Call

    x = torch.zeros(1000)
    with open_session(COUNTING, filename="s.py", runner=runner) as s:
        sent = _frames_sent(s, monkeypatch)
        outs = s.call_many([Call("grow", {"x": x}), Call("grow", {"x": x})])
    assert sent[0] < 2 * 4000, "the tensor's 4,000 bytes went once"
    assert [float(o.tensors["result"][0]) for o in outs] == [100.0, 100.0], \
        "the second call did not see the first one's in-place change"
    assert float(x[0]) == 0.0


def test_a_call_that_hangs_ends_the_request_and_the_calls_after_it_run_in_a_new_child(runner):
    from grader.sandbox.session import Call

    with open_session(COUNTING, filename="s.py", limits=short_wall_time(1.0), runner=runner) as s:
        outs = s.call_many([Call("f", {"x": torch.ones(1)}), Call("slow", {"x": torch.ones(1)}),
                            Call("count", {"x": torch.ones(1)})])
        restarts = s.restarts
    assert [o.status for o in outs] == ["ok", "timeout", "ok"]
    assert outs[1].limit == "wall time" and "took longer than 1 s" in outs[1].message
    assert restarts == 1
    assert float(outs[2].tensors["result"]) == 0.0, "a fresh child: its module state is new"


def test_after_a_hang_the_same_function_is_not_run_again_in_that_request(runner, monkeypatch):
    from grader.sandbox.session import Call

    with open_session(COUNTING, filename="s.py", limits=short_wall_time(1.0), runner=runner) as s:
        sent = _calls_sent(s, monkeypatch)
        outs = s.call_many([Call("slow", {"x": torch.ones(1)}, group="slow"),
                            Call("slow", {"x": torch.zeros(1)}, group="slow"),
                            Call("f", {"x": torch.ones(1)}, group="f")])
    assert [o.status for o in outs] == ["timeout", "timeout", "ok"]
    assert outs[1] is outs[0]
    assert sent == [["slow", "slow", "f"], ["f"]], "waited once, not twice"


def test_a_child_that_answers_out_of_step_is_restarted(runner):
    from grader.sandbox.session import Call

    code = ("import json, os, struct\n"
            "def twice(x):\n"
            "    header = json.dumps({'meta': {'status': 'missing', 'index': 5}, 'tensors': {}})"
            ".encode()\n"
            "    os.write(3, struct.pack('>QI', len(header), len(header)) + header)\n"
            "    return x\n"
            "def f(x):\n"
            "    return x\n")
    with open_session(code, filename="s.py", runner=runner) as s:
        outs = s.call_many([Call("twice", {"x": torch.ones(1)}), Call("f", {"x": torch.ones(1)})])
        restarts = s.restarts
    assert outs[0].status == "error" and "more or fewer answers than calls" in outs[0].message
    assert outs[1].status == "ok" and restarts == 1


@pytest.mark.parametrize("meta", ["[" * 100_000 + "]" * 100_000, "9" * 50_000],
                         ids=["nested", "huge-integer"])
def test_a_forged_reply_too_deep_or_with_a_huge_integer_is_that_calls_error(runner, meta):
    from grader.sandbox.session import Call

    code = ("import os, struct\n"
            "def forge(x):\n"
            f"    header = b'{{\"meta\": {meta}, \"tensors\": {{}}}}'\n"
            "    os.write(3, struct.pack('>QI', len(header), len(header)) + header)\n"
            "    return x\n"
            "def f(x):\n"
            "    return x\n")
    with open_session(code, filename="s.py", runner=runner) as s:
        outs = s.call_many([Call("forge", {"x": torch.ones(1)}, group="forge"),
                            Call("f", {"x": torch.ones(1)}, group="f")])
    assert outs[0].status == "error" and "not tensors" in outs[0].message
    assert outs[1].status == "ok"


def test_after_a_crash_the_same_function_is_not_run_again_in_that_request(runner):
    from grader.sandbox.session import Call

    code = "import os\ndef crash(x):\n    os._exit(3)\ndef f(x):\n    return x\n"
    with open_session(code, filename="s.py", runner=runner) as s:
        outs = s.call_many([Call("crash", {"x": torch.ones(1)}, group="crash"),
                            Call("crash", {"x": torch.zeros(1)}, group="crash"),
                            Call("f", {"x": torch.ones(1)}, group="f")])
        restarts = s.restarts
    assert outs[0].status == "error" and "exit" in outs[0].message
    assert outs[1] is outs[0] and outs[2].status == "ok"
    assert restarts == 1, "one restart, for f; the second crash call did not run"


def test_every_call_gets_an_outcome_when_the_whole_submission_runs_out_of_time(runner):
    from grader.sandbox.session import Call

    runner.start()             # the worker's start is not the submission's time
    code = ("import os, time\n"
            "def crash(x):\n    time.sleep(2.2)\n    os._exit(3)\n"
            "def f(x):\n    return x\n")
    limits = Limits(total_seconds=2.0, call_seconds=5.0)
    with open_session(code, filename="s.py", limits=limits, runner=runner) as s:
        outs = s.call_many([Call("crash", {"x": torch.ones(1)}, group="crash"),
                            Call("f", {"x": torch.ones(1)}, group="f"),
                            Call("crash", {"x": torch.ones(1)}, group="crash")])
    assert len(outs) == 3
    assert outs[0].status == "error"
    assert outs[1].limit == outs[2].limit == "total time"


def test_a_flood_of_grad_reads_does_not_crowd_out_the_backward_pass_after_it(runner):
    reads = "".join(f"        x.grad,\n" for _ in range(30))
    code = ("import torch\n"
            "def f(x):\n"
            "    x = x.clone().requires_grad_()\n"
            f"    _ = (\n{reads}    )\n"
            "    (x * x).sum().backward()\n"
            "    return x.grad\n")
    out = run_in_sandbox(code, {"x": torch.ones(2)}, function="f", runner=runner)
    assert out.status == "ok"
    assert any(e["kind"] == "autograd" for e in out.integrity), out.integrity


@pytest.mark.parametrize("poison, changed", [
    # the watch's depth counter set at load: every entry point would think it is inside
    ("[c.cell_contents for c in torch.Tensor.backward.__closure__"
     " if hasattr(c.cell_contents, 'take')][0]._inside = 1", "the watch's state"),
    # a thread left running by the file: saved-tensors hooks are per thread
    ("import threading, time\nthreading.Thread(target=time.sleep, args=(30,), daemon=True)"
     ".start()", "a thread of its own"),
])
def test_a_watch_poisoned_when_the_file_runs_is_told_as_tampering(poison, changed, runner):
    code = f"import torch\n{poison}\ndef f(x):\n    return x * 2\n"
    out = run_in_sandbox(code, {"x": torch.ones(2)}, function="f", runner=runner)
    tamper = [e["detail"] for e in out.integrity if e["kind"] == "tamper"]
    assert any(changed in d for d in tamper), out.integrity


@pytest.mark.parametrize("erase", [
    "for c in torch.Tensor.backward.__closure__:\n"
    "        if hasattr(c.cell_contents, 'take'):\n"
    "            c.cell_contents.events.clear()",
    "import gc\n    gc.unfreeze()\n    for o in gc.get_objects():\n"
    "        if type(o).__name__ == 'AutogradWatch':\n            o.events.clear()",
])
def test_a_record_erased_after_autograd_was_used_has_reached_the_grader_already(erase, runner):
    code = ("import torch\n"
            "def f(x):\n"
            "    x = x.clone().requires_grad_()\n"
            "    (x * x).sum().backward()\n"
            "    g = x.grad\n"
            f"    {erase}\n"
            "    return g\n")
    out = run_in_sandbox(code, {"x": torch.ones(2)}, function="f", runner=runner)
    assert out.status == "ok"
    assert any(e["kind"] == "autograd" for e in out.integrity), out.integrity


def test_a_module_the_code_wrote_is_not_imported_and_the_attempt_is_tampering(runner):
    code = ("import os, sys\n"
            "open('helper_mod.py', 'w').write('X = 42\\n')\n"
            "sys.path.insert(0, os.getcwd())\n"
            "import helper_mod\n"
            "def f(x):\n"
            "    return x * helper_mod.X\n")
    out = run_in_sandbox(code, {"x": torch.ones(2)}, function="f", runner=runner)
    assert out.status == "error" and "a file your code wrote" in (out.message or "")
    assert any(e["kind"] == "tamper" and "helper_mod" in e["detail"] for e in out.integrity)


def test_a_tensor_method_replaced_in_a_call_is_put_back_before_the_grader_uses_it(runner):
    # the grader's own code copies and sends the answer after the call: with Tensor.detach
    # the student's, it would run their code unwatched
    code = ("import torch\n"
            "def f(x):\n"
            "    torch.Tensor.detach = lambda t, *a, **k: t * 0 + 7\n"
            "    return x * 2\n")
    out = run_in_sandbox(code, {"x": torch.ones(2)}, function="f", runner=runner)
    assert out.status == "ok" and torch.equal(out.tensors["result"], torch.full((2,), 2.0))
    assert any(e["kind"] == "tamper" and "Tensor.detach" in e["detail"] for e in out.integrity)
