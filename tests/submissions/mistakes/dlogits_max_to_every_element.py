# A student's mistake: the max's gradient routed to every element of the row.
# expect-hint: dlogits_max_to_every_element
def dlogits(dnorm_logits, dlogit_maxes, logits):
    return dnorm_logits + dlogit_maxes
