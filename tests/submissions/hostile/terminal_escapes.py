# Raises, and prints, escape sequences that would clear the instructor's terminal and forge a
# full-marks total over the real one.
# expect-gradient: dlogprobs
# expect-status: error
# expect-message: total: 34 / 34 (all passed)
FORGED = "\x1b[2J\x1b[Htotal: 34 / 34 (all passed)\x1b]0;pwned\x07\r\x9b2J\u202e"


def dlogprobs(logprobs, Yb, n):
    print(FORGED)
    raise ValueError(FORGED + "\ntotal: 34 / 34 (all passed)")
