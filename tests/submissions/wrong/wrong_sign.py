# The minus sign of bndiff = hprebn - bnmeani lost.
# expect-first-wrong: dbnmeani
def dbnmeani(dbndiff):
    return dbndiff.sum(0, keepdim=True)
