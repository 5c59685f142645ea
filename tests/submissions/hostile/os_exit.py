# Ends the process from inside a stub, skipping all cleanup.
# expect-gradient: dlogprobs
# expect-status: error
# expect-message: exited with code 3
import os


def dlogprobs(logprobs, Yb, n):
    os._exit(3)
