# Right for the lecture's sizes only: 32 (n), 27 (vocab_size), 3 and 10 (block_size, n_embd) and
# 64 (n_hidden) hard-coded. Passes the lecture config, fails the hidden ones.
# expect-culprits: dlogprobs=n,vocab_size dhprebn=n demb=n,n_embd,block_size db1=n_hidden

def dlogprobs(logprobs, Yb, n):
    out = torch.zeros(32, 27)
    out[range(32), Yb] = -1.0 / 32
    return out


def dhprebn(dbndiff, dbnmeani, n):
    return dbndiff + 1.0 / 32 * dbnmeani


def demb(dembcat, emb):
    return dembcat.view(32, 3, 10)


def db1(dhprebn):
    return dhprebn.sum(0).view(64)
