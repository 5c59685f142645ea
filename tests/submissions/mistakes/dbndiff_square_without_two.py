# A student's mistake: the 2 of d/dx x**2 forgotten.
# expect-hint: dbndiff_square_without_two
def dbndiff(dbnraw, bnvar_inv, dbndiff2, bndiff):
    return bnvar_inv * dbnraw + bndiff * dbndiff2
