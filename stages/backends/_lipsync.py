"""What the hosted lip-sync backends share: their options, capability record and the job driver.

A lip-sync job is a paid job like a shot's: the same driver (`_jobs.run_job`) records it before it
is sent, resumes it after a crash, never re-sends a request whose answer was lost, downloads the
result at once and conforms it to the piece it replaces (size, fps, frame count, no sound).
"""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from stages.backends._direct import DirectBackend
from stages.backends.base import LipSyncCapabilities, LipSyncRequest
from stages.core.model import Model


class LipSyncOptions(Model):
    """`backends.<lip-sync section>`: the provider's model, address, key and waits."""

    model: str = Field(..., min_length=1)
    base_url: str = Field(..., min_length=1)
    api_key_env: str = Field(..., min_length=1, description="environment variable holding the API key")
    poll_s: float = Field(5, gt=0, le=300)
    request_timeout_s: float = Field(60, gt=0, le=600, description="wait this long for one answer (a create that "
                                                                   "times out is looked up, never re-sent)")
    timeout_s: float = Field(1800, gt=0, description="give up waiting on one job after this long (it stays "
                                                    "recorded: the next run resumes it)")
    concurrency: int = Field(2, ge=1, le=32, description="jobs at once")


class HostedLipSync(DirectBackend):
    """A provider's lip-sync API on the job protocol: one paid job per piece of a shot."""

    Options: ClassVar[type[LipSyncOptions]]
    limits: ClassVar[LipSyncCapabilities]

    def __init__(self, options: LipSyncOptions):
        self.options = options
        self.capabilities = replace(self.limits, billed=True, resumable=True, pool="api",
                                    concurrency=options.concurrency)
        self._http = None
        self._uploads = None
        import threading

        self._lock = threading.Lock()

    def identity(self) -> dict:
        return {"engine": self.name, "version": self.version, "model": self.options.model}

    def billed_seconds(self, request: LipSyncRequest) -> float:
        """Seconds of video sent: Sync Labs bills the output per frame ([DOC] billing), so the piece's own
        length; a provider that rounds overrides this."""
        return round(request.duration_s, 4)

    def images_sent(self, request) -> int:
        return 0

    def sync(self, request: LipSyncRequest, out_mp4: Path, jobs=None) -> None:
        self.generate(request, out_mp4, jobs)


def media_data_url(path: Path, mime: str) -> str:
    """A file as a `data:` URL (for providers that take inline media)."""
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()
