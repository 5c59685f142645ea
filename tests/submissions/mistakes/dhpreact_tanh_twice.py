# A student's mistake: tanh applied to h again.
# expect-hint: dhpreact_tanh_twice
def dhpreact(dh, h):
    return (1 - torch.tanh(h)**2) * dh
