# A student's mistake: the view undone in the wrong order, then transposed to fit.
# expect-hint: demb_view_transposed
def demb(dembcat, emb):
    n, block_size, n_embd = emb.shape
    return dembcat.view(n, n_embd, block_size).permute(0, 2, 1)
