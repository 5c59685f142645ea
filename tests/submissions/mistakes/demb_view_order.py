# A student's mistake: the view undone with block_size and n_embd swapped.
# expect-hint: demb_view_order
def demb(dembcat, emb):
    return dembcat.view(emb.shape[0], emb.shape[2], emb.shape[1])
