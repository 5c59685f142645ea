# Size-1 dimensions that are not in front, or another element count: wrong, as before.
# Appended to the reference solution (tests/conftest.py's with_overrides).
# expect-status: dlogit_maxes shape, dbndiff2 shape


def dlogit_maxes(dnorm_logits):
    return (-dnorm_logits).sum(1)          # (n,) for (n, 1): it lines up with the other axis


def dbndiff2(dbnvar, bndiff2, n):
    return 1.0 / (n - 1) * dbnvar          # (1, n_hidden) for (n, n_hidden): not broadcast
