# A student's mistake: d/dx log(x) remembered as x.
# expect-hint: dprobs_times_probs
def dprobs(dlogprobs, probs):
    return probs * dlogprobs
