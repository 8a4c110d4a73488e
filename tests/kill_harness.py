"""SIGKILL the process at the n-th call of one function, as a crash would (armed in a zygote's child).

A spec is MODULE:ATTRIBUTE:N:WHEN. ATTRIBUTE may be `Class.method`; WHEN is `before` (killed as the
call starts) or `after` (killed as it returns, before its caller goes on: e.g. a checkpoint's weights
written, its folder not yet renamed). Nothing of bequest is changed but that one name, which the
code looks up when it calls.
"""

import importlib
import os
import signal


def arm(spec: str) -> None:
    module_name, attribute, count, when = spec.split(":")
    *path, name = attribute.split(".")
    owner = importlib.import_module(module_name)
    for part in path:
        owner = getattr(owner, part)
    real, calls = getattr(owner, name), [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == int(count) and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(*args, **kwargs)
        if calls[0] == int(count) and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, name, wrapper)
