"""Run the `bequest` command many times without paying for its imports each time.

Every command of the bad-input table is refused within a second or two, but starting Python and
importing torch, transformers and bequest costs about five seconds of CPU. A zygote is a process
that imports the CLI once, then forks a child per command: the child is that process as it stood
after its imports, with its own working directory, environment, standard input and output files,
and runs `bequest.cli.main()` exactly as the `bequest` executable does. The zygote itself never
runs a model, so no thread pool exists to be broken by the fork.

    python zygote.py        # then, one JSON request per line on stdin, one JSON reply per line on stdout
    {"args": [...], "cwd": "...", "env": {...}, "stdin": "...", "out": "path", "err": "path"}
    -> {"returncode": N}
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path


def _child(request: dict) -> None:
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, path, mode in ((0, request["in"], os.O_RDONLY), (1, request["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                           (2, request["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        os.dup2(os.open(path, mode, 0o644), fd)
    sys.stdout = sys.__stdout__  # the zygote writes its replies there; the child's is the command's output
    sys.argv = ["bequest", *request["args"]]
    code = 1
    try:
        if request.get("kill"):  # a crash at a chosen call (see kill_harness.py)
            from kill_harness import arm

            arm(request["kill"])
        from bequest.cli import main

        main()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    import bequest.cli  # noqa: F401  the imports every command pays for, done once
    import bequest.kinds  # noqa: F401
    import bequest.pipeline  # noqa: F401
    import bequest.report  # noqa: F401
    import bequest.sweep  # noqa: F401

    replies = sys.stdout
    sys.stdout = sys.stderr  # nothing but replies on the reply channel
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")
        replies.flush()


class Zygote:
    """The test side: `run(...)` returns a CompletedProcess as `subprocess.run` would."""

    def __init__(self):
        self.process = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                                                        "TRANSFORMERS_OFFLINE": "1"})
        self.lock = threading.Lock()

    def run(self, args: list, cwd: Path, env: dict[str, str] | None = None, stdin: str = "",
            scratch: Path | None = None, kill: str | None = None) -> subprocess.CompletedProcess:
        """`bequest ARGS` in `cwd` (environment: this process's, updated with `env`); `kill`: a kill_harness spec."""
        scratch = Path(scratch or tempfile.mkdtemp(prefix="bequest-zygote-"))
        scratch.mkdir(parents=True, exist_ok=True)
        paths = {name: str(scratch / name) for name in ("in", "out", "err")}
        Path(paths["in"]).write_text(stdin)
        request = {"args": [str(a) for a in args], "cwd": str(cwd), "env": {**os.environ, **(env or {})}, "kill": kill, **paths}
        with self.lock:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            reply = json.loads(self.process.stdout.readline())
        return subprocess.CompletedProcess(["bequest", *args], reply["returncode"], Path(paths["out"]).read_text(),
                                           Path(paths["err"]).read_text())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


if __name__ == "__main__":
    serve()
