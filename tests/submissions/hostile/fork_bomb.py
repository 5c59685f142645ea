# A fork bomb that ignores failures: no process may start once the file has run, so every fork
# fails and it spins until the wall-time limit ends it; nothing it tried to start exists.
# expect-gradient: dlogprobs
# expect-status: error
# expect-message: took longer than
# expect-limit: wall time
# expect-review: starts a process
import os


def dlogprobs(logprobs, Yb, n):
    while True:
        try:
            os.fork()
        except OSError:
            pass
