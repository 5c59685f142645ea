# Writes its own reply frame on the protocol socket: a header that declares a 40 GB tensor.
# The grader checks every reply it reads, whoever wrote it.
# expect-gradient: dlogprobs
# expect-status: error
# expect-message: not tensors
# expect-limit: returned tensor size
import json
import os
import struct


def dlogprobs(logprobs, Yb, n):
    header = json.dumps({"meta": {"status": "ok"}, "tensors": {"result": {
        "dtype": "float32", "shape": [100_000, 100_000], "offset": 0,
        "nbytes": 40_000_000_000}}}).encode()
    body = header + b"\0" * 64
    os.write(3, struct.pack(">QI", len(body), len(header)) + body)
    os._exit(0)
