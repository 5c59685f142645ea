# Returns a pickle whose loading would run a shell command. Nothing is ever unpickled.
# expect-gradient: dlogprobs
# expect-status: error
# expect-message: is a bytes, expected a torch.Tensor
# expect-review: starts a process
import os
import pickle


class Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/backprop-grader-pwned",))


def dlogprobs(logprobs, Yb, n):
    return pickle.dumps(Payload())
