# Raises a BaseException that is no Exception (would slip through `except Exception`).
# expect-gradient: dlogprobs
# expect-status: error
# expect-message: raised Escape: out of here
class Escape(BaseException):
    pass


def dlogprobs(logprobs, Yb, n):
    raise Escape("out of here")
