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


class EnvironmentFailure(DramaforgeError):
    """The machine, not the input, stopped the work: a full disk, a read-only or unwritable folder, a
    corrupt database. Made files are kept; the same command resumes once the cause is fixed."""

    exit_code = 1


_SEEN = {  # errno -> (what happened, what to do)
    "ENOSPC": ("the disk is full", "free some space (`df -h {folder}` shows it) or move the project to a larger "
                                   "disk"),
    "EDQUOT": ("the disk quota is used up", "free some space or ask for a larger quota"),
    "EROFS": ("the folder is on a read-only file system", "remount it writable or copy the project to a writable "
                                                           "folder"),
    "EACCES": ("permission denied", "make the folder writable for this user (`ls -ld {folder}`) or render as its "
                                    "owner"),
    "EPERM": ("the operation is not permitted", "make the folder writable for this user or render as its owner"),
}
_IN_TEXT = {"No space left on device": "ENOSPC", "Disk quota exceeded": "EDQUOT",
            "Read-only file system": "EROFS", "database or disk is full": "ENOSPC",
            "attempt to write a readonly database": "EROFS"}


def environment_failure(exc: BaseException, where: str | None = None, *, database: str | None = None,
                        inside: str | None = None) -> EnvironmentFailure | None:
    """The exception (or one it came from) as an EnvironmentFailure, if the environment caused it:
    an OSError of a full disk or an unwritable folder, or the same said by SQLite or ffmpeg.
    `where` names the path when the error does not, `database` the SQLite file in use; with `inside`
    (the build folder), permission denied on a file elsewhere (an input) is not the machine's."""
    import errno
    import os
    import sqlite3

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, EnvironmentFailure):
            return exc
        code = errno.errorcode.get(exc.errno, "") if isinstance(exc, OSError) and exc.errno else ""
        text = str(exc)
        path = getattr(exc, "filename", None) or (database if isinstance(exc, sqlite3.Error) else None) or where
        if code not in _SEEN and (isinstance(exc, sqlite3.Error) or "ffmpeg" in text):  # not a provider's words
            code = next((c for t, c in _IN_TEXT.items() if t in text), "")
            if code == "EROFS" and path and not _read_only(str(path)):
                code = "EACCES"  # SQLite says "readonly" for a file this user may not write, too
            if not code and isinstance(exc, sqlite3.DatabaseError) and ("not a database" in text
                                                                         or "malformed" in text):
                return EnvironmentFailure(
                    f"the database {path or ''} cannot be read ({text})",
                    hint="move it aside (it is kept for inspection) and run the same command: a ledger "
                         "(build/ledger.sqlite) is rebuilt from the files on disk")
        if code in ("EACCES", "EPERM") and inside and getattr(exc, "filename", None) and \
                not os.path.abspath(str(exc.filename)).startswith(os.path.abspath(inside) + os.sep):
            return None
        if code in _SEEN:
            folder = os.path.dirname(str(path)) if path and not os.path.isdir(str(path)) else (path or ".")
            happened, todo = _SEEN[code]
            return EnvironmentFailure(
                f"{happened} at {path or 'the build folder'} ({os.strerror(getattr(errno, code))})",
                hint=f"{todo.format(folder=folder)}; what was made is kept: run the same command again to resume")
        exc = exc.__cause__ or exc.__context__
    return None


def _read_only(path: str) -> bool:
    """Whether the file system holding `path` (or its nearest existing folder) is mounted read-only."""
    import os

    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    try:
        return bool(os.statvfs(path or ".").f_flag & os.ST_RDONLY)
    except OSError:
        return False
