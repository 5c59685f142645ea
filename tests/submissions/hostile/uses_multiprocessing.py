# Computes the gradient in a multiprocessing worker: no process may start once the file has run.
# expect-gradient: dlogprobs
# expect-status: error
# expect-message: after your file had run
# expect-limit: processes
# expect-review: starts a process
import multiprocessing


def _grad(args):
    logprobs, Yb, n = args
    return logprobs * 0


def dlogprobs(logprobs, Yb, n):
    with multiprocessing.get_context("fork").Pool(1) as pool:
        return pool.map(_grad, [(logprobs, Yb, n)])[0]
