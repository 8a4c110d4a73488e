"""Run the real `bequest` command and SIGKILL it at the n-th call of one function, as a crash would.

    python kill_harness.py MODULE:ATTRIBUTE:N:WHEN -- bequest arguments...

ATTRIBUTE may be `Class.method`; WHEN is `before` (killed as the call starts) or `after` (killed as
it returns, before its caller goes on: e.g. a checkpoint's weights written, its folder not yet
renamed). Nothing of bequest is changed but that one name, which the code looks up when it calls.
"""

import importlib
import os
import signal
import sys


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


if __name__ == "__main__":
    spec, separator, *arguments = sys.argv[1:]
    assert separator == "--", __doc__
    arm(spec)
    sys.argv = ["bequest", *arguments]
    from bequest.cli import main

    main()
