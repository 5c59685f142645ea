# The exercise-function format filled in inside a notebook, written for the grader's tests
# (cells marked # %%; stubs.ipynb adds a data-loading cell, magics and a check() cell, which
# grading must leave out). dcounts forgets its second branch; exercises 2 to 4 are not done.
# expect-first-wrong: dcounts

# %%
import torch
import torch.nn.functional as F


# %%
def dlogprobs(logprobs, Yb, n):
    """loss = -logprobs[range(n), Yb].mean()  ->  d loss / d logprobs, shape (n, vocab_size)."""
    out = torch.zeros_like(logprobs)
    out[range(n), Yb] = -1.0 / n
    return out


# %%
def dprobs(dlogprobs, probs):
    """logprobs = probs.log()  ->  d loss / d probs, shape (n, vocab_size)."""
    return (1.0 / probs) * dlogprobs


# %%
def dcounts_sum_inv(dprobs, counts):
    """probs = counts * counts_sum_inv  ->  shape (n, 1): counts_sum_inv was broadcast."""
    return (counts * dprobs).sum(1, keepdim=True)


# %%
def dcounts_sum(dcounts_sum_inv, counts_sum):
    """counts_sum_inv = counts_sum**-1  ->  shape (n, 1)."""
    return (-counts_sum**-2) * dcounts_sum_inv


# %%
def dcounts(dprobs, counts_sum_inv, dcounts_sum):
    """probs = counts * counts_sum_inv; counts_sum = counts.sum(1, keepdims=True): two branches."""
    return counts_sum_inv * dprobs  # the branch through counts_sum is missing


# %%
def dnorm_logits(dcounts, counts):
    """counts = norm_logits.exp()  ->  shape (n, vocab_size)."""
    return counts * dcounts


# %%
def dlogit_maxes(dnorm_logits):
    """norm_logits = logits - logit_maxes  ->  shape (n, 1)."""
    return (-dnorm_logits).sum(1, keepdim=True)


# %%
def dlogits(dnorm_logits, dlogit_maxes, logits):
    """norm_logits = logits - logit_maxes; logit_maxes = logits.max(1, keepdim=True).values."""
    return dnorm_logits.clone() + F.one_hot(logits.max(1).indices,
                                            num_classes=logits.shape[1]) * dlogit_maxes


# %%
def dh(dlogits, W2):
    """logits = h @ W2 + b2  ->  shape (n, n_hidden)."""
    return dlogits @ W2.T


# %%
def dW2(dlogits, h):
    """logits = h @ W2 + b2  ->  shape (n_hidden, vocab_size)."""
    return h.T @ dlogits


# %%
def db2(dlogits):
    """logits = h @ W2 + b2  ->  shape (vocab_size,)."""
    return dlogits.sum(0)


# %%
def dhpreact(dh, h):
    """h = torch.tanh(hpreact)  ->  shape (n, n_hidden)."""
    return (1.0 - h**2) * dh


# %%
def dbngain(dhpreact, bnraw):
    """hpreact = bngain * bnraw + bnbias  ->  shape (1, n_hidden)."""
    return (bnraw * dhpreact).sum(0, keepdim=True)


# %%
def dbnbias(dhpreact):
    """hpreact = bngain * bnraw + bnbias  ->  shape (1, n_hidden)."""
    return dhpreact.sum(0, keepdim=True)


# %%
def dbnraw(dhpreact, bngain):
    """hpreact = bngain * bnraw + bnbias  ->  shape (n, n_hidden)."""
    return bngain * dhpreact


# %%
def dbnvar_inv(dbnraw, bndiff):
    """bnraw = bndiff * bnvar_inv  ->  shape (1, n_hidden)."""
    return (bndiff * dbnraw).sum(0, keepdim=True)


# %%
def dbnvar(dbnvar_inv, bnvar):
    """bnvar_inv = (bnvar + 1e-5)**-0.5  ->  shape (1, n_hidden)."""
    return (-0.5 * (bnvar + 1e-5)**-1.5) * dbnvar_inv


# %%
def dbndiff2(dbnvar, bndiff2, n):
    """bnvar = 1/(n-1)*(bndiff2).sum(0, keepdim=True)  ->  shape (n, n_hidden)."""
    return 1.0 / (n - 1) * torch.ones_like(bndiff2) * dbnvar


# %%
def dbndiff(dbnraw, bnvar_inv, dbndiff2, bndiff):
    """bnraw = bndiff * bnvar_inv; bndiff2 = bndiff**2: two branches."""
    return bnvar_inv * dbnraw + (2 * bndiff) * dbndiff2


# %%
def dbnmeani(dbndiff):
    """bndiff = hprebn - bnmeani  ->  shape (1, n_hidden)."""
    return (-dbndiff).sum(0, keepdim=True)


# %%
def dhprebn(dbndiff, dbnmeani, n):
    """bndiff = hprebn - bnmeani; bnmeani = 1/n*hprebn.sum(0, keepdim=True): two branches."""
    return dbndiff.clone() + 1.0 / n * torch.ones_like(dbndiff) * dbnmeani


# %%
def dembcat(dhprebn, W1):
    """hprebn = embcat @ W1 + b1  ->  shape (n, block_size * n_embd)."""
    return dhprebn @ W1.T


# %%
def dW1(dhprebn, embcat):
    """hprebn = embcat @ W1 + b1  ->  shape (block_size * n_embd, n_hidden)."""
    return embcat.T @ dhprebn


# %%
def db1(dhprebn):
    """hprebn = embcat @ W1 + b1  ->  shape (n_hidden,)."""
    return dhprebn.sum(0)


# %%
def demb(dembcat, emb):
    """embcat = emb.view(emb.shape[0], -1)  ->  shape (n, block_size, n_embd)."""
    return dembcat.view(emb.shape)


# %%
def dC(demb, Xb, C):
    """emb = C[Xb]  ->  shape (vocab_size, n_embd): rows used twice get both contributions."""
    out = torch.zeros_like(C)
    for k in range(Xb.shape[0]):
        for j in range(Xb.shape[1]):
            out[Xb[k, j]] += demb[k, j]
    return out


# %%
def dlogits_fused(logits, Yb, n):
    """loss = F.cross_entropy(logits, Yb)  ->  d loss / d logits, shape (n, vocab_size)."""
    raise NotImplementedError


# %%
def dhprebn_fused(dhpreact, bngain, bnvar_inv, bnraw, n):
    """hpreact = bngain * (hprebn - mean) / sqrt(var(unbiased) + 1e-5) + bnbias  ->  (n, n_hidden)."""
    raise NotImplementedError


# %%
def backward(logits, Yb, n, h, W2, hpreact, bngain, bnvar_inv, bnraw, embcat, W1, emb, Xb, C):
    """Returns [dC, dW1, db1, dW2, db2, dbngain, dbnbias] for the fused forward pass."""
    raise NotImplementedError
