"""A video backend for testing pipelines: wraps a real backend and fails a seeded fraction of calls.

Whether a call fails depends on (seed, shot id, how many times this shot was asked for before),
so a re-run eventually succeeds, and every run with the same history fails the same calls.
Calls are appended to `calls.jsonl` in the output folder, so tests can count generations.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from pathlib import Path

from stages.backends.base import PermanentError, RejectedError, ShotRequest, TransientError, VideoBackend

_ERRORS = {"transient": TransientError, "rejected": RejectedError, "permanent": PermanentError}


class ChaosBackend:
    name = "chaos"

    def __init__(self, inner: VideoBackend, *, fail_rate: float, error: str, seed: int,
                 retry_after_s: float | None = None):
        self.inner = inner
        self.fail_rate = fail_rate
        self.error = _ERRORS[error]
        self.seed = seed
        self.retry_after_s = retry_after_s
        self.concurrency = getattr(inner, "concurrency", 1)
        self.ignores = getattr(inner, "ignores", frozenset())
        self.uses = getattr(inner, "uses", frozenset())

    def identity(self) -> dict:
        # The same pictures as the wrapped backend: switching chaos on or off re-renders nothing.
        return self.inner.identity()

    def generate(self, request: ShotRequest, out_mp4: Path) -> None:
        log = out_mp4.parent / "calls.jsonl"
        with open(log, "a+", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # several worker processes may share the folder
            f.seek(0)
            prior = sum(1 for line in f if json.loads(line)["shot"] == request.shot_id)
            roll = int(hashlib.sha256(f"{self.seed}|{request.shot_id}|{prior}".encode()).hexdigest()[:8], 16) / 2**32
            fails = roll < self.fail_rate
            f.write(json.dumps({"shot": request.shot_id, "call": prior + 1, "failed": fails, "pid": os.getpid(),
                                "t": time.time()}) + "\n")
        if fails:
            raise self.error(f"chaos: simulated {self.error.__name__} for {request.shot_id} (call {prior + 1})",
                             retry_after_s=self.retry_after_s)
        self.inner.generate(request, out_mp4)
