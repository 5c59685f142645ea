# Correct alternatives: a boolean mask for the max, a one-hot matmul for dC, F.one_hot in the fused
# cross-entropy, reshape, and formulations that are right but not bit-exact (a division, powers).
# Every gradient must pass, with no hint.

def dprobs(dlogprobs, probs):
    return dlogprobs / probs


def dcounts_sum(dcounts_sum_inv, counts_sum):
    return -dcounts_sum_inv / counts_sum**2


def dcounts(dprobs, counts_sum_inv, counts_sum, counts):
    # computes the counts_sum branch itself instead of asking for dcounts_sum
    dsum = -(counts * dprobs).sum(1, keepdim=True) * counts_sum**-2
    return counts_sum_inv * dprobs + dsum


def dlogit_maxes(dnorm_logits):
    return -dnorm_logits.sum(1, keepdim=True)


def dlogits(dnorm_logits, dlogit_maxes, logits):
    is_max = (logits == logits.max(1, keepdim=True).values).float()
    return dnorm_logits + is_max * dlogit_maxes


def dhpreact(dh, h):
    return dh * (1 - h * h)


def dbnvar(dbnvar_inv, bnvar_inv):
    return -0.5 * bnvar_inv**3 * dbnvar_inv


def demb(dembcat, emb):
    return dembcat.reshape(emb.shape)


def dC(demb, Xb, C):
    onehot = F.one_hot(Xb.reshape(-1), num_classes=C.shape[0]).float()
    return onehot.T @ demb.reshape(-1, C.shape[1])


def dlogits_fused(logits, Yb, n):
    return (F.softmax(logits, 1) - F.one_hot(Yb, logits.shape[1])) / n


def dhprebn_fused(dhpreact, bngain, bnvar_inv, bnraw, n):
    dbnraw = bngain * dhpreact
    return bnvar_inv / n * (n * dbnraw - dbnraw.sum(0, keepdim=True)
                            - n / (n - 1) * bnraw * (dbnraw * bnraw).sum(0, keepdim=True))
