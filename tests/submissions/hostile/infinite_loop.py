# An infinite loop in pure Python: the wall-time limit stops it.
# expect-gradient: dlogprobs
# expect-status: error
# expect-message: took longer than
# expect-limit: wall time
def dlogprobs(logprobs, Yb, n):
    while True:
        pass
