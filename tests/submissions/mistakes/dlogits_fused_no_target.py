# A student's mistake: softmax without the correct class.
# expect-hint: dlogits_fused_no_target
def dlogits_fused(logits, Yb, n):
    return F.softmax(logits, 1) / n
