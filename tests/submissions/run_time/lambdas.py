# The exercise functions written as lambdas assigned at the top level, and backward() by def:
# the parameters are read from the lambdas, and every gradient is graded.
# expect-score: 34
import torch
import torch.nn.functional as F

dlogprobs = lambda logprobs, Yb, n: -F.one_hot(Yb, logprobs.shape[1]).float() / n
dprobs = lambda dlogprobs, probs: (1.0 / probs) * dlogprobs
dcounts_sum_inv = lambda dprobs, counts: (counts * dprobs).sum(1, keepdim=True)
dcounts_sum = lambda dcounts_sum_inv, counts_sum: (-counts_sum**-2) * dcounts_sum_inv
dcounts = lambda dprobs, counts_sum_inv, dcounts_sum: (counts_sum_inv * dprobs
                                                       + torch.ones_like(dprobs) * dcounts_sum)
dnorm_logits = lambda dcounts, counts: counts * dcounts
dlogit_maxes = lambda dnorm_logits: (-dnorm_logits).sum(1, keepdim=True)
dlogits = lambda dnorm_logits, dlogit_maxes, logits: dnorm_logits + F.one_hot(
    logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes
dh = lambda dlogits, W2: dlogits @ W2.T
dW2 = lambda dlogits, h: h.T @ dlogits
db2 = lambda dlogits: dlogits.sum(0)
dhpreact = lambda dh, h: (1.0 - h**2) * dh
dbngain = lambda dhpreact, bnraw: (bnraw * dhpreact).sum(0, keepdim=True)
dbnbias = lambda dhpreact: dhpreact.sum(0, keepdim=True)
dbnraw = lambda dhpreact, bngain: bngain * dhpreact
dbnvar_inv = lambda dbnraw, bndiff: (bndiff * dbnraw).sum(0, keepdim=True)
dbnvar = lambda dbnvar_inv, bnvar: (-0.5 * (bnvar + 1e-5)**-1.5) * dbnvar_inv
dbndiff2 = lambda dbnvar, bndiff2, n: 1.0 / (n - 1) * torch.ones_like(bndiff2) * dbnvar
dbndiff = lambda dbnraw, bnvar_inv, dbndiff2, bndiff: bnvar_inv * dbnraw + (2 * bndiff) * dbndiff2
dbnmeani = lambda dbndiff: (-dbndiff).sum(0, keepdim=True)
dhprebn = lambda dbndiff, dbnmeani, n: dbndiff + 1.0 / n * torch.ones_like(dbndiff) * dbnmeani
dembcat = lambda dhprebn, W1: dhprebn @ W1.T
dW1 = lambda dhprebn, embcat: embcat.T @ dhprebn
db1 = lambda dhprebn: dhprebn.sum(0)
demb = lambda dembcat, emb: dembcat.view(emb.shape)
dC = lambda demb, Xb, C: torch.zeros_like(C).index_add_(0, Xb.view(-1), demb.view(-1, C.shape[1]))


def _softmax_grad(logits, Yb, n):
    out = F.softmax(logits, 1)
    out[range(n), Yb] -= 1
    return out / n


dlogits_fused = _softmax_grad
dhprebn_fused = lambda dhpreact, bngain, bnvar_inv, bnraw, n: bngain * bnvar_inv / n * (
    n * dhpreact - dhpreact.sum(0) - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))


def backward(logits, Yb, n, h, W2, hpreact, bngain, bnvar_inv, bnraw, embcat, W1, emb, Xb, C):
    dlogits = _softmax_grad(logits, Yb, n)
    dh = dlogits @ W2.T
    dhpreact = (1.0 - h**2) * dh
    dhprebn = dhprebn_fused(dhpreact, bngain, bnvar_inv, bnraw, n)
    dembcat = dhprebn @ W1.T
    return [dC(dembcat.view(emb.shape), Xb, C), embcat.T @ dhprebn, dhprebn.sum(0),
            h.T @ dlogits, dlogits.sum(0), (bnraw * dhpreact).sum(0, keepdim=True),
            dhpreact.sum(0, keepdim=True)]
