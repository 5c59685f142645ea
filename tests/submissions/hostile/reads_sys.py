# Looks through /sys for the machine's cgroups, network devices and kernel settings, and tries
# to change the huge-page setting the sandbox shows the worker's glibc. Of /sys only that folder
# is there, read-only (and a child running as a uid of its own cannot even enter /sys).
# expect-gradient: dlogprobs
# expect-status: exact
# expect-output: outside the huge-page settings: [] write blocked:
# expect-needs: bwrap
import os

import torch

_SETTINGS = "/sys/kernel/mm/transparent_hugepage"


def dlogprobs(logprobs, Yb, n):
    outside = []
    for root, dirs, files in os.walk("/sys"):
        if root == _SETTINGS or root.startswith(_SETTINGS + "/"):
            dirs[:] = []
        elif not _SETTINGS.startswith(root + "/"):      # a folder above the settings is fine
            outside.append(root)
        outside += [os.path.join(root, f) for f in files if root != _SETTINGS]
    try:
        with open(os.path.join(_SETTINGS, "enabled"), "w") as f:
            f.write("never")
        print("WROTE")
    except OSError as e:
        print("outside the huge-page settings:", sorted(outside)[:5], "write blocked:", e.strerror)
    out = torch.zeros_like(logprobs)
    out[range(n), Yb] = -1.0 / n
    return out
