# Tries to reach a server on the grading machine's 127.0.0.1.
# expect-gradient: dlogprobs
# expect-status: exact
# expect-output: blocked:
# expect-needs: bwrap
import socket

import torch


def dlogprobs(logprobs, Yb, n):
    try:
        with socket.create_connection(("127.0.0.1", __PORT__), timeout=1) as s:
            s.sendall(b"hello from the sandbox")
        print("CONNECTED")
    except OSError as e:
        print("blocked:", type(e).__name__)
    out = torch.zeros_like(logprobs)
    out[range(n), Yb] = -1.0 / n
    return out
