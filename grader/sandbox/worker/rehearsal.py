"""Inside the sandbox's worker, before it forks: one session with a file the grader wrote.

Each child is a fresh fork of the worker, and the first time a process runs a torch operation it
pays for more than the arithmetic: the Python binding parses its signatures, the dispatcher and
the CPU kernels pick their implementation, Python specializes the bytecode on the way. Measured
in a child of a worker that had run none of them: a forward and backward pass of the lecture's
net took 3 to 5 ms the first time and 0.6 to 0.8 ms after. Whatever the worker has run before
forking, its children inherit already done; so the worker answers, once, a load, a batch of
calls and a short training run, exactly as a child does (grader.sandbox.worker.child), from ``REHEARSAL``:
operations on random tensors of the lecture's sizes, the ones backprop answers are made of.
They compute no gradient and nothing is kept: the worker holds no reference data, and this
file gives no answer away (it is a tour of torch, not of backpropagation).
"""

from __future__ import annotations

import linecache
import socket

import torch

from .. import wire
from .guard import AutogradWatch

__all__ = ["rehearse"]

FILENAME = "<rehearsal>"
# backward()'s parameters: the training loop passes these by name
SIGNATURE = ("logits", "Yb", "n", "h", "W2", "hpreact", "bngain", "bnvar_inv", "bnraw", "embcat",
             "W1", "emb", "Xb", "C")

REHEARSAL = '''
import torch
import torch.nn.functional as F


def tour(x, w, h, e, y, X, row, n):
    """Operations on tensors of the lecture's shapes, (n, vocab) x, (vocab, hidden) w, ..."""
    vocab, block, embd = x.shape[1], X.shape[1], e.shape[2]
    out = torch.zeros_like(x)
    out[range(n), y] = -1.0 / n
    out = F.softmax(x, 1)
    out[range(n), y] -= 1
    out /= n
    x.exp(), (x.abs() + 1).log(), x.max(1, keepdim=True), x.max(1).indices, x.max(1).values
    x.sum(1, keepdim=True), x.sum(0), x.sum(0, keepdim=True), x.sum(), x.mean(0, keepdim=True)
    x.var(0, keepdim=True, unbiased=True), x.var(0, keepdim=True, unbiased=False)
    x[range(n), y], x[torch.arange(n), y], x @ w, x.T @ h, h @ w.T, x.t(), x.transpose(0, 1)
    1.0 - h**2, 1 - h * h, x**-0.5, x**-1.5, (x.abs() + 1)**-2, x**2, 1.0 / (x.abs() + 1)
    -x, x * row, x / row, x + row, x - row, x * 2.0, 2 * x, x / n, n * x, x.clone()
    torch.zeros_like(x), torch.ones_like(x), torch.empty_like(x), torch.full_like(x, 1.0)
    torch.zeros((vocab, embd)), torch.zeros(vocab, embd), torch.ones(n, 1), torch.eye(3)
    F.one_hot(y, num_classes=vocab) * x, F.one_hot(y, vocab).float()
    e.view(n, -1), e.view(e.shape[0], -1), e.view(-1, embd), e.reshape(n, block * embd)
    h.view(n, -1), h.reshape(-1), h.unsqueeze(0), h.squeeze(), h.flatten()
    torch.tanh(h), h.tanh(), F.cross_entropy(x, y), F.log_softmax(x, 1), x.softmax(1)
    (x == x.max(1, keepdim=True).values).float(), torch.where(x > 0, x, 0.0)
    x.masked_fill(x > 0, 0.0), x.abs(), (x * x).sqrt(), x.float()
    grid = torch.zeros((vocab, embd))
    grid.index_add_(0, X.view(-1), e.view(-1, embd))
    grid.index_put_((X.view(-1),), e.view(-1, embd), accumulate=True)
    for k in range(2):
        for j in range(block):
            grid[X[k, j]] += e[k, j]
    grid.scatter_add_(0, X.view(-1, 1).expand(-1, embd), e.view(-1, embd))
    acc = x.clone()
    acc += row
    acc -= row
    acc *= 2
    acc /= 2
    torch.cat([x, x], 1), torch.stack([x, x]), float(x.sum()), x.sum().item(), x.shape, len(x)
    return out


def backward({signature}):
    """Not a gradient: the shapes of one, from the tour's operations."""
    tour(logits, W2.T, h, emb, Yb, Xb, logits[:1], n)
    b1 = torch.zeros(W1.shape[1])
    return [torch.zeros_like(C), torch.zeros_like(W1), b1, torch.zeros_like(W2),
            torch.zeros(W2.shape[1]), torch.zeros_like(bngain), torch.zeros_like(bngain)]
'''.replace("{signature}", ", ".join(SIGNATURE))


