# Correct alternatives: scatter for the max, index_add_ for dC, a manual softmax, broadcasting
# instead of ones_like, einsum and a ones-vector matmul for the linear layer.
# Every gradient must pass, with no hint.

def dcounts(dprobs, counts_sum_inv, dcounts_sum):
    return counts_sum_inv * dprobs + dcounts_sum


def dlogits(dnorm_logits, dlogit_maxes, logits):
    out = dnorm_logits.clone()
    out.scatter_add_(1, logits.argmax(1, keepdim=True), dlogit_maxes)
    return out


def dW2(dlogits, h):
    return torch.einsum("ni,nj->ij", h, dlogits)


def db2(dlogits):
    return torch.ones(dlogits.shape[0]) @ dlogits


def dbndiff2(dbnvar, bndiff2, n):
    return (1.0 / (n - 1)) * dbnvar.expand_as(bndiff2)


def dhprebn(dbndiff, dbnmeani, n):
    return dbndiff + dbnmeani / n


def dC(demb, Xb, C):
    out = torch.zeros_like(C)
    out.index_add_(0, Xb.view(-1), demb.view(-1, C.shape[1]))
    return out


def dlogits_fused(logits, Yb, n):
    counts = (logits - logits.max(1, keepdim=True).values).exp()
    probs = counts / counts.sum(1, keepdim=True)
    probs[range(n), Yb] -= 1
    return probs / n
