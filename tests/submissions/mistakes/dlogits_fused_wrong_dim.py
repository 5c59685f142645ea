# A student's mistake: softmax over the batch.
# expect-hint: dlogits_fused_wrong_dim
def dlogits_fused(logits, Yb, n):
    out = F.softmax(logits, dim=0)
    out[range(n), Yb] -= 1
    return out / n
