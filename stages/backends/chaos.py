"""A video backend for testing pipelines: wraps a real backend and fails a seeded fraction of calls.

Whether a call fails depends on (seed, shot id, how many times this shot was asked for before),
so a re-run eventually succeeds, and every run with the same history fails the same calls.
Calls are appended to `calls.jsonl` in the output folder, so tests can count generations, and each
made shot's start and end to `spans.jsonl`, so they can see which ran at once.
"""

from __future__ import annotations

import dataclasses
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
    pool: Literal["cpu", "gpu", "api"] | None = Field(
        None, description="run as this kind of backend (gpu: one shot at a time on `device`), to test a "
        "render farm's routing and limits without one; default: the wrapped backend's")
    device: str = Field("cuda:0", description="the GPU it stands for, with pool: gpu")


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
        self.options = options
        self.capabilities = self.inner.capabilities if options.pool is None else dataclasses.replace(
            self.inner.capabilities, pool=options.pool,
            concurrency=1 if options.pool == "gpu" else self.inner.capabilities.concurrency)

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
        start = time.time()
        self.inner.generate(request, out_mp4)
        with open(out_mp4.parent / "spans.jsonl", "a", encoding="utf-8") as f:  # when each made shot ran
            fcntl.flock(f, fcntl.LOCK_EX)
            f.write(json.dumps({"shot": request.shot_id, "pid": os.getpid(), "start": start, "end": time.time(),
                                "pool": self.capabilities.pool, "device": self.options.device}) + "\n")
