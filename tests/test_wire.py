"""Frames between the grader and the child: what goes in comes out, and the reader's buffering."""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import threading
import time
import tracemalloc

import pytest
import torch

from grader.sandbox import wire


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16,
                                   torch.int64, torch.int32, torch.bool])
def test_every_dtype_comes_back_bit_for_bit(dtype: torch.dtype) -> None:
    x = (torch.randn(5, 7) * 100).to(dtype)
    meta, tensors = wire.decode_whole_frame(wire.encode_frame({"op": "x"}, {"x": x}))
    assert meta == {"op": "x"}
    assert tensors["x"].dtype == dtype and tensors["x"].shape == (5, 7)
    assert torch.equal(tensors["x"], x)


def test_empty_scalar_strided_and_grad_tensors_come_back_as_values() -> None:
    base = torch.arange(12.0).reshape(3, 4)
    sent = {"empty": torch.empty(0, 3), "scalar": torch.tensor(2.5), "strided": base.T,
            "grad": torch.ones(2, requires_grad=True), "expanded": torch.ones(3, 1).expand(3, 4),
            "negative view": torch.randn(3, dtype=torch.cfloat).conj().imag}
    _, tensors = wire.decode_whole_frame(wire.encode_frame({}, sent))
    for name, t in sent.items():
        assert torch.equal(tensors[name], t.detach()), name
        assert tensors[name].shape == t.shape and not tensors[name].requires_grad


def _odd_tensors() -> dict[str, torch.Tensor]:
    x = torch.randn(3, 4)
    return {"complex": x.to(torch.complex64),
            "quantized": torch.quantize_per_tensor(x, 0.1, 128, torch.quint8),
            "meta": torch.empty(3, 4, device="meta"),
            "nested": torch.nested.nested_tensor([x[0], x[1, :2]]),
            "sparse": x.to_sparse(), "sparse_csr": x.to_sparse_csr(),
            "uint8": x.to(torch.uint8)}


@pytest.mark.parametrize("kind, said", [
    ("complex", "a complex64 tensor: return a real float32 tensor"),
    ("quantized", "a quantized tensor (torch.quint8)"),
    ("meta", "a meta tensor, which has no values"),
    ("nested", "a nested tensor"),
    ("sparse", "a sparse tensor (torch.sparse_coo): call .to_dense()"),
    ("sparse_csr", "a sparse tensor (torch.sparse_csr): call .to_dense()"),
    ("uint8", "a uint8 tensor, a dtype the grader does not grade"),
])
def test_a_dtype_or_layout_the_wire_does_not_carry_is_named_before_it_is_touched(kind, said):
    t = _odd_tensors()[kind]
    assert said in (wire.unsendable_reason(t) or "")
    with pytest.raises(wire.FrameError, match=f"tensor 'result' is {re.escape(said)}"):
        wire.encode_frame({"status": "ok"}, {"result": t})


def test_every_dtype_the_wire_carries_is_sendable() -> None:
    for dtype in wire.WIRE_DTYPES:
        assert wire.unsendable_reason(torch.zeros(2, dtype=dtype)) is None


def test_a_forged_reply_with_a_complex_dtype_is_refused_by_the_grader() -> None:
    header = json.dumps({"meta": {"status": "ok"}, "tensors": {"result": {
        "dtype": "complex64", "shape": [2], "offset": 0, "nbytes": 16}}}).encode()
    forged = struct.pack(">QI", len(header) + 16, len(header)) + header + bytes(16)
    with pytest.raises(wire.FrameError, match="dtype 'complex64' is not allowed"):
        wire.decode_whole_frame(forged)


@pytest.mark.parametrize("dtype", [["float32"], {"x": 1}, 7])
def test_a_forged_dtype_that_is_not_a_string_is_refused_not_a_crash(dtype) -> None:
    header = json.dumps({"meta": {"status": "ok"}, "tensors": {"result": {
        "dtype": dtype, "shape": [1], "offset": 0, "nbytes": 4}}}).encode()
    forged = struct.pack(">QI", len(header) + 4, len(header)) + header + bytes(4)
    with pytest.raises(wire.FrameError, match="is not allowed"):
        wire.decode_whole_frame(forged)


