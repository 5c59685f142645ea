# The exercise functions made in a loop through globals(): the grader cannot see them without
# running the file, and says so, with what to write instead (never "found none"). The file also
# calls .backward() at the top level: it is flagged though the file is not graded.
# expect-message: defines no exercise function by `def`: dlogprobs, dprobs, dcounts_sum_inv are made at run time (line 22: `for name in ["dlogprobs", "dprobs", "dcounts_sum_inv"]:`); functions made at run time are not graded; write `def dlogprobs(logprobs, Yb, n):`
# expect-integrity: globals_loop.py, line 28: calls .backward(): check.sum().backward()
import torch
import torch.nn.functional as F

FORMULAS = {
    "dlogprobs": lambda logprobs, Yb, n: -F.one_hot(Yb, logprobs.shape[1]).float() / n,
    "dprobs": lambda dlogprobs, probs: dlogprobs / probs,
    "dcounts_sum_inv": lambda dprobs, counts: (counts * dprobs).sum(1, keepdim=True),
}


def make(name):
    def gradient(**tensors):
        return FORMULAS[name](**tensors)
    return gradient


for name in ["dlogprobs", "dprobs", "dcounts_sum_inv"]:
    globals()[name] = make(name)

# a quick check with autograd, left in the file
check = torch.ones(3, requires_grad=True)
check = check * 2
check.sum().backward()
