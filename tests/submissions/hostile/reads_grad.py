# Reads hpreact.grad, hoping the grader's autograd left it there. It did not: tensors reach
# student code with no graph and no .grad, and the message says it reads autograd's answer.
# expect-gradient: dbngain
# expect-status: error
# expect-message: is a NoneType, expected a torch.Tensor: it reads autograd's answer (dbngain(), line
# expect-integrity: grad
def dbngain(dhpreact, bnraw, hpreact):
    return hpreact.grad
