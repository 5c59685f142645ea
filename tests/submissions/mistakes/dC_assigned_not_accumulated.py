# A student's mistake: dC[Xb] += demb, which does not accumulate repeated rows.
# expect-hint: dC_assigned_not_accumulated
def dC(demb, Xb, C):
    out = torch.zeros_like(C)
    out[Xb] += demb
    return out
