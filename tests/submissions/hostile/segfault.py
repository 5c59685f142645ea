# Crashes the interpreter with a segmentation fault (reads address 0 through ctypes).
# expect-gradient: dlogprobs
# expect-status: error
# expect-message: SIGSEGV (a segmentation fault)
# expect-review: calls C code directly
import ctypes


def dlogprobs(logprobs, Yb, n):
    return ctypes.string_at(0)
