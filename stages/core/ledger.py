"""The durable per-unit record of a project's renders (SQLite, WAL; a rollback journal on a network
filesystem): what is done, failed, and why.

One row per unit of work (a shot, a spoken line, an episode assembly), keyed by its id. The
artifact on disk stays the truth for "already done?" (`artifacts.is_done`); the ledger tells the
user what happened and counts attempts; its `jobs` table (stages/core/jobs.py) remembers every paid
provider job across crashes.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from stages.core.artifacts import alive, owner, owner_gone
from stages.core.shared_fs import network


class State(StrEnum):
    """Where a unit stands. `stale` (made under other inputs) is never stored: status derives it."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    REJECTED = "rejected"
    INTERRUPTED = "interrupted"
    STALE = "stale"
    PLACEHOLDER = "placeholder"
    UNKNOWN_JOB = "unknown-job"  # a paid request's answer was lost and its job not found: the user decides


STATES = tuple(State)
SHOWN = (State.DONE, State.PENDING, State.STALE, State.FAILED, State.REJECTED, State.INTERRUPTED,
         State.UNKNOWN_JOB, State.PLACEHOLDER)  # the order `status` and the review site count shots in
REUSED = (State.DONE, State.PLACEHOLDER)  # a render keeps these shots; it makes every other one
NEEDS_RERUN = (State.FAILED, State.REJECTED, State.INTERRUPTED, State.UNKNOWN_JOB)  # what `rerun --failed` takes
# (an unknown job is looked up again, never paid for again: only `rerun --shot ID --new-job` does that)

INTERRUPTED = "the rendering process stopped before this finished"


class Kind(StrEnum):
    """What a ledger row records."""

    SHOT = "shot"
    SPEECH = "speech"
    EPISODE = "episode"  # an episode's cut
    LIPSYNC = "lipsync"  # a shot's lips synced to its speech
    VOICE = "voice"  # a character's voice enrolled at a cloning provider (its id in the job journal)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS units (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    episode     INTEGER NOT NULL,
    spec_hash   TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    error_class TEXT,
    message     TEXT,
    job_id      TEXT,  -- unused since the job journal (kept: old ledgers have it)
    artifact    TEXT,
    sha256      TEXT,
    pid         INTEGER,
    started_at  REAL,
    finished_at REAL,
    seconds     REAL,
    backend     TEXT,
    owner       TEXT,  -- the process running it: host-pid-start (artifacts.owner), not a bare pid
    bytes       INTEGER, -- the artifact's size when it was made: `status` sees a truncated file
    mtime_ns    INTEGER  -- and its modification time: unchanged since, it is trusted without a decode
);
CREATE INDEX IF NOT EXISTS units_episode ON units(episode, kind);
"""


_JOBS = """  -- the paid-job journal (stages/core/jobs.py)

CREATE TABLE IF NOT EXISTS jobs (
    client_key   TEXT PRIMARY KEY,
    unit_id      TEXT NOT NULL,
    spec_hash    TEXT NOT NULL,
    backend      TEXT NOT NULL,
    provider     TEXT NOT NULL,
    state        TEXT NOT NULL,
    why          TEXT NOT NULL,
    job_id       TEXT,
    billed_s     REAL NOT NULL DEFAULT 0,
    images       INTEGER NOT NULL DEFAULT 0,
    created_at   REAL NOT NULL,
    answered_at  REAL,
    finished_at  REAL,
    message      TEXT,
    pid          INTEGER,
    reported_at  REAL
);
CREATE INDEX IF NOT EXISTS jobs_unit ON jobs(unit_id, created_at);

