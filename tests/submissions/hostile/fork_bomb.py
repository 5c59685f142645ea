# A fork bomb that ignores failures: the process limit caps it, the wall-time limit ends it,
# and every process it started is killed.
# expect-gradient: dlogprobs
# expect-status: error
# expect-message: processes
# expect-limit: processes
# expect-review: starts a process
import os


def dlogprobs(logprobs, Yb, n):
    while True:
        try:
            os.fork()
        except OSError:
            pass
