# A student's mistake: matmul operands swapped.
# expect-hint: dW1_transposed
def dW1(dhprebn, embcat):
    return dhprebn.T @ embcat
