"""The sandbox worker's memory in huge pages (grader/_hugepages.py), tried in processes of their
own: moving a process's code under it is not something to do to the test runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from grader import _hugepages

from conftest import TORCH_CODE, needs_huge_pages

# runs some torch, moves the code that ran, then runs more (some of it code that did not run
# before the move), and tells what it found
_MOVE = TORCH_CODE + """
import json, torch

x = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))
before = (x @ x.T).tanh().sum(1, keepdim=True)
whole = torch_code()
_hugepages.collapse_anonymous_memory()
moved = _hugepages.move_text_to_huge_pages(keep_free=KEEP_FREE)
after = (x @ x.T).tanh().sum(1, keepdim=True)
other = torch.linalg.svdvals(x).sum().item() + torch.fft.rfft(x[0]).abs().sum().item()
print(json.dumps({"moved": moved, "whole": whole, "left": torch_code(),
                  "same": bool(torch.equal(before, after)), "other": other == other}))
"""


def _move(keep_free: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _MOVE.replace("KEEP_FREE", str(keep_free))],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"})
    return json.loads(out.stdout.splitlines()[-1])


@needs_huge_pages
def test_the_code_that_ran_moves_to_huge_pages_and_all_of_it_still_runs():
    found = _move(keep_free=0)
    assert found["moved"] >= 8 * 2**20                  # megabytes of torch's code
    assert found["moved"] < found["whole"]              # only what ran: not all 300 MB
    assert found["left"] == found["whole"] - found["moved"]   # no longer the file's pages there
    assert found["same"] and found["other"]


def test_nothing_moves_where_the_memory_would_run_short():
    found = _move(keep_free=2**62)
    assert found["moved"] == 0 and found["left"] == found["whole"]
    assert found["same"] and found["other"]


def _cgroup(tmp_path: Path, limit: str, usage: int) -> tuple[Path, Path]:
    (tmp_path / "memory.max").write_text(limit + "\n")
    (tmp_path / "memory.current").write_text(f"{usage}\n")
    return tmp_path / "memory.max", tmp_path / "memory.current"


def test_a_containers_memory_limit_counts_when_it_is_closer_than_the_systems(tmp_path,
                                                                              monkeypatch):
    system = _hugepages.available_bytes()
    limit = _cgroup(tmp_path, str(3 * 2**30), 2 * 2**30 + 512 * 2**20)   # 512 MiB left
    monkeypatch.setattr(_hugepages, "_cgroup_limits", lambda: iter([limit]))
    assert _hugepages.available_bytes() == min(system, 512 * 2**20)
    assert not _hugepages.can_spare()
    unlimited = _cgroup(tmp_path, "max", 2**30)
    monkeypatch.setattr(_hugepages, "_cgroup_limits", lambda: iter([unlimited]))
    assert _hugepages.available_bytes() == system or abs(
        _hugepages.available_bytes() - system) < 64 * 2**20       # (the system's moves a little)
