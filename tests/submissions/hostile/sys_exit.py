# sys.exit from a stub: SystemExit is caught like any exception.
# expect-gradient: dlogprobs
# expect-status: error
# expect-message: called sys.exit(1)
import sys


def dlogprobs(logprobs, Yb, n):
    sys.exit(1)
