# Matmul gradient with the operands in the wrong order / transposes swapped.
# expect-first-wrong: dW1
# expect-status: shape
def dW1(dhprebn, embcat):
    return dhprebn.T @ embcat
