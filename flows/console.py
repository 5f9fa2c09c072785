"""Where the command line speaks: stderr (stdout is for `--json` and what a pipe reads), markup escaped."""

from __future__ import annotations


def err_console():
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)  # never break paths or file:line across lines


def esc(text: str) -> str:
    """Text as it is, not as rich markup (a path or a line may hold [brackets])."""
    from rich.markup import escape

    return escape(text)
