# A student's mistake: only the branch through bnraw.
# expect-hint: dbndiff_one_branch
def dbndiff(dbnraw, bnvar_inv, dbndiff2, bndiff):
    return bnvar_inv * dbnraw
