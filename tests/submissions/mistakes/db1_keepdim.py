# A student's mistake: keepdim where b1 is one-dimensional.
# expect-hint: db1_keepdim
def db1(dhprebn):
    return dhprebn.sum(0, keepdim=True)
