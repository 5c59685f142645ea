# A student's mistake: the broadcast of b2 not summed.
# expect-hint: db2_no_sum
def db2(dlogits):
    return dlogits * 1.0
