# A "recorder": leaves what it saw where another student's child could find it, in every place
# a child can write outside its working folder: a SysV shared-memory segment, a POSIX
# shared-memory file, files in /tmp and /var/tmp, all readable by every uid. A replayer
# (ipc_replayer.py) graded beside it or after it must find none of them.
import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
KEY, IPC_CREAT = 0x5EC12E7, 0o1000
PATHS = ("/dev/shm/recorded", "/tmp/recorded", "/var/tmp/recorded")


def record(x):
    made = []
    segment = libc.shmget(KEY, 4096, IPC_CREAT | 0o666)
    if segment >= 0:
        address = libc.shmat(segment, None, 0)
        ctypes.memmove(address, b"RECORDED", 8)
        made.append("sysv")
    for path in PATHS:
        try:
            with open(path, "w") as f:
                f.write("RECORDED")
            os.chmod(path, 0o666)
            made.append(path)
        except OSError:
            pass
    print("made", made)
    return x
