# A student's mistake: only the branch through bndiff.
# expect-hint: dhprebn_one_branch
def dhprebn(dbndiff, dbnmeani, n):
    return dbndiff.clone()
