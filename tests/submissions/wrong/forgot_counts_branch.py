# A student forgot that counts feeds two places (probs and counts_sum).
# expect-first-wrong: dcounts
def dcounts(dprobs, counts_sum_inv, dcounts_sum):
    return counts_sum_inv * dprobs
