"""Whether a build folder can be shared by several machines: what its filesystem does with locks.

A render spread over machines (`--dask`, a deployment's workers) makes each unit under a file lock
(flock, through filelock) and records it in an SQLite ledger (POSIX byte-range locks). Both hold
across machines only where the filesystem carries locks between its clients (nfs(5), flock(2),
mount.cifs(8)):

- a local filesystem (ext4, xfs, btrfs, zfs, tmpfs, overlay ...): one machine, all its workers;
- NFS: flock is emulated as a whole-file byte-range lock the server holds for every client (Linux
  2.6.12+), unless mounted `local_lock=flock|posix|all` or `nolock` (locks then hold on this machine only);
- SMB/CIFS: flock reaches the server from Linux 5.5 (before, it stays local), not with `nobrl`;
- CephFS (kernel client), and Lustre mounted with `flock`: locks are cluster-wide.
Anything else (sshfs, s3fs, gcsfuse, rclone, 9p, another FUSE filesystem, Lustre's `localflock`) is
refused: a lock taken there would not stop another machine, and a shot could be paid for twice.

SQLite's WAL needs memory shared by every process using the database, so one host: a ledger on a
network filesystem uses a rollback journal instead (`network`).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

LOCAL = {"ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "tmpfs", "overlay", "f2fs", "jfs", "reiserfs", "bcachefs",
         "apfs", "hfsplus", "ntfs", "ntfs3", "vfat", "exfat"}
NETWORK = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "lustre"}
MOUNTINFO = Path("/proc/self/mountinfo")


@dataclass(frozen=True)
class Mount:
    point: str
    fstype: str
    options: frozenset[str]  # the mount's and the filesystem's own (super) options, "key=value" or "flag"

    def option(self, key: str) -> str | None:
        return next((o.partition("=")[2] for o in self.options if o.startswith(key + "=")), None)


def mount_of(path: Path, mountinfo: Path | None = None) -> Mount | None:
    """The mount `path` lives on (the longest mount point above it), from the kernel's mountinfo (None
    where there is none to read)."""
    real, best, mountinfo = os.path.realpath(path), None, mountinfo or MOUNTINFO
    if not mountinfo.exists():
        return None
    for line in mountinfo.read_text(encoding="utf-8", errors="replace").splitlines():
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) < 6 or len(rest) < 3:
            continue
        point = _unescape(fields[4])
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best.point)):
            best = Mount(point, rest[0], frozenset(fields[5].split(",") + rest[2].split(",")))
    return best


def _unescape(field: str) -> str:  # mountinfo writes space, tab, newline and backslash as octal escapes
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def why_not_shared(mount: Mount | None, kernel: str | None = None) -> str | None:
    """Why locks on this mount do not hold across machines (None: they do)."""
    if mount is None:
        return "its filesystem is not in /proc/self/mountinfo"
    kind, options = mount.fstype, mount.options
    if kind in LOCAL or kind == "ceph":
        return None
    if kind in ("nfs", "nfs4"):
        if "nolock" in options:
            return "it is mounted with nolock: its locks hold on this machine only"
        if (local := mount.option("local_lock")) not in (None, "none"):
            return f"it is mounted with local_lock={local}: its locks hold on this machine only"
        return None
    if kind in ("cifs", "smb3", "smbfs"):
        if "nobrl" in options:
            return "it is mounted with nobrl: no lock reaches the server"
        major, minor = (int(p) for p in ((kernel or os.uname().release).split(".") + ["0"])[:2])
        if (major, minor) < (5, 5):
            return f"Linux {major}.{minor} keeps flock on SMB local (from 5.5 it reaches the server)"
        return None
    if kind == "lustre":
        return None if "flock" in options else "Lustre shares flock between clients only when mounted with flock"
    return f"{kind} does not carry locks between machines"


@functools.lru_cache(maxsize=64)
def network(folder: str) -> bool:
    """Whether `folder` is on a filesystem other machines may mount too (SQLite's WAL would not hold)."""
    mount = mount_of(Path(folder))
    return mount is not None and mount.fstype not in LOCAL


FARM = ".farm"  # in the build folder: the token of the render now spread over machines


def refuse_unshared(build: Path) -> None:
    """Refuse (InputError) a build folder whose locks would not hold across machines, before a render
    sends its units to other processes and machines."""
    from stages.core.errors import InputError

    mount = mount_of(build)
    why = why_not_shared(mount)
    if why is not None:
        raise InputError(f"{build} cannot be shared by several machines: {why} "
                         f"(mounted at {mount.point if mount else '?'} as {mount.fstype if mount else '?'})",
                         hint="put the project on a local disk (one machine, any number of workers), or on NFS "
                              "(default local_lock=none, no nolock), SMB on Linux 5.5+ (no nobrl), CephFS or "
                              "Lustre mounted with flock, mounted at the same path on every machine")


def mark_farm(build: Path) -> str:
    """A new token in the build folder: the workers of this render check they see it (`sees_farm`)."""
    import uuid

    from stages.core.artifacts import write_text_atomic

    token = uuid.uuid4().hex
    build.mkdir(parents=True, exist_ok=True)
    write_text_atomic(build / FARM, token)
    return token


@functools.lru_cache(maxsize=64)
def sees_farm(build: str, token: str) -> None:
    """In a worker: stop the render (EnvironmentFailure) unless this machine sees the build folder the
    render writes, on a filesystem whose locks hold across machines. Once per folder and render."""
    import socket

    from stages.core.errors import EnvironmentFailure

    try:
        seen = (Path(build) / FARM).read_text(encoding="utf-8").strip()
    except OSError:
        seen = None
    host = socket.gethostname()
    if seen != token:
        found = f"no {FARM} there" if seen is None else f"the {FARM} there is another render's"
        raise EnvironmentFailure(f"worker {host} does not see the build folder this render writes ({build}: "
                                 f"{found})", hint="mount the project's shared folder at the same path on every "
                                                   "worker")
    why = why_not_shared(mount_of(Path(build)))
    if why is not None:
        raise EnvironmentFailure(f"worker {host} sees {build} on a filesystem its locks cannot share: {why}",
                                 hint="mount it on every worker as the machine that started the render does")