def test_decoded_tensors_own_writable_memory() -> None:
    frame = wire.encode_frame({}, {"a": torch.zeros(3), "b": torch.zeros(3)})
    _, tensors = wire.decode_whole_frame(frame)
    tensors["a"] += 1
    assert torch.equal(tensors["b"], torch.zeros(3))
    assert torch.equal(tensors["a"], torch.ones(3))


def test_a_burst_of_frames_is_read_in_order_from_one_buffer() -> None:
    a, b = socket.socketpair()
    frames = [wire.encode_frame({"i": i}, {"x": torch.full((4,), float(i))}) for i in range(5)]
    a.sendall(b"".join(frames))
    reader = wire.FrameReader(b.fileno())
    for i in range(5):
        meta, tensors = reader.read(deadline=time.monotonic() + 5)
        assert meta == {"i": i} and torch.equal(tensors["x"], torch.full((4,), float(i)))
    assert not reader.buffer
    a.close(), b.close()


def test_a_frame_that_arrives_in_pieces_is_put_together() -> None:
    a, b = socket.socketpair()
    frame = wire.encode_frame({"big": True}, {"x": torch.arange(100_000, dtype=torch.float32)})

    def trickle() -> None:
        for start in range(0, len(frame), 7_001):
            a.sendall(frame[start:start + 7_001])
            time.sleep(0.001)

    sender = threading.Thread(target=trickle)
    sender.start()
    meta, tensors = wire.FrameReader(b.fileno()).read(deadline=time.monotonic() + 10)
    sender.join()
    assert meta == {"big": True}
    assert torch.equal(tensors["x"], torch.arange(100_000, dtype=torch.float32))
    a.close(), b.close()


def test_reader_times_out_on_silence_and_sees_the_end() -> None:
    a, b = socket.socketpair()
    reader = wire.FrameReader(b.fileno())
    a.sendall(wire.encode_frame({"x": 1})[:5])        # half a length prefix, then nothing
    with pytest.raises(TimeoutError):
        reader.read(deadline=time.monotonic() + 0.05)
    a.close()
    with pytest.raises(EOFError):
        reader.read(deadline=time.monotonic() + 1)
    b.close()


def test_the_alarm_rings_once_only_when_nothing_has_come_by_its_time() -> None:
    a, b = socket.socketpair()
    reader = wire.FrameReader(b.fileno())
    rung: list[float] = []

    def ring() -> None:             # the frame comes only after the alarm: it cannot beat it
        rung.append(time.monotonic())
        a.sendall(wire.encode_frame({"late": 1}))

    alarm = (time.monotonic() + 0.05, ring)
    meta, _ = reader.read(deadline=time.monotonic() + 10, alarm=alarm)
    assert meta == {"late": 1} and len(rung) == 1 and rung[0] >= alarm[0]
    a.sendall(wire.encode_frame({"soon": 1}))
    time.sleep(0.05)
    meta, _ = reader.read(deadline=time.monotonic() + 10, alarm=(time.monotonic() + 5, rung.clear))
    assert meta == {"soon": 1} and len(rung) == 1      # it had come: no alarm, no wait
    with pytest.raises(TimeoutError):                   # an alarm past the deadline never rings
        reader.read(deadline=time.monotonic() + 0.05, alarm=(time.monotonic() + 1, rung.clear))
    assert len(rung) == 1
    a.close()
    b.close()


def test_a_frame_beyond_the_size_limit_is_refused_before_it_is_read() -> None:
    r, w = os.pipe()
    os.write(w, wire._LEN.pack(10**9, 10))          # announces a gigabyte
    reader = wire.FrameReader(r, limits=wire.WireLimits(max_frame_bytes=2**20))
    with pytest.raises(wire.FrameError) as info:
        reader.read(deadline=time.monotonic() + 1)
    assert info.value.limit == "reply size"
    os.close(r), os.close(w)


def _split(frame: bytes) -> tuple[bytes, bytes]:
    """A frame's header and tensor bytes, by the documented layout: an 8-byte length, a 4-byte
    header length, the header, the tensors."""
    header_len = int.from_bytes(frame[8:12], "big")
    return bytes(frame[12:12 + header_len]), bytes(frame[12 + header_len:])


