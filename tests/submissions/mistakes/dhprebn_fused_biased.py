# A student's mistake: the biased variance (n) in the fused formula.
# expect-hint: dhprebn_fused_biased
def dhprebn_fused(dhpreact, bngain, bnvar_inv, bnraw, n):
    return bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0)
                                     - bnraw * (dhpreact * bnraw).sum(0))
