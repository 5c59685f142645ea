# A "replayer": looks for what a recorder (ipc_recorder.py) left, and prints what it found.
import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
KEY = 0x5EC12E7
PATHS = ("/dev/shm/recorded", "/tmp/recorded", "/var/tmp/recorded")


def replay(x):
    found = []
    segment = libc.shmget(KEY, 0, 0)
    if segment >= 0:
        address = libc.shmat(segment, None, 0)
        found.append("sysv:" + (ctypes.string_at(address, 8).decode()
                                if address not in (None, ctypes.c_void_p(-1).value) else "?"))
    found += [path for path in PATHS if os.path.exists(path)]
    print("found", found)
    return x
