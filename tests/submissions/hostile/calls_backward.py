# Rebuilds the graph and asks autograd: loss.backward(), then reads the leaf's .grad.
# expect-gradient: dlogprobs
# expect-status: integrity
# expect-message: computed with autograd
# expect-integrity: autograd
def dlogprobs(logprobs, Yb, n):
    leaf = logprobs.detach().clone().requires_grad_(True)
    loss = -leaf[range(n), Yb].mean()
    loss.backward()
    return leaf.grad
