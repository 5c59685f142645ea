# A student's mistake: matmul operands swapped.
# expect-hint: dembcat_transposed
def dembcat(dhprebn, W1):
    return W1 @ dhprebn.T
