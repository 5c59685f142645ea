# A student's mistake: power rule with the exponent kept.
# expect-hint: dcounts_sum_exponent
def dcounts_sum(dcounts_sum_inv, counts_sum):
    return -(counts_sum ** -1) * dcounts_sum_inv
