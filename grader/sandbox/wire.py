"""Frames between the grader and the sandboxed child: a JSON header plus raw tensor bytes.

Never pickle. A frame is ``8-byte length | 4-byte header length | JSON header | tensor bytes``;
the header says each tensor's dtype, shape and byte range, and the reader checks every one of
them against the limits before it builds a tensor.
"""

from __future__ import annotations

import json
import math
import os
import select
import struct
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

__all__ = ["WIRE_DTYPES", "FrameError", "FrameReader", "WireLimits", "decode_frame",
           "decode_whole_frame", "encode_frame", "unsendable_reason"]

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
    "bfloat16": torch.bfloat16, "int64": torch.int64, "int32": torch.int32, "bool": torch.bool,
}
_NAMES = {v: k for k, v in _DTYPES.items()}
WIRE_DTYPES = frozenset(_NAMES)
_ITEMSIZE = {name: torch.empty((), dtype=dtype).element_size() for name, dtype in _DTYPES.items()}
_LEN = struct.Struct(">QI")
Alarm = tuple[float, Callable[[], None]]       # FrameReader.read's: (when, what to call)


def _carrier(dtype: torch.dtype) -> torch.dtype:
    """The dtype whose bytes carry ``dtype``'s through numpy (which has no bfloat16)."""
    return torch.int16 if dtype == torch.bfloat16 else dtype


_NUMPY = {name: torch.empty((), dtype=_carrier(dtype)).numpy().dtype
          for name, dtype in _DTYPES.items()}


class FrameError(Exception):
    """A frame that breaks the format or the limits; ``limit`` names the limit it broke, if any."""

    def __init__(self, message: str, *, limit: str | None = None) -> None:
        super().__init__(message)
        self.limit = limit


@dataclass(frozen=True)
class WireLimits:
    """What one frame may carry; the grader checks every reply from the sandbox against these."""

    max_frame_bytes: int = 256 * 2**20
    max_tensors: int = 64
    max_tensor_bytes: int = 64 * 2**20
    max_header_bytes: int = 4 * 2**20


_SPARSE = (torch.sparse_coo, torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc)


def unsendable_reason(t: torch.Tensor) -> str | None:
    """Why a plain ``torch.Tensor`` cannot travel in a frame, in a student's terms ("a sparse
    tensor (torch.sparse_coo): call .to_dense()"); None when it can. Reads only what every
    tensor has (nested, layout, device, dtype), before anything that copies or reads its values
    fails, or hangs, on such a tensor: a nested tensor has no shape, a meta tensor no values, a
    sparse one no strides."""
    try:
        if t.is_nested:
            return "a nested tensor: return one plain tensor, of the gradient's shape"
        layout = t.layout
        if layout in _SPARSE:
            return f"a sparse tensor ({layout}): call .to_dense()"
        if layout != torch.strided:
            return f"a tensor of layout {layout}: call .to_dense()"
        if t.device.type == "meta":
            return ("a meta tensor, which has no values (only a shape): compute the gradient "
                    "from the tensors you were given")
        dtype = t.dtype
        if t.is_quantized:
            return (f"a quantized tensor ({dtype}), which holds rounded values: return the "
                    "float32 gradient itself")
        if dtype.is_complex:
            return f"a {str(dtype).removeprefix('torch.')} tensor: return a real float32 tensor"
        if dtype not in WIRE_DTYPES:
            return (f"a {str(dtype).removeprefix('torch.')} tensor, a dtype the grader does not "
                    "grade: return a float32 tensor")
    except Exception:  # noqa: BLE001  whatever it is, it cannot be read as a plain tensor
        return "a tensor that cannot be read as a plain one: return a float32 tensor"
    return None


def _raw(t: torch.Tensor) -> Any:
    """The bytes of a plain contiguous CPU tensor, without a copy (through its carrier)."""
    carrier = _carrier(t.dtype)
    array = (t if carrier == t.dtype else t.view(carrier)).numpy()   # a view only if it must
    return memoryview(array.reshape(-1)).cast("B")


