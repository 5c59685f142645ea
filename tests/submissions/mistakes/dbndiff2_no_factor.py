# A student's mistake: the 1/(n-1) of the variance left out.
# expect-hint: dbndiff2_no_factor
def dbndiff2(dbnvar, bndiff2, n):
    return torch.ones_like(bndiff2) * dbnvar
