# A student's mistake: matmul operands swapped.
# expect-hint: dW2_transposed
def dW2(dlogits, h):
    return dlogits.T @ h