def encode_frame(meta: dict[str, Any], tensors: dict[str, torch.Tensor] | None = None) -> bytes:
    specs: dict[str, dict[str, Any]] = {}
    chunks: list[Any] = []
    offset = 0
    for name, t in (tensors or {}).items():
        why = unsendable_reason(t)
        if why is not None:
            raise FrameError(f"tensor {name!r} is {why}")
        if t.requires_grad or t.device.type != "cpu" or not t.is_contiguous() or t.is_neg():
            t = t.detach().to("cpu").resolve_neg().contiguous()
        raw = _raw(t) if t.numel() else b""
        specs[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape),
                       "offset": offset, "nbytes": len(raw)}
        chunks.append(raw)
        offset += len(raw)
    header = json.dumps({"meta": meta, "tensors": specs}, allow_nan=True).encode()
    return b"".join([_LEN.pack(len(header) + offset, len(header)), header, *chunks])


_MAX_HEADER_DEPTH = 32      # what the grader sends back is a few levels deep; code downstream recurses
_MAX_INT_DIGITS = 24        # a count, a size, an offset: never more than 2**64


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise FrameError(f"header holds an integer of {len(text):,} digits")
    return int(text)


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value``, found without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if level <= _MAX_HEADER_DEPTH:
                stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict)
                                                      else item))
    return deepest


def decode_frame(body: bytes | bytearray, header_len: int, limits: WireLimits, *,
                 from_grader: bool = False) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A frame's meta and tensors. ``from_grader``: a request the grader made, read in the
    child: its integers and nesting are the grader's own, and go unchecked (a tenth of the
    child's cost of a request)."""
    if header_len > min(len(body), limits.max_header_bytes):
        raise FrameError(f"header of {header_len} bytes is too large")
    try:
        header = json.loads(body[:header_len], parse_int=None if from_grader else _bounded_int)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FrameError(f"header is not JSON: {e}") from None
    except (RecursionError, ValueError, MemoryError) as e:   # the child is the student's process
        raise FrameError(f"header is not JSON the grader reads: {type(e).__name__}") from None
    if not from_grader and _depth(header) > _MAX_HEADER_DEPTH:
        raise FrameError(f"header nested more than {_MAX_HEADER_DEPTH} levels deep")
    if not isinstance(header, dict) or not isinstance(header.get("tensors"), dict):
        raise FrameError("header is not an object with 'tensors'")
    meta = header.get("meta")
    if not isinstance(meta, dict):
        raise FrameError("header has no 'meta' object")
    specs = header["tensors"]
    if len(specs) > limits.max_tensors:
        raise FrameError(f"{len(specs)} tensors, more than the {limits.max_tensors} allowed "
                         "(limit: returned tensor count)", limit="returned tensor count")
    data = memoryview(body)[header_len:]
    tensors: dict[str, torch.Tensor] = {}
    for name, spec in specs.items():
        tensors[str(name)] = _decode_tensor(str(name), spec, data, limits)
    return meta, tensors


