# A student's mistake: the minus sign of norm_logits = logits - logit_maxes dropped.
# expect-hint: dlogit_maxes_sign
def dlogit_maxes(dnorm_logits):
    return dnorm_logits.sum(1, keepdim=True)
