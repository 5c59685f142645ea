# A student's mistake: 1 - tanh instead of 1 - tanh**2.
# expect-hint: dhpreact_one_minus_tanh
def dhpreact(dh, h):
    return (1 - h) * dh
