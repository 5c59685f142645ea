# A student's mistake: summed over the hidden units instead of the batch.
# expect-hint: dbnbias_wrong_dim
def dbnbias(dhpreact):
    return dhpreact.sum(1, keepdim=True)
