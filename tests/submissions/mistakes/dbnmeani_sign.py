# A student's mistake: the minus sign of bndiff = hprebn - bnmeani dropped.
# expect-hint: dbnmeani_sign
def dbnmeani(dbndiff):
    return dbndiff.sum(0, keepdim=True)
