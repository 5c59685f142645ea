# A student's mistake: the broadcast of bngain not summed.
# expect-hint: dbngain_no_sum
def dbngain(dhpreact, bnraw):
    return dhpreact * bnraw