def _frames() -> list[bytes]:
    """The requests of one session: load the file, a batch of calls, two steps of training."""
    g = torch.Generator().manual_seed(0)
    n, vocab, block, embd, hidden = 32, 27, 3, 10, 64
    X = torch.randint(0, vocab, (n, block), generator=g)         # (n, block_size)
    y = torch.randint(0, vocab, (n,), generator=g)               # (n,)
    x, row = torch.randn(n, vocab, generator=g), torch.randn(1, vocab, generator=g)
    h, w = torch.randn(n, hidden, generator=g), torch.randn(vocab, hidden, generator=g)
    e = torch.randn(n, block, embd, generator=g)
    tensors = {"x": x, "w": w, "h": h, "e": e, "y": y, "X": X, "row": row}
    call = {"name": "tour", "returns": "tensor", "scalars": {"n": n},
            "tensors": {k: k for k in tensors}}
    params = {"C": torch.randn(vocab, embd, generator=g),
              "W1": torch.randn(block * embd, hidden, generator=g) * 0.2,
              "b1": torch.randn(hidden, generator=g) * 0.01,
              "W2": torch.randn(hidden, vocab, generator=g) * 0.01,
              "b2": torch.zeros(vocab), "bngain": torch.ones(1, hidden),
              "bnbias": torch.zeros(1, hidden)}
    steps = 2
    training = {**params, "Xbs": torch.stack([X] * steps), "Ybs": torch.stack([y] * steps)}
    return [wire.encode_frame({"op": "load", "code": REHEARSAL, "filename": FILENAME}),
            wire.encode_frame({"op": "calls", "calls": [call, call]}, tensors),
            wire.encode_frame({"op": "train", "steps": steps, "n": n, "lr": 0.1,
                               "signature": list(SIGNATURE)}, training)]


def rehearse(watch: AutogradWatch) -> list[str]:
    """Serve one session in this process, as a child would; returns its replies' statuses
    (all "ok" unless torch or the protocol changed under it)."""
    from .child import _Child
    from ..limits import Limits

    limits = Limits().for_child()

    ours, theirs = socket.socketpair()
    # one thread plays both sides: all requests are written before the child side reads, and
    # its replies are read after it ends. Some 50 kB each way, well within a socket's buffers;
    # were they not, a write raises BlockingIOError instead of waiting forever.
    ours.setblocking(False)
    theirs.setblocking(False)
    try:
        for frame in _frames():
            ours.sendall(frame)
        ours.shutdown(socket.SHUT_WR)
        child = _Child(theirs.fileno(), limits, watch)
        try:
            child.serve()
        finally:
            child.out.close()
            child.module.__dict__.clear()   # its functions and their globals: no cycle left
        theirs.close()
        ours.setblocking(True)
        reader, statuses = wire.FrameReader(ours.fileno()), []
        while True:
            try:
                meta, _ = reader.read()
            except EOFError:
                break
            statuses.append(str(meta.get("status")))
        return statuses
    finally:
        ours.close()
        theirs.close()
        linecache.cache.pop(FILENAME, None)
        watch.filename = "<submission>"
        watch.take()
