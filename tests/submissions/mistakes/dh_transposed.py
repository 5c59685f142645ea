# A student's mistake: matmul operands swapped.
# expect-hint: dh_transposed
def dh(dlogits, W2):
    return W2 @ dlogits.T
