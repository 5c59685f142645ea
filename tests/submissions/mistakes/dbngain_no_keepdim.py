# A student's mistake: keepdim forgotten.
# expect-hint: dbngain_no_keepdim
def dbngain(dhpreact, bnraw):
    return (dhpreact * bnraw).sum(0)
