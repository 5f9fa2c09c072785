"""User-facing errors: each says where (file:line), what (the offending text) and how to fix it.

The CLI's one handler prints these without a traceback and exits with code 2.
"""

from __future__ import annotations


class DramaforgeError(Exception):
    """Base class for errors the user can act on."""

    exit_code = 1

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 text: str | None = None, hint: str | None = None, more: list["DramaforgeError"] | tuple = ()):
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.text = text
        self.hint = hint
        self.more = list(more)  # further problems found by the same check, each its own message

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        out = f"{where}{self.message}"
        if self.text is not None:
            out += f"\n    {self.text.rstrip()[:200]}"
        if self.hint:
            out += f"\n  hint: {self.hint}"
        return out

    def to_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "message": self.message,
                "text": self.text, "hint": self.hint}


class InputError(DramaforgeError):
    """Bad script, project.yaml or command-line input: refused before any work starts."""

    exit_code = 2


class RenderError(DramaforgeError):
    """A stage failed while rendering (ffmpeg, a backend, a validation of a made file)."""

    exit_code = 1
