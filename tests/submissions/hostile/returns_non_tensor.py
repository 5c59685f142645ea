# Returns something that is not a tensor.
# expect-gradient: dlogprobs
# expect-status: error
# expect-message: is a dict, expected a torch.Tensor
def dlogprobs(logprobs, Yb, n):
    return {"answer": logprobs}
