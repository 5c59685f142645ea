# A student's mistake: tanh's derivative written with its input.
# expect-hint: dhpreact_input
def dhpreact(dh, hpreact):
    return (1 - hpreact**2) * dh
