"""A tiny progress channel from tasks to whatever display the CLI installed (or none)."""

from __future__ import annotations

import threading
from typing import Protocol


class Reporter(Protocol):
    def advance(self, kind: str, n: int = 1) -> None: ...

    def note(self, message: str) -> None: ...


_lock = threading.Lock()
_reporter: Reporter | None = None


def install(reporter: Reporter | None) -> None:
    global _reporter
    _reporter = reporter


def advance(kind: str, n: int = 1) -> None:
    with _lock:
        if _reporter is not None:
            _reporter.advance(kind, n)


def note(message: str) -> None:
    """A line for the person watching (a resumed render, say); dropped when nobody is."""
    with _lock:
        if _reporter is not None:
            _reporter.note(message)
