"""What a submission may use: the limits the grader sets on its sandboxed child.

The worker imports it too: it sets these limits on each child it forks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import wire

__all__ = ["Limits"]


@dataclass(frozen=True)
class Limits:
    """Resource limits for one submission's child; each reported by name when hit."""

    call_seconds: float = 20.0        # wall time: one request ("wall time")
    slow_seconds: float = 0.25        # wall time: a stub call still running after this long
                                      # runs on at the least CPU priority (not a limit: it
                                      # keeps its wall time; others come first for the CPU)
    start_seconds: float = 60.0       # wall time: start the child and run the file ("wall time")
    total_seconds: float = 900.0      # wall time: the whole submission ("total time")
    cpu_seconds: int = 300            # CPU time of one child ("CPU time")
    memory_bytes: int = 2 * 2**30     # heap and private memory of the child, torch's own ~250 MiB
                                      # included ("memory")
    max_processes: int = 32           # processes and threads of the child's uid ("processes")
    output_bytes: int = 64 * 1024     # stdout+stderr kept ("output bytes")
    file_bytes: int = 16 * 2**20      # largest file the child may write ("file size")
    wire: wire.WireLimits = field(default_factory=wire.WireLimits)  # returned tensors

    def for_child(self) -> dict[str, Any]:
        return {"cpu_seconds": self.cpu_seconds, "memory_bytes": self.memory_bytes,
                "max_processes": self.max_processes, "file_bytes": self.file_bytes,
                "max_tensor_bytes": self.wire.max_tensor_bytes,
                "max_tensors": self.wire.max_tensors}
