# Starts a helper while the file loads, which would wait for work and answer later (a forked
# grandchild computing with autograd, unwatched); ``helper_alive`` says whether it still runs
# once the file has loaded.
import os
import time

helper = os.fork()
if helper == 0:
    time.sleep(600)
    os._exit(0)


def helper_alive(x):
    # a killed helper is our zombie till we reap it; SIGKILL takes a moment to land
    deadline = time.monotonic() + 10
    while not os.waitpid(helper, os.WNOHANG)[0]:
        if time.monotonic() > deadline:
            print("alive")
            return x
        time.sleep(0.01)
    print("gone")
    return x
