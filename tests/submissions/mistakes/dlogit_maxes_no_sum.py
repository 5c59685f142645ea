# A student's mistake: the broadcast of logit_maxes not summed.
# expect-hint: dlogit_maxes_no_sum
def dlogit_maxes(dnorm_logits):
    return -dnorm_logits