def test_a_tensor_whose_bytes_do_not_match_its_shape_is_refused() -> None:
    frame = bytearray(wire.encode_frame({}, {"x": torch.ones(4)}))
    header, _ = _split(frame)
    forged = header.replace(b'"shape": [4]', b'"shape": [9]')
    assert len(forged) == len(header)
    frame[12:12 + len(header)] = forged
    with pytest.raises(wire.FrameError, match="byte range"):
        wire.decode_whole_frame(bytes(frame))


def test_an_empty_shape_with_absurd_other_sizes_is_refused_not_a_crash() -> None:
    header, tensors = _split(wire.encode_frame({}, {"x": torch.empty(0, 2)}))
    forged = header.replace(b'"shape": [0, 2]',
                            b'"shape": [0, %d, %d, %d]' % (2**39, 2**39, 2**39))
    body = forged + tensors
    with pytest.raises(wire.FrameError, match="bad shape"):
        wire.decode_frame(body, len(forged), wire.WireLimits())


def test_a_large_frame_is_read_into_one_buffer_of_its_size() -> None:
    """The body goes straight from the socket into its own buffer (no copies of it piling up)."""
    a, b = socket.socketpair()
    x = torch.arange(3 * 2**20, dtype=torch.float32)               # 12 MiB
    frame = wire.encode_frame({"big": True}, {"x": x})

    def send() -> None:
        a.sendall(frame)

    sender = threading.Thread(target=send)
    reader = wire.FrameReader(b.fileno())
    tracemalloc.start()
    sender.start()
    meta, tensors = reader.read(deadline=time.monotonic() + 30)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    sender.join()
    assert meta == {"big": True} and torch.equal(tensors["x"], x)
    assert len(reader.buffer) == 0
    assert peak < 2.5 * len(frame)          # the body, and the tensor's own copy of its bytes
    a.close(), b.close()


def _forged(header: bytes) -> bytes:
    return wire._LEN.pack(len(header), len(header)) + header


@pytest.mark.parametrize("header", [
    b'{"meta": ' + b"[" * 100_000 + b"]" * 100_000 + b', "tensors": {}}',   # RecursionError
    b'{"meta": {"n": ' + b"9" * 50_000 + b'}, "tensors": {}}',              # int too large
    b'{"meta": {"n": ' + b"9" * 4_000 + b'}, "tensors": {}}',               # parses, then overflows
    b'{"meta": {"a": ' + b"[" * 500 + b"]" * 500 + b'}, "tensors": {}}',    # parses, deep below
], ids=["nested-100000", "digits-50000", "digits-4000", "nested-500"])
def test_a_forged_header_too_deep_or_with_a_huge_integer_is_a_frame_error_not_a_crash(
        header: bytes) -> None:
    with pytest.raises(wire.FrameError, match="header"):
        wire.decode_whole_frame(_forged(header))


def test_a_header_of_ordinary_depth_and_integers_still_decodes() -> None:
    meta, _ = wire.decode_whole_frame(_forged(b'{"meta": {"n": 18446744073709551615, '
                                               b'"a": [[[1]]]}, "tensors": {}}'))
    assert meta == {"n": 2**64 - 1, "a": [[[1]]]}


def test_only_a_reader_of_the_grader_s_requests_leaves_their_nesting_unchecked() -> None:
    # the child reads what the grader wrote: the checks guard the grader from the child
    deep = b'{"meta": {"a": ' + b"[" * 40 + b"]" * 40 + b'}, "tensors": {}}'
    for from_grader in (False, True):
        a, b = socket.socketpair()
        a.sendall(_forged(deep))
        reader = wire.FrameReader(b.fileno(), from_grader=from_grader)
        if from_grader:
            meta, _ = reader.read(deadline=time.monotonic() + 5)
            assert json.dumps(meta["a"]) == "[" * 40 + "]" * 40
        else:
            with pytest.raises(wire.FrameError, match="nested more than"):
                reader.read(deadline=time.monotonic() + 5)
        a.close(), b.close()
