# A student's mistake: power rule with the exponent kept.
# expect-hint: dbnvar_exponent
def dbnvar(dbnvar_inv, bnvar):
    return -0.5 * (bnvar + 1e-5)**-0.5 * dbnvar_inv
