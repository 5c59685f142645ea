# A student's mistake: summed over the batch instead of the vocabulary.
# expect-hint: dcounts_sum_inv_wrong_dim
def dcounts_sum_inv(dprobs, counts):
    return (counts * dprobs).sum(0, keepdims=True)
