# A student's mistake: only the branch through probs.
# expect-hint: dcounts_one_branch
def dcounts(dprobs, counts_sum_inv, dcounts_sum):
    return dprobs * counts_sum_inv
