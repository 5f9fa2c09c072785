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
from typing import Literal

from pydantic import Field

from stages.backends.base import PermanentError, RejectedError, ShotRequest, TransientError
from stages.core.model import Model

_ERRORS = {"transient": TransientError, "rejected": RejectedError, "permanent": PermanentError}


class ChaosOptions(Model):
    """`backends.chaos`: for testing a pipeline, fail a seeded fraction of video calls with one error class."""

    wraps: Literal["animatic"] = "animatic"
    fail_rate: float = Field(0.3, ge=0, le=1)
    error: Literal["transient", "rejected", "permanent"] = "transient"
    seed: int = 1
    retry_after_s: float | None = Field(None, ge=0, le=300,
                                        description="a Retry-After hint sent with each simulated error")


class ChaosBackend:
    """VideoBackend: the wrapped backend's pictures and capabilities, with failures on a seeded schedule."""

    name = "chaos"
    section = "chaos"
    Options = ChaosOptions

    def __init__(self, options: ChaosOptions):
        from stages.backends.registry import make_video_backend

        self.inner = make_video_backend(None, options.wraps)
        self.fail_rate = options.fail_rate
        self.error = _ERRORS[options.error]
        self.seed = options.seed
        self.retry_after_s = options.retry_after_s
        self.capabilities = self.inner.capabilities

    def identity(self) -> dict:
        # The same pictures as the wrapped backend: switching chaos on or off re-renders nothing.
        return self.inner.identity()

    def faces(self, request: ShotRequest) -> list:
        return self.inner.faces(request)

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
