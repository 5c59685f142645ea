# A student's mistake: summed over the vocabulary instead of the batch.
# expect-hint: db2_wrong_dim
def db2(dlogits):
    return dlogits.sum(1)
