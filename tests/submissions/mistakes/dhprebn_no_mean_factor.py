# A student's mistake: the 1/n of the mean left out.
# expect-hint: dhprebn_no_mean_factor
def dhprebn(dbndiff, dbnmeani, n):
    return dbndiff + torch.ones_like(dbndiff) * dbnmeani
