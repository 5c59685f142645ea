# bngain was broadcast over the batch, but its gradient is not summed over it.
# expect-first-wrong: dbngain
# expect-status: shape
def dbngain(dhpreact, bnraw):
    return bnraw * dhpreact
