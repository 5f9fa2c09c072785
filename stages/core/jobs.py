"""The paid-job journal: one row per job a hosted provider was (or may have been) asked to make.

A row is committed *before* the paid request goes out (state `intent`, with our client key), so
no answer that is lost, no crash and no retry can make a second job unseen: a shot whose last row
is still open is resumed or looked up, never submitted again. Rows live in the ledger's database
(table `jobs`) and are what the run report bills, retries and re-creations included.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum

from stages.core.ledger import Ledger  # its database holds the `jobs` table (schema there)


class JobState(StrEnum):
    INTENT = "intent"  # committed before the request; the provider's answer not (yet) seen
    SUBMITTED = "submitted"  # the provider gave its job id: poll it, never submit again
    DONE = "done"  # its clip was downloaded, checked and made the shot's file
    FAILED = "failed"  # the provider says the job failed (its reason in `message`)
    GONE = "gone"  # the provider cancelled, expired or no longer knows the job
    UNKNOWN = "unknown"  # a request whose answer was lost and that no lookup found: maybe billed
    REFUSED = "refused"  # the provider answered the request with an error: no job was made
    ABANDONED = "abandoned"  # the user chose to pay for a new job instead (`rerun --new-job`)


OPEN = (JobState.INTENT, JobState.SUBMITTED, JobState.UNKNOWN)  # a new job for the shot would be a second bill
CREATED = (JobState.SUBMITTED, JobState.DONE, JobState.FAILED, JobState.GONE)  # the provider holds (held) it

@dataclass(frozen=True)
class Job:
    client_key: str
    unit_id: str
    spec_hash: str
    backend: str
    provider: str
    state: str
    why: str  # first, recreate (the project allows it), new-job (the user asked), new-run
    job_id: str | None
    billed_s: float  # seconds of video the request asks for, after the provider's rounding
    images: int  # reference images and keyframes the request sends
    created_at: float
    answered_at: float | None
    finished_at: float | None
    message: str | None
    pid: int | None
    reported_at: float | None = None  # when a run report billed it

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", JobState(self.state))

    @property
    def created(self) -> bool:
        """The provider made (or may have made) it: it is billed."""
        return self.state in CREATED or self.state == JobState.UNKNOWN or (
            self.state == JobState.ABANDONED and self.job_id is not None)


class Journal:
    """The `jobs` table of one ledger."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def _db(self):
        return self.ledger._db()

    def intend(self, unit_id: str, *, spec_hash: str, backend: str, provider: str, why: str, billed_s: float,
               images: int) -> Job:
        """Commit a new job's row before its request is sent; returns it (its client key is new)."""
        key = f"df-{secrets.token_hex(10)}"
        with self._db() as db:
            db.execute("INSERT INTO jobs(client_key, unit_id, spec_hash, backend, provider, state, why, billed_s, "
                       "images, created_at, pid) VALUES(?, ?, ?, ?, ?, 'intent', ?, ?, ?, ?, ?)",
                       (key, unit_id, spec_hash, backend, provider, why, billed_s, images, time.time(), os.getpid()))
        return self.get(key)

    def update(self, key: str, state: JobState, *, job_id: str | None = None, message: str | None = None) -> Job:
        now = time.time()
        with self._db() as db:
            db.execute("UPDATE jobs SET state=?, job_id=COALESCE(?, job_id), message=COALESCE(?, message), "
                       "answered_at=CASE WHEN ? IS NOT NULL AND answered_at IS NULL THEN ? ELSE answered_at END, "
                       "finished_at=CASE WHEN ? IN ('done', 'failed', 'gone', 'refused', 'abandoned') THEN ? "
                       "ELSE finished_at END WHERE client_key=?",
                       (state, job_id, message and message[:2000], job_id, now, state, now, key))
        return self.get(key)

    def get(self, key: str) -> Job:
        with self._db() as db:
            return Job(*db.execute("SELECT * FROM jobs WHERE client_key=?", (key,)).fetchone())

    def of(self, unit_id: str, spec_hash: str | None = None) -> list[Job]:
        """The unit's jobs (for one spec), oldest first."""
        q, args = "SELECT * FROM jobs WHERE unit_id=?", [unit_id]
        if spec_hash is not None:
            q += " AND spec_hash=?"
            args.append(spec_hash)
        with self._db() as db:
            return [Job(*r) for r in db.execute(q + " ORDER BY created_at, rowid", args).fetchall()]

    def unreported(self, backend: str) -> list[Job]:
        """Jobs no run report has billed yet (this run's, and those of a render killed before its
        report), marked as reported now: each job is billed in exactly one report."""
        now = time.time()
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = [Job(*r) for r in db.execute("SELECT * FROM jobs WHERE backend=? AND reported_at IS NULL "
                                                    "ORDER BY created_at, rowid", (backend,)).fetchall()]
                db.execute("UPDATE jobs SET reported_at=? WHERE backend=? AND reported_at IS NULL", (now, backend))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return rows

    def claimed(self, job_id: str) -> bool:
        """Whether another row already holds this provider job id (a lookup must not take it twice)."""
        with self._db() as db:
            return db.execute("SELECT 1 FROM jobs WHERE job_id=?", (job_id,)).fetchone() is not None

    def abandon(self, unit_id: str, message: str) -> list[Job]:
        """`rerun --new-job`: the unit's open jobs are given up on (kept, and billed if made); a shot's
        lip sync (`<shot>-lips`) gives up on the open jobs of each of its pieces; a voice
        (`voice-<character>-<engine>`) gives up its enrolled voice too (one the provider lost)."""
        with self._db() as db:
            ids = [unit_id] + [r[0] for r in db.execute(
                "SELECT DISTINCT unit_id FROM jobs WHERE unit_id LIKE ? ESCAPE '\\'",
                (unit_id.replace("_", "\\_").replace("%", "\\%") + "-f%",)).fetchall()] \
                if unit_id.endswith("-lips") else [unit_id]
        given_up = OPEN + ((JobState.DONE,) if unit_id.startswith("voice-") else ())
        open_jobs = [j for i in ids for j in self.of(i) if j.state in given_up]
        for j in open_jobs:
            self.update(j.client_key, JobState.ABANDONED, message=message)
        return open_jobs


class Uploads:
    """The `uploads` table: a file a provider was given once (an asset id, a storage URL), by account
    and content, so every later shot refers to it instead of uploading it again."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def get(self, account: str, sha256: str, *, margin_s: float = 3600) -> str | None:
        """The provider's reference for this file, unless it expires within `margin_s`."""
        with self.ledger._db() as db:
            row = db.execute("SELECT ref, expires_at FROM uploads WHERE account=? AND sha256=?",
                             (account, sha256)).fetchone()
        if row is None or (row[1] is not None and row[1] < time.time() + margin_s):
            return None
        return row[0]

    def put(self, account: str, sha256: str, ref: str, *, ttl_s: float | None = None) -> None:
        now = time.time()
        with self.ledger._db() as db:
            db.execute("INSERT OR REPLACE INTO uploads(account, sha256, ref, created_at, expires_at) "
                       "VALUES(?, ?, ?, ?, ?)", (account, sha256, ref, now, now + ttl_s if ttl_s else None))

    def count(self, account: str) -> int:
        with self.ledger._db() as db:
            return db.execute("SELECT COUNT(*) FROM uploads WHERE account=?", (account,)).fetchone()[0]
