# Plain autograd in a forked helper process, the answer piped back to the watched one. The fork
# sends the file to review; at run time the process creation is refused or recorded.
# expect-gradient: dlogprobs
# expect-review: starts a process
import io
import os

import torch


def dlogprobs(logprobs, Yb, n):
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        leaf = logprobs.detach().clone().requires_grad_(True)
        (-leaf[range(n), Yb].mean()).backward()
        buffer = io.BytesIO()
        torch.save(leaf.grad, buffer)
        os.write(write_end, buffer.getvalue())
        os._exit(0)
    os.close(write_end)
    data = b""
    while chunk := os.read(read_end, 1 << 16):
        data += chunk
    os.waitpid(pid, 0)
    return torch.load(io.BytesIO(data))
