"""The backprop ninja exercises (makemore part 4): derive every gradient by hand.

Fill in each function below so that it returns the gradient of the loss with respect to the
tensor in its name. Each function receives, by parameter name, the lecture's forward tensors
(`logprobs`, `probs`, `counts`, ..., `emb`), the parameters (`C`, `W1`, `b1`, `W2`, `b2`, `bngain`,
`bnbias`), `n`, `Xb`, `Yb` and the gradients *upstream* of its own: you may change the parameter
lists to ask for what you need. Do not use autograd (`.backward()`, `.grad`, `torch.autograd`).

Check your work at any time:

    backprop-grader check backprop.py

Each gradient is graded on its own (with autograd's upstream gradients) and chained (with yours).
"""

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# Exercise 1: backprop through the whole chunked forward pass, one step at a time.
# ---------------------------------------------------------------------------------------------

def dlogprobs(logprobs, Yb, n):
    """loss = -logprobs[range(n), Yb].mean()  ->  d loss / d logprobs, shape (n, vocab_size)."""
    raise NotImplementedError


def dprobs(dlogprobs, probs):
    """logprobs = probs.log()  ->  d loss / d probs, shape (n, vocab_size)."""
    raise NotImplementedError


def dcounts_sum_inv(dprobs, counts):
    """probs = counts * counts_sum_inv  ->  shape (n, 1): counts_sum_inv was broadcast."""
    raise NotImplementedError


def dcounts_sum(dcounts_sum_inv, counts_sum):
    """counts_sum_inv = counts_sum**-1  ->  shape (n, 1)."""
    raise NotImplementedError


def dcounts(dprobs, counts_sum_inv, dcounts_sum):
    """probs = counts * counts_sum_inv; counts_sum = counts.sum(1, keepdims=True): two branches."""
    raise NotImplementedError


def dnorm_logits(dcounts, counts):
    """counts = norm_logits.exp()  ->  shape (n, vocab_size)."""
    raise NotImplementedError


def dlogit_maxes(dnorm_logits):
    """norm_logits = logits - logit_maxes  ->  shape (n, 1)."""
    raise NotImplementedError


def dlogits(dnorm_logits, dlogit_maxes, logits):
    """norm_logits = logits - logit_maxes; logit_maxes = logits.max(1, keepdim=True).values."""
    raise NotImplementedError


def dh(dlogits, W2):
    """logits = h @ W2 + b2  ->  shape (n, n_hidden)."""
    raise NotImplementedError


def dW2(dlogits, h):
    """logits = h @ W2 + b2  ->  shape (n_hidden, vocab_size)."""
    raise NotImplementedError


def db2(dlogits):
    """logits = h @ W2 + b2  ->  shape (vocab_size,)."""
    raise NotImplementedError


def dhpreact(dh, h):
    """h = torch.tanh(hpreact)  ->  shape (n, n_hidden)."""
    raise NotImplementedError


def dbngain(dhpreact, bnraw):
    """hpreact = bngain * bnraw + bnbias  ->  shape (1, n_hidden)."""
    raise NotImplementedError


def dbnbias(dhpreact):
    """hpreact = bngain * bnraw + bnbias  ->  shape (1, n_hidden)."""
    raise NotImplementedError


def dbnraw(dhpreact, bngain):
    """hpreact = bngain * bnraw + bnbias  ->  shape (n, n_hidden)."""
    raise NotImplementedError


def dbnvar_inv(dbnraw, bndiff):
    """bnraw = bndiff * bnvar_inv  ->  shape (1, n_hidden)."""
    raise NotImplementedError


def dbnvar(dbnvar_inv, bnvar):
    """bnvar_inv = (bnvar + 1e-5)**-0.5  ->  shape (1, n_hidden)."""
    raise NotImplementedError


