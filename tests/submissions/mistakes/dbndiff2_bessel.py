# A student's mistake: 1/n instead of Bessel's 1/(n-1).
# expect-hint: dbndiff2_bessel
def dbndiff2(dbnvar, bndiff2, n):
    return (1.0 / n) * torch.ones_like(bndiff2) * dbnvar
