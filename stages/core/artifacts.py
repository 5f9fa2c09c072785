"""Content-addressed artifacts: names from hashes, atomic writes, and the one "already done?" check.

An artifact's name is a hash of everything that determines it, so a changed input means a new
file and an unchanged one is never made twice. Files are written to a temp name in the same
folder, validated, then `os.replace`d: a crash never leaves a partial file under a final name.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

log = logging.getLogger("dramaforge.artifacts")

# Bump to re-render every artifact of every project (a change in how any artifact is made).
FORMAT_VERSION = 1


def spec_hash(kind: str, spec: dict, *, version: int = FORMAT_VERSION) -> str:
    """A short, stable hash of a JSON-able spec (sorted keys; floats rounded to 1e-6)."""
    payload = json.dumps({"kind": kind, "v": version, "spec": _canonical(spec)},
                         sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:20]


def _canonical(obj):
    if isinstance(obj, float):
        return round(obj, 6)
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of an input file (a voice model, a music track), computed once per version of it."""
    st = Path(path).stat()
    return _digest(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(Path(path))


@contextlib.contextmanager
def atomic_path(final: Path, validate: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a temp path beside `final`; on success validate it and move it into place.

    The temp name keeps the suffix (ffmpeg picks the container from it) and is unique per
    process and call, so parallel renders never collide.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = partial_file(final.parent, final.stem, final.suffix)
    os.close(fd)
    try:
        yield tmp
        if validate is not None:
            validate(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; finished files get the usual mode
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@functools.cache
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes_atomic(final: Path, data: bytes) -> None:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(final: Path, text: str) -> None:
    write_bytes_atomic(final, text.encode("utf-8"))


@dataclass(frozen=True)
class Done:
    """The answer of `is_done`: whether the artifact can be reused, and if not, why."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


def is_done(path: Path, validate: Callable[[Path], None] | None = None) -> Done:
    """The one "already done?" check: the file exists, is not empty, and passes `validate`.

    A corrupt or truncated file is removed so it is remade, and the reason is logged.
    """
    if not path.exists():
        return Done(False, "missing")
    try:
        if path.stat().st_size == 0:
            raise ValueError("empty file")
        if validate is not None:
            validate(path)
    except Exception as exc:  # any validation failure means "remake it"
        reason = f"invalid ({exc})"
        log.warning("remaking %s: %s", path.name, reason)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return Done(False, reason)
    return Done(True)


_OWNER = re.compile(r"\.by-([A-Za-z0-9_]+)-(\d+)-(\d+)-")
LEGACY_TEMP_DIRS = (".animatic-*", ".lipsync-*")  # temp folders named before they carried their owner
FOREIGN_AFTER_S = 24 * 3600  # another machine's temp file or running unit: judged dead after this long


def partial_file(folder: Path, stem: str, suffix: str, tag: str = "") -> tuple[int, Path]:
    """A new temp file in `folder` (fd, path), named for the process writing it:
    `.stem.[tag.]by-HOST-PID-START-XXXX.part.ext`. A sweep removes it only once that process is gone."""
    fd, name = tempfile.mkstemp(prefix=f".{stem}.{tag + '.' if tag else ''}by-{owner()}-",
                                suffix=f".part{suffix}", dir=folder)
    return fd, Path(name)


@contextlib.contextmanager
def partial_dir(folder: Path, stem: str) -> Iterator[Path]:
    """A temp folder in `folder` for one step's scratch files, named like `partial_file` (so a sweep
    removes it once its process is gone: a kill -9 leaves nothing the next render does not clear),
    removed when the step ends."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f".{stem}.by-{owner()}-", suffix=".part", dir=folder))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def sweep_partials(folder: Path, *, foreign_after_s: float = FOREIGN_AFTER_S) -> int:
    """Remove temp files and folders left by processes that no longer run (a killed render's). A
    live render's files in progress stay, so two renders of one project can run side by side; a
    file another machine is writing (a shared build folder) stays until it has not changed for
    `foreign_after_s`."""
    import shutil

    n = 0
    if not folder.is_dir():
        return 0
    found = [*folder.rglob(".*.part*"), *(p for pattern in LEGACY_TEMP_DIRS for p in folder.rglob(pattern))]
    removed: list[Path] = []
    for p in sorted(set(found), key=lambda p: len(p.parts)):  # a folder before what is in it
        if any(d in p.parents for d in removed):
            continue
        owner = _OWNER.search(p.name)
        with contextlib.suppress(OSError):
            if owner and not owner_gone(owner.group(0)[4:-1], since=p.stat().st_mtime,
                                        foreign_after_s=foreign_after_s):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
                removed.append(p)
            else:
                p.unlink()
            n += 1
    return n


def owner() -> str:
    """This process as a name part: host, pid and start time (a reused pid starts later)."""
    return _owner_of(os.getpid())


@functools.cache
def _owner_of(pid: int) -> str:
    # The host name and the pid namespace: a container sharing the host's name (or the build folder)
    # has its own pids, so its processes are judged as another machine's, never by a pid seen here.
    host = re.sub(r"[^A-Za-z0-9_]", "_", os.uname().nodename)[:40] or "host"
    try:
        host += f"_ns{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        pass
    return f"{host}-{pid}-{start_ticks(pid)}"


def owner_gone(token: str | None, *, since: float | None, foreign_after_s: float = FOREIGN_AFTER_S) -> bool:
    """Whether the process named by `token` (an `owner()`) has ended. Another host's process cannot
    be seen from here: it counts as gone once what it owns is `foreign_after_s` old (`since`)."""
    import time

    m = re.fullmatch(r"([A-Za-z0-9_]+)-(\d+)-(\d+)", token or "")
    if m is None:
        return True
    host, here = m.group(1), owner().split("-")[0]
    legacy = not re.search(r"_ns\d+$", host) and host == re.sub(r"_ns\d+$", "", here)  # named before namespaces
    if host != here and not legacy:
        return since is not None and time.time() - since >= foreign_after_s
    return not running(int(m.group(2)), int(m.group(3)))


def start_ticks(pid: int) -> int:
    """When process `pid` started, in clock ticks since boot (0 where /proc cannot tell)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def running(pid: int, start: int) -> bool:
    """Whether the process that wrote a partial file is still running (same pid, same start)."""
    if not alive(pid):
        return False
    return start == 0 or start_ticks(pid) in (0, start)


def alive(pid: int) -> bool:
    """Whether process `pid` exists (this one always does)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
