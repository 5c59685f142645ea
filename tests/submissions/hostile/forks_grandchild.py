# Plain autograd in a forked grandchild, the answer piped back: the sandbox's watch runs in the
# child only. No process may start once the file has run, so the fork fails, and the call is an
# error that names the limit: no point from the grandchild's answer.
# expect-gradient: dlogprobs
# expect-status: error
# expect-message: after your file had run
# expect-limit: processes
# expect-review: starts a process
import os
import pickle

import torch
import torch.nn.functional as F


def dlogprobs(logprobs, Yb, n):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        lp = logprobs.detach().clone().requires_grad_(True)
        (-lp[range(n), Yb].mean()).backward()
        os.write(w, pickle.dumps(lp.grad))
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 1 << 20):
        data += chunk
    os.waitpid(pid, 0)
    return pickle.loads(data)
