# Pretends the user pressed Ctrl-C.
# expect-gradient: dlogprobs
# expect-status: error
# expect-message: raised KeyboardInterrupt
def dlogprobs(logprobs, Yb, n):
    raise KeyboardInterrupt
