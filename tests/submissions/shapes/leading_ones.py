# Right values, in shapes that differ from the tensors' only by size-1 dimensions in front: the
# lecture's cmp() passes every one of them (it broadcasts), and so does the grader, with a note.
# Appended to the reference solution (tests/conftest.py's with_overrides).
# expect-score: 34


def db2(dlogits):
    return dlogits.sum(0, keepdim=True)            # (1, vocab_size) for b2's (vocab_size,)


def dbngain(dhpreact, bnraw):
    return (bnraw * dhpreact).sum(0)               # (n_hidden,) for bngain's (1, n_hidden)


def dbnbias(dhpreact):
    return dhpreact.sum(0)                         # (n_hidden,) for (1, n_hidden)


def dbnmeani(dbndiff):
    return (-dbndiff).sum(0)                       # the lecture's own line: (n_hidden,)


def db1(dhprebn):
    return dhprebn.sum(0, keepdim=True)            # (1, n_hidden) for b1's (n_hidden,)


def backward(logits, Yb, n, h, W2, hpreact, bngain, bnvar_inv, bnraw, embcat, W1, emb, Xb, C):
    dlogits = F.softmax(logits, 1)
    dlogits[range(n), Yb] -= 1
    dlogits /= n
    dh = dlogits @ W2.T
    dW2 = h.T @ dlogits
    db2 = dlogits.sum(0, keepdim=True)             # (1, 27): the update reshapes it to b2's
    dhpreact = (1.0 - h**2) * dh
    dbngain = (bnraw * dhpreact).sum(0)            # (200,) for bngain's (1, 200)
    dbnbias = dhpreact.sum(0)
    dhprebn = bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0)
                                        - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))
    dembcat = dhprebn @ W1.T
    dW1 = embcat.T @ dhprebn
    db1 = dhprebn.sum(0, keepdim=True)             # (1, 200) for b1's (200,)
    demb = dembcat.view(emb.shape)
    dC = torch.zeros_like(C)
    dC.index_add_(0, Xb.view(-1), demb.view(-1, demb.shape[2]))
    return [dC, dW1, db1, dW2, db2, dbngain, dbnbias]