def _decode_tensor(name: str, spec: Any, data: memoryview, limits: WireLimits) -> torch.Tensor:
    if not isinstance(spec, dict):
        raise FrameError(f"tensor {name!r}: bad description")
    raw_dtype = spec.get("dtype")
    dtype = _DTYPES.get(raw_dtype) if isinstance(raw_dtype, str) else None
    shape, offset, nbytes = spec.get("shape"), spec.get("offset"), spec.get("nbytes")
    if dtype is None:
        raise FrameError(f"tensor {name!r}: dtype {str(raw_dtype)[:40]!r} is not allowed")
    if (not isinstance(shape, list) or len(shape) > 8
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40
                       for d in shape)):
        raise FrameError(f"tensor {name!r}: bad shape {shape!r}")
    expected = math.prod(shape) * _ITEMSIZE[spec["dtype"]]
    if math.prod(d for d in shape if d) * _ITEMSIZE[spec["dtype"]] > limits.max_tensor_bytes:
        if not expected:                                 # empty, sizes no tensor could have
            raise FrameError(f"tensor {name!r}: bad shape {shape!r}")
        raise FrameError(f"tensor {name!r}: shape {tuple(shape)} is {expected:,} bytes, more than "
                         f"the {limits.max_tensor_bytes:,} allowed (limit: returned tensor size)",
                         limit="returned tensor size")
    if (not isinstance(offset, int) or not isinstance(nbytes, int) or nbytes != expected
            or offset < 0 or offset + nbytes > len(data)):
        raise FrameError(f"tensor {name!r}: byte range does not match its shape")
    if not nbytes:
        return torch.empty(shape, dtype=dtype)
    array = np.frombuffer(data, dtype=_NUMPY[spec["dtype"]],
                          count=nbytes // _ITEMSIZE[spec["dtype"]], offset=offset)
    tensor = torch.from_numpy(array.reshape(shape).copy())     # its own, writable memory
    return tensor if tensor.dtype == dtype else tensor.view(dtype)     # from its carrier


def decode_whole_frame(frame: bytes, limits: WireLimits = WireLimits()
                       ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``decode_frame`` of a frame as ``encode_frame`` made it, length prefix and all."""
    _, header_len = _LEN.unpack_from(frame)
    return decode_frame(frame[_LEN.size:], header_len, limits)


class FrameReader:
    """Frames from one file descriptor, read in large chunks: a burst of replies that came in
    while the reader was busy costs one read, not two selects and two reads each."""

    def __init__(self, fd: int, *, limits: WireLimits = WireLimits(),
                 from_grader: bool = False) -> None:
        self.fd, self.limits, self.from_grader = fd, limits, from_grader
        self.buffer = bytearray()

    def read(self, *, deadline: float | None = None, alarm: Alarm | None = None
             ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """The next frame; TimeoutError past ``deadline``, EOFError at end, FrameError for a
        frame beyond the limits (nothing more can be read after one). ``alarm``: (when, call):
        ``call()`` once if the frame has not begun to come by ``when``; only with a deadline,
        and only when it comes before the deadline."""
        while len(self.buffer) < _LEN.size:
            self._fill(deadline, None if self.buffer else alarm)
            alarm = None
        total, header_len = _LEN.unpack_from(self.buffer)
        if total > self.limits.max_frame_bytes:
            raise FrameError(f"a reply of {total:,} bytes, more than the "
                             f"{self.limits.max_frame_bytes:,} allowed (limit: reply size)",
                             limit="reply size")
        end = _LEN.size + total
        if len(self.buffer) >= end:                   # all here already
            body = self.buffer[_LEN.size:end]
            del self.buffer[:end]
        else:                                         # the rest straight into the body: one copy
            body = bytearray(total)
            got = len(self.buffer) - _LEN.size
            body[:got] = memoryview(self.buffer)[_LEN.size:]
            self.buffer = bytearray()
            view = memoryview(body)
            while got < total:
                self._wait(deadline)
                n = os.readv(self.fd, [view[got:]])
                if not n:
                    raise EOFError
                got += n
        return decode_frame(body, header_len, self.limits, from_grader=self.from_grader)

    def _wait(self, deadline: float | None, alarm: Alarm | None = None) -> None:
        if alarm is not None and deadline is not None and alarm[0] < deadline:
            ready, _, _ = select.select([self.fd], [], [], max(alarm[0] - time.monotonic(), 0))
            if ready:
                return
            alarm[1]()
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                raise TimeoutError

    def _fill(self, deadline: float | None, alarm: Alarm | None = None) -> None:
        self._wait(deadline, alarm)
        chunk = os.read(self.fd, 1 << 18)
        if not chunk:
            raise EOFError
        self.buffer += chunk
