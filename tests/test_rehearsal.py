"""The sandbox worker's rehearsal (grader/rehearsal.py): one session served before any fork."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from grader.sandbox.worker import rehearsal
from grader.sandbox.runner import SandboxRunner
from grader.sandbox.session import run_in_sandbox


@pytest.fixture(scope="module")
def runner():
    with SandboxRunner() as r:
        yield r


def test_the_rehearsal_answers_every_request_and_leaves_no_trace_in_the_process():
    # in a process of its own: the autograd watch patches torch for good
    code = ("import gc, linecache\n"
            "from grader.sandbox.worker.child import warm_up\n"
            "from grader.sandbox.worker.rehearsal import FILENAME, rehearse\n"
            "watch = warm_up()\n"
            "print(rehearse(watch))\n"
            "print(FILENAME in linecache.cache, watch.filename, watch.take())\n"
            "print(sum(type(o) is type(rehearse) and o.__code__.co_filename == FILENAME\n"
            "          for o in gc.get_objects()))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == ["['ok', 'ok', 'ok', 'ok']", "False <submission> []", "0"]


def test_the_rehearsal_file_computes_no_gradient():
    """It warms torch up with the operations answers use; it must not be one."""
    namespace: dict = {}
    exec(compile(rehearsal.REHEARSAL, rehearsal.FILENAME, "exec"), namespace)  # noqa: S102
    grads = namespace["backward"](
        logits=torch.randn(4, 27), Yb=torch.zeros(4, dtype=torch.long), n=4,
        h=torch.randn(4, 8), W2=torch.randn(8, 27), hpreact=torch.randn(4, 8),
        bngain=torch.ones(1, 8), bnvar_inv=torch.ones(1, 8), bnraw=torch.randn(4, 8),
        embcat=torch.randn(4, 6), W1=torch.randn(6, 8), emb=torch.randn(4, 3, 2),
        Xb=torch.zeros(4, 3, dtype=torch.long), C=torch.randn(27, 2))
    assert [tuple(g.shape) for g in grads] == [(27, 2), (6, 8), (8,), (8, 27), (27,), (1, 8),
                                               (1, 8)]
    assert all(not g.any() for g in grads)


def test_the_worker_rehearses_before_forking_and_children_start_clean(runner: SandboxRunner):
    runner.start()
    assert runner.worker_info["rehearsal"] == ["ok", "ok", "ok", "ok"]
    code = ("import linecache, torch\n"
            "def f(x):\n"
            "    names = ('tour' in globals(), 'backward' in globals(),\n"
            "             '<rehearsal>' in linecache.cache)\n"
            "    return torch.tensor([float(b) for b in names])\n")
    out = run_in_sandbox(code, {"x": torch.ones(1)}, function="f", runner=runner)
    assert out.status == "ok", out.message
    assert out.tensors["result"].tolist() == [0.0, 0.0, 0.0]


def test_a_rehearsal_too_large_for_the_socket_fails_instead_of_waiting_forever():
    code = ("import torch\n"
            "from grader.sandbox import wire\nfrom grader.sandbox.worker import rehearsal\n"
            "from grader.sandbox.worker.child import warm_up\n"
            "big = wire.encode_frame({'op': 'calls', 'calls': []}, {'x': torch.zeros(2**22)})\n"
            "rehearsal._frames = lambda: [big]\n"
            "try:\n"
            "    rehearsal.rehearse(warm_up())\n"
            "except BlockingIOError:\n"
            "    print('refused')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out == "refused\n"