def dbndiff2(dbnvar, bndiff2, n):
    """bnvar = 1/(n-1)*(bndiff2).sum(0, keepdim=True)  ->  shape (n, n_hidden)."""
    raise NotImplementedError


def dbndiff(dbnraw, bnvar_inv, dbndiff2, bndiff):
    """bnraw = bndiff * bnvar_inv; bndiff2 = bndiff**2: two branches."""
    raise NotImplementedError


def dbnmeani(dbndiff):
    """bndiff = hprebn - bnmeani  ->  shape (1, n_hidden)."""
    raise NotImplementedError


def dhprebn(dbndiff, dbnmeani, n):
    """bndiff = hprebn - bnmeani; bnmeani = 1/n*hprebn.sum(0, keepdim=True): two branches."""
    raise NotImplementedError


def dembcat(dhprebn, W1):
    """hprebn = embcat @ W1 + b1  ->  shape (n, block_size * n_embd)."""
    raise NotImplementedError


def dW1(dhprebn, embcat):
    """hprebn = embcat @ W1 + b1  ->  shape (block_size * n_embd, n_hidden)."""
    raise NotImplementedError


def db1(dhprebn):
    """hprebn = embcat @ W1 + b1  ->  shape (n_hidden,)."""
    raise NotImplementedError


def demb(dembcat, emb):
    """embcat = emb.view(emb.shape[0], -1)  ->  shape (n, block_size, n_embd)."""
    raise NotImplementedError


def dC(demb, Xb, C):
    """emb = C[Xb]  ->  shape (vocab_size, n_embd): rows used twice get both contributions."""
    raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# Exercise 2: cross-entropy backward in one expression.
# ---------------------------------------------------------------------------------------------

def dlogits_fused(logits, Yb, n):
    """loss = F.cross_entropy(logits, Yb)  ->  d loss / d logits, shape (n, vocab_size).

    One expression (or a few lines) from logits and Yb, not the chain of exercise 1. Work out the
    derivative of -log(softmax(logits)[Yb]) on paper first; the result is approximate, not
    exact, compared with autograd (maxdiff about 5e-9).
    """
    raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# Exercise 3: batch-norm backward in one expression.
# ---------------------------------------------------------------------------------------------

def dhprebn_fused(dhpreact, bngain, bnvar_inv, bnraw, n):
    """hpreact = bngain * (hprebn - mean) / sqrt(var(unbiased) + 1e-5) + bnbias  ->  (n, n_hidden).

    dhprebn in one expression from dhpreact, through the whole batch norm (with Bessel's
    correction n-1 in the variance). Approximate, not exact, compared with autograd.
    """
    raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# Exercise 4: the whole backward pass of the training loop (n_hidden = 200).
# ---------------------------------------------------------------------------------------------

def backward(logits, Yb, n, h, W2, hpreact, bngain, bnvar_inv, bnraw, embcat, W1, emb, Xb, C):
    """The whole manual backward pass of the training loop (n_hidden = 200).

    Forward pass, under torch.no_grad():
        emb = C[Xb]; embcat = emb.view(emb.shape[0], -1); hprebn = embcat @ W1 + b1
        bnmean = hprebn.mean(0, keepdim=True); bnvar = hprebn.var(0, keepdim=True, unbiased=True)
        bnvar_inv = (bnvar + 1e-5)**-0.5; bnraw = (hprebn - bnmean) * bnvar_inv
        hpreact = bngain * bnraw + bnbias; h = torch.tanh(hpreact); logits = h @ W2 + b2
        loss = F.cross_entropy(logits, Yb)
    Ask for any of these tensors, the parameters (C, W1, b1, W2, b2, bngain, bnbias), n, Xb, Yb.
    Use your exercise 2 and 3 formulas. Return [dC, dW1, db1, dW2, db2, dbngain, dbnbias], each
    of its parameter's shape. The grader checks them at step 0, then trains with them for a few
    SGD steps and compares with training by autograd.
    """
    raise NotImplementedError
