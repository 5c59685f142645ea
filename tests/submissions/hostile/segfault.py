# Crashes the interpreter with a segmentation fault (reads address 0 through ctypes).
# expect-gradient: dlogprobs
# expect-status: error
# expect-message: SIGSEGV (a segmentation fault)
import ctypes


def dlogprobs(logprobs, Yb, n):
    return ctypes.string_at(0)
