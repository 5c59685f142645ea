# Spreads its memory over helpers and memory files, none over the limit by itself: six forked
# helpers of 250 MiB each and 60 memfds of 16 MiB (the file-size limit), while the file loads.
# Each process stays under the per-process limits; the submission as a whole does not.
import os
import time

HELPER_MIB, HELPERS, MEMFDS, MEMFD_MIB = 250, 6, 60, 16
helpers = []
for _ in range(HELPERS):
    pid = os.fork()
    if pid == 0:
        hoard = bytearray(HELPER_MIB * 2**20)       # zeroed: every page touched
        time.sleep(600)
        os._exit(0)
    helpers.append(pid)
memfds = []
for _ in range(MEMFDS):
    fd = os.memfd_create("hoard")
    for _ in range(MEMFD_MIB):
        os.write(fd, bytes(2**20))
    memfds.append(fd)
time.sleep(1)       # the helpers have filled their share by now
print("ALL ALLOCATED")


def dlogprobs(logprobs, Yb, n):
    return logprobs * 0