CREATE TABLE IF NOT EXISTS uploads (  -- files a provider holds for us (stages/core/jobs.py: Uploads)
    account      TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    ref          TEXT NOT NULL,
    created_at   REAL NOT NULL,
    expires_at   REAL,
    PRIMARY KEY (account, sha256)
);
"""


@dataclass(frozen=True)
class Row:
    id: str
    kind: str
    episode: int
    spec_hash: str
    state: str
    attempts: int
    error_class: str | None
    message: str | None
    job_id: str | None
    artifact: str | None
    sha256: str | None
    pid: int | None
    started_at: float | None
    finished_at: float | None
    seconds: float | None
    backend: str | None = None  # what made it (video backend or speech engine): estimates use its times
    owner: str | None = None  # the process running it (while 'running')
    bytes: int | None = None  # the artifact's size when it was made
    mtime_ns: int | None = None  # and its modification time

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", State(self.state))

    def unchanged(self, path: Path) -> bool:
        """This unit is done and `path` is the very file it made and checked then (same size and
        modification time): reusing it needs no decode (a 4 s 1080x1920 clip's is 0.12 CPU-s)."""
        if self.state != State.DONE or self.bytes is None or self.mtime_ns is None or self.artifact != str(path):
            return False
        try:
            st = os.stat(path)
        except OSError:
            return False
        return st.st_size == self.bytes and st.st_mtime_ns == self.mtime_ns

    @property
    def orphaned(self) -> bool:
        """Left 'running' by a process that has ended (killed, or its machine lost)."""
        if self.state != State.RUNNING:
            return False
        if self.owner:
            return owner_gone(self.owner, since=self.started_at)
        return self.pid is None or not alive(self.pid)  # rows written before owners were recorded


_SNAPSHOTS: dict[str, Path] = {}  # ledger file -> a read-only copy (its folder cannot be written here)
_local = threading.local()  # one connection per thread and ledger file, reused across calls
_ready: set[str] = set()  # ledger files whose schema this process has made sure of
_ready_lock = threading.Lock()


class Ledger:
    """Safe across threads (a connection each) and processes (WAL, busy timeout, autocommit).

    Opening a connection and checking the schema cost more than a write, so both happen once
    per thread and process, not per call.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._key = str(self.path.absolute())
        if self._key not in _ready:
            with _ready_lock:
                if self._key not in _ready:
                    self._open()
                    _ready.add(self._key)

    def _open(self) -> None:
        """First use in this process: the schema made sure of; a ledger SQLite cannot read moved aside
        and started anew; one in a folder this process cannot write read from a snapshot."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._db(prepare=False) as db:
                _prepare(db)
                _check(db)
        except sqlite3.DatabaseError as exc:
            self._forget()
            if _corrupt(exc):
                self._set_aside(exc)
            elif self.path.exists() and not os.access(self.path.parent, os.W_OK):
                _SNAPSHOTS[self._key] = _snapshot(self.path)
            else:
                raise
            with self._db(prepare=False) as db:
                if self._key not in _SNAPSHOTS:
                    _prepare(db)

    def _forget(self) -> None:
        if (db := getattr(_local, "conns", {}).pop(self._key, None)) is not None:
            db.close()

    def _set_aside(self, exc: Exception) -> None:
        """Move the unreadable ledger aside (kept for inspection) and leave a marker: `project_status`
        rebuilds the new one from the artifacts on disk, which are the truth. Under a lock, and checked
        again under it: two processes finding it corrupt move it once."""
        from filelock import FileLock

        from stages.core.artifacts import owner

        with FileLock(str(self.path.with_name(f".{self.path.name}.lock")), timeout=60):
            again = sqlite3.connect(self.path, timeout=30)
            try:
                _check(again)
                return  # another process moved it and started a new one meanwhile
            except sqlite3.DatabaseError as again_exc:
                if not _corrupt(again_exc):
                    raise
            finally:
                again.close()
            aside = self.path.with_name(f"{self.path.stem}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{owner()}"
                                        f"{self.path.suffix}")
            for suffix in ("", "-wal", "-shm"):
                src = Path(f"{self.path}{suffix}")
                if src.exists():
                    os.replace(src, Path(f"{aside}{suffix}"))
            notice = (f"{self.path} could not be read ({exc}): it was moved aside to {aside.name} and a new ledger "
                      "was rebuilt from the files on disk. Paid jobs it recorded are not known any more: if a "
                      "hosted render was running, check the provider's list of jobs before rendering again; "
                      "placeholders you had accepted must be accepted again")
            self.rebuild_marker.write_text(notice + "\n", encoding="utf-8")

    @property
    def rebuild_marker(self) -> Path:
        """Present while a new ledger still has to be rebuilt from the files (it holds the notice)."""
        return self.path.with_name(f"{self.path.name}.rebuild")

    def recovered(self) -> str | None:
        """Why this ledger was started anew, while it has not been rebuilt yet (see `rebuilt`)."""
        try:
            return self.rebuild_marker.read_text(encoding="utf-8").strip()
        except OSError:
            return None

    def rebuilt(self) -> None:
        self.rebuild_marker.unlink(missing_ok=True)

    def _db(self, prepare: bool = True) -> "_Reused":
        conns = getattr(_local, "conns", None)
        if conns is None:
            conns = _local.conns = {}
        db = conns.get(self._key)
        if db is None or not self.path.exists():  # a deleted build/ means a new database
            if db is not None:
                db.close()
                with _ready_lock:
                    _ready.discard(self._key)
                self.path.parent.mkdir(parents=True, exist_ok=True)
            if (snapshot := _SNAPSHOTS.get(self._key)) is not None:  # read-only: a write fails clearly
                db = sqlite3.connect(f"{snapshot.as_uri()}?mode=ro", uri=True, isolation_level=None)
                conns[self._key] = db
                return _Reused(db)
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA busy_timeout=30000")
            # NORMAL is durable with WAL; a rollback journal (a network filesystem) needs FULL
            db.execute(f"PRAGMA synchronous={'FULL' if network(str(self.path.parent)) else 'NORMAL'}")
            conns[self._key] = db
            if prepare and self._key not in _ready:  # (`_open` prepares it itself)
                _prepare(db)
                _ready.add(self._key)
        return _Reused(db)

    def start(self, unit_id: str, *, kind: str, episode: int, spec_hash: str, backend: str | None = None) -> int:
        """Mark a unit running in this process; returns its attempt number."""
        now = time.time()
        with self._db() as db:
            db.execute(
                "INSERT INTO units(id, kind, episode, spec_hash, state, attempts, pid, started_at, backend, owner) "
                "VALUES(?, ?, ?, ?, 'running', 1, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET kind=excluded.kind, episode=excluded.episode, "
                "backend=COALESCE(excluded.backend, units.backend), "
                "attempts=CASE WHEN units.spec_hash=excluded.spec_hash THEN units.attempts + 1 ELSE 1 END, "
                "spec_hash=excluded.spec_hash, state='running', pid=excluded.pid, owner=excluded.owner, "
                "started_at=excluded.started_at, error_class=NULL, message=NULL",
                (unit_id, kind, episode, spec_hash, os.getpid(), now, backend, owner()))
            return db.execute("SELECT attempts FROM units WHERE id=?", (unit_id,)).fetchone()[0]

    def done(self, unit_id: str, *, spec_hash: str, kind: str, episode: int, artifact: Path, sha256: str | None,
             reused: bool = False) -> None:
        """The unit is made (or was found made: `reused`, which is not an attempt)."""
        now = time.time()
        try:
            st = os.stat(artifact)
            size, mtime_ns = st.st_size, st.st_mtime_ns
        except OSError:
            size = mtime_ns = None
        with self._db() as db:
            db.execute(
                "INSERT INTO units(id, kind, episode, spec_hash, state, attempts, artifact, sha256, finished_at, bytes, "
                "mtime_ns) VALUES(?, ?, ?, ?, 'done', 0, ?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET state='done', spec_hash=excluded.spec_hash, "
                "artifact=excluded.artifact, sha256=COALESCE(excluded.sha256, units.sha256), bytes=excluded.bytes, "
                "mtime_ns=excluded.mtime_ns, "
                "finished_at=excluded.finished_at, error_class=NULL, message=NULL, pid=NULL, owner=NULL, "
                "attempts=CASE WHEN ? AND units.state='running' THEN MAX(units.attempts - 1, 0) ELSE units.attempts END, "
                "seconds=CASE WHEN ? THEN units.seconds ELSE excluded.finished_at - units.started_at END",
                (unit_id, kind, episode, spec_hash, str(artifact), sha256, now, size, mtime_ns, int(reused),
                 int(reused)))

    def fail(self, unit_id: str, *, state: str, error_class: str, message: str) -> None:
        if state not in (State.FAILED, State.REJECTED, State.UNKNOWN_JOB):
            raise ValueError(f"not a failure state: {state}")
        with self._db() as db:
            db.execute("UPDATE units SET state=?, error_class=?, message=?, pid=NULL, finished_at=? WHERE id=?",
                       (state, error_class, message[:2000], time.time(), unit_id))

    def mark(self, unit_id: str, *, kind: str, episode: int, spec_hash: str, state: str, message: str) -> None:
        """Record a unit's state without running it (e.g. not attempted, and why)."""
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        with self._db() as db:
            db.execute("INSERT INTO units(id, kind, episode, spec_hash, state, message) VALUES(?, ?, ?, ?, ?, ?) "
                       "ON CONFLICT(id) DO UPDATE SET state=excluded.state, message=excluded.message, pid=NULL",
                       (unit_id, kind, episode, spec_hash, state, message))

    def set_state(self, unit_id: str, state: str, message: str | None = None) -> None:
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        with self._db() as db:
            db.execute("UPDATE units SET state=?, message=COALESCE(?, message) WHERE id=?", (state, message, unit_id))

    def accept_placeholder(self, unit_id: str, *, episode: int) -> None:
        """The user accepts a card in place of this shot (it keeps its last error as the reason)."""
        with self._db() as db:
            db.execute("INSERT INTO units(id, kind, episode, spec_hash, state) VALUES(?, 'shot', ?, '', 'placeholder') "
                       "ON CONFLICT(id) DO UPDATE SET state='placeholder', pid=NULL", (unit_id, episode))

    def reconcile(self) -> int:
        """Rows left 'running' by a process that has ended become 'interrupted' (a render does this
        once, at its start; `rows` shows them so without writing). Returns how many."""
        with self._db() as db:
            rows = [Row(*r) for r in db.execute("SELECT * FROM units WHERE state='running'").fetchall()]
            dead = [(r.id, r.owner, r.started_at) for r in rows if r.orphaned]
            # only if nobody started it again meanwhile (same owner, same start)
            db.executemany(f"UPDATE units SET state='interrupted', pid=NULL, owner=NULL, message='{INTERRUPTED}' "
                           "WHERE id=? AND state='running' AND owner IS ? AND started_at IS ?", dead)
        return len(dead)

    def failures_since(self, episode: int, since: float) -> list[str]:
        """Shots of `episode` that failed, were rejected or lost a paid job at or after `since` (a run's start)."""
        with self._db() as db:
            return [r[0] for r in db.execute(
                "SELECT id FROM units WHERE episode=? AND kind='shot' "
                "AND state IN ('failed', 'rejected', 'unknown-job') "
                "AND finished_at >= ? ORDER BY id", (episode, since)).fetchall()]

    def measured_seconds(self, kind: str, backend: str | None = None, *, last: int = 50) -> list[float]:
        """How long the latest `last` units of this kind (made by `backend`) took to make, newest first."""
        q, args = "SELECT seconds FROM units WHERE kind=? AND state='done' AND seconds > 0", [kind]
        if backend is not None:
            q += " AND backend=?"
            args.append(backend)
        with self._db() as db:
            return [r[0] for r in db.execute(q + " ORDER BY finished_at DESC LIMIT ?", (*args, last)).fetchall()]

    def get(self, unit_id: str) -> Row | None:
        with self._db() as db:
            r = db.execute("SELECT * FROM units WHERE id=?", (unit_id,)).fetchone()
        return Row(*r) if r else None

    def placeholders(self) -> dict[str, str | None]:
        """Shots the user accepted as placeholders -> the reason each card shows."""
        with self._db() as db:
            return dict(db.execute("SELECT id, message FROM units WHERE state='placeholder'").fetchall())

    def rows(self, *, episode: int | None = None, kind: str | None = None) -> list[Row]:
        """The rows, a unit whose process has ended shown 'interrupted' (as `reconcile` will record it)."""
        q, args = "SELECT * FROM units WHERE 1=1", []
        if episode is not None:
            q += " AND episode=?"
            args.append(episode)
        if kind is not None:
            q += " AND kind=?"
            args.append(kind)
        with self._db() as db:
            rows = [Row(*r) for r in db.execute(q + " ORDER BY episode, id", args).fetchall()]
        return [dataclasses.replace(r, state=State.INTERRUPTED, message=INTERRUPTED) if r.orphaned else r
                for r in rows]


class _Reused:
    """`with ledger._db() as db`: autocommit, so nothing to commit or close; the connection stays."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        return self.db

    def __exit__(self, *exc) -> None:
        pass


def _prepare(db: sqlite3.Connection) -> None:
    """Its journal, the table, and columns added since a ledger was first made."""
    _journal(db)
    db.executescript(_SCHEMA + _JOBS)
    columns = {r[1] for r in db.execute("PRAGMA table_info(units)")}
    added = (("backend", "TEXT"), ("owner", "TEXT"), ("bytes", "INTEGER"), ("mtime_ns", "INTEGER"))
    for name, sql in added:  # in the order they were added: `Row` reads them by position
        if name not in columns:
            try:
                db.execute(f"ALTER TABLE units ADD COLUMN {name} {sql}")
            except sqlite3.OperationalError as exc:  # another process added it first
                if "duplicate column" not in str(exc):
                    raise


def _corrupt(exc: Exception) -> bool:
    text = str(exc)
    return "not a database" in text or "malformed" in text or "failed its integrity check" in text


def _check(db: sqlite3.Connection) -> None:
    """Raise if SQLite finds the database damaged (a quick check: pages and indexes, not every row)."""
    verdict = db.execute("PRAGMA quick_check(1)").fetchone()[0]
    if verdict != "ok":
        raise sqlite3.DatabaseError(f"the ledger failed its integrity check: {verdict}")


def _snapshot(path: Path) -> Path:
    """A private copy of a ledger in a folder this process cannot write, its WAL folded in (SQLite
    cannot read a WAL database there, and `immutable` would ignore the WAL: a killed render's last
    rows); opened read-only, so any write fails as one clear message. Removed at exit."""
    import atexit
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="dramaforge-ledger-"))
    atexit.register(shutil.rmtree, folder, True)
    copy = folder / path.name
    shutil.copyfile(path, copy)
    if Path(f"{path}-wal").exists():
        shutil.copyfile(f"{path}-wal", f"{copy}-wal")
    with sqlite3.connect(copy) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return copy


def _journal(db: sqlite3.Connection) -> None:
    """Switch to WAL once per database, or, on a network filesystem (machines sharing a build folder),
    to a rollback journal: WAL needs memory shared by every process using the database, so one host
    (`core.shared_fs`). SQLite answers this pragma `database is locked` at once, without its busy
    handler, while another process opens the same new database: so wait here."""
    import random

    mode = "delete" if network(str(Path(db.execute("PRAGMA database_list").fetchone()[2]).parent)) else "wal"
    deadline = time.monotonic() + 60
    while True:
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != mode:
                db.execute(f"PRAGMA journal_mode={mode}")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.02, 0.1))
