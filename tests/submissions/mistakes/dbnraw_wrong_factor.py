# A student's mistake: the product rule with the wrong factor.
# expect-hint: dbnraw_wrong_factor
def dbnraw(dhpreact, bngain, bnraw):
    return bnraw * dhpreact
