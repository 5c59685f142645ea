# keepdim forgotten when summing over the broadcast dimension.
# expect-first-wrong: dcounts_sum_inv
# expect-status: shape
def dcounts_sum_inv(dprobs, counts):
    return (counts * dprobs).sum(1)
