# A student's mistake: keepdim forgotten.
# expect-hint: dcounts_sum_inv_no_keepdim
def dcounts_sum_inv(dprobs, counts):
    return (counts * dprobs).sum(dim=1)
