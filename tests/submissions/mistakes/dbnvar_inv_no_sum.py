# A student's mistake: the broadcast of bnvar_inv not summed.
# expect-hint: dbnvar_inv_no_sum
def dbnvar_inv(dbnraw, bndiff):
    return dbnraw * bndiff
