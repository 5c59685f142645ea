# Runs the gradient in a fresh interpreter (subprocess), out of the sandbox's watch: no process
# may start once the file has run.
# expect-gradient: dlogprobs
# expect-status: error
# expect-message: after your file had run
# expect-limit: processes
# expect-review: starts a process
import subprocess
import sys


def dlogprobs(logprobs, Yb, n):
    subprocess.run([sys.executable, "-c", "print(1)"], check=True)
    return logprobs * 0
