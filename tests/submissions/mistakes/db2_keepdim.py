# A student's mistake: keepdim where b2 is one-dimensional.
# expect-hint: db2_keepdim
def db2(dlogits):
    return dlogits.sum(0, keepdim=True)
