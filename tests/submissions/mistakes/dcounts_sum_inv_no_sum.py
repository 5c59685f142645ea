# A student's mistake: the broadcast of counts_sum_inv not summed.
# expect-hint: dcounts_sum_inv_no_sum
def dcounts_sum_inv(dprobs, counts):
    return counts * dprobs
