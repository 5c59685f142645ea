# A student's mistake: exp's derivative taken as its input.
# expect-hint: dnorm_logits_input
def dnorm_logits(dcounts, norm_logits):
    return dcounts * norm_logits
