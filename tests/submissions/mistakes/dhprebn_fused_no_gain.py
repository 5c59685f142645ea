# A student's mistake: bngain left out.
# expect-hint: dhprebn_fused_no_gain
def dhprebn_fused(dhpreact, bngain, bnvar_inv, bnraw, n):
    return bnvar_inv / n * (n * dhpreact - dhpreact.sum(0)
                            - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))
