"""The end of a `dramaforge` process without the interpreter's teardown.

Freeing Prefect's and pydantic's million objects one by one at exit costs 0.3-0.5 CPU-s of every
command and gives nothing back: the kernel frees them at once. So the CLI ends the process itself,
as the last exit handler, once every other one has run (Prefect's drain their logs and events,
threads are joined) and the standard streams are flushed.
"""

from __future__ import annotations

import atexit
import os
import sys

_RUNNING = "running"  # main() has not ended (a traceback leaves it so: the interpreter ends as usual)
_code: list = []  # the exit status main() ended with


def install() -> None:
    """Once per process, first: handlers registered later run before ours. Never where one is
    registered already (coverage, a sitecustomize): it would be skipped."""
    if not _code:
        _code.append(_RUNNING)
        if getattr(atexit, "_ncallbacks", lambda: 1)() == 0:
            atexit.register(_exit_now)
    _code[0] = _RUNNING


def ended(code: object) -> None:
    """main() ends with `code` (SystemExit's: None, an int, or a message for the interpreter to print)."""
    _code[0] = code


def _exit_now() -> None:
    code = _code[0]
    if code is not None and not isinstance(code, int):  # a message to print, or a traceback's exit
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: let the interpreter say what it says
        return
    os._exit(code or 0)
