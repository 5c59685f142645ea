# Imports the grader's own autograd reference inside the sandbox and returns its answer.
# expect-gradient: dlogprobs
# expect-status: integrity
# expect-message: computed with autograd
# expect-integrity: autograd
def dlogprobs(logprobs, Yb, n):
    from grader.lecture import Config, build_lecture_state

    return build_lecture_state(Config()).grads["dlogprobs"]
