# A student's mistake: only the branch through counts_sum.
# expect-hint: dcounts_sum_branch_only
def dcounts(dprobs, counts_sum_inv, dcounts_sum):
    return dcounts_sum.expand_as(dprobs).clone()
