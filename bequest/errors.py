"""The one exception type users see: a message that says what is wrong and how to fix it."""


class BequestError(Exception):
    """A user-facing error. The CLI prints its message on one line and exits non-zero."""


def warn(message: str) -> None:
    """A one-line warning on stderr: something was wrong but bequest could go on (and says how it did)."""
    import sys

    print(f"warning: {message}", file=sys.stderr, flush=True)
