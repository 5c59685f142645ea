# A student's mistake: the 1/n of the mean forgotten.
# expect-hint: dlogits_fused_no_mean
def dlogits_fused(logits, Yb, n):
    out = F.softmax(logits, 1)
    out[range(n), Yb] -= 1
    return out
