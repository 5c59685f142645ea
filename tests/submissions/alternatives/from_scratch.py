# Correct alternatives that ask for no upstream gradient (they are not probed with random
# upstream gradients: nothing random reaches them) or for an earlier one than the lecture's.
# Every gradient must pass, with no hint.

def dlogits(logits, Yb, n):
    out = F.softmax(logits, 1)
    out[range(n), Yb] -= 1
    return out / n


def dcounts_sum_inv(dlogprobs, probs, counts):
    return (counts * (dlogprobs / probs)).sum(1, keepdim=True)
