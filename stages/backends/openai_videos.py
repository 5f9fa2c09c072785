"""Hosted video through the `/v1/videos` protocol (create, retrieve, download), on the job protocol.

OpenAI retired Sora 2 and this API on 2026-09-24; gateways keep serving the same protocol for
other models. The job driver (`_jobs.py`) pays for each shot once: the create carries our client
key as an `Idempotency-Key` header (OpenAI's SDKs send one; whether a gateway honours it is up to
the gateway), the protocol offers no way to find a job by what was sent, so a create whose answer
was lost stops the shot as `unknown-job`. The provider's clip is conformed to the request.
"""
from __future__ import annotations

import io
import logging
import os
import time
from pathlib import Path

from pydantic import Field

from stages.backends._http import AnswerLost, NotFound
from stages.backends._jobs import HostedVideoBackend, Poll
from stages.backends._openai import LazyClient, map_openai_error, provider_message, retry_after_s
from stages.backends.base import (BackendError, PermanentError, RejectedError, ShotRequest, TransientError,
                                  VideoCapabilities, is_refusal, requested_seconds)
from stages.core.model import Model
from stages.core.trust import redact_url

log = logging.getLogger(__name__)

_RUNNING = ("queued", "in_progress")
_TRANSIENT_CODES = {"server_error", "internal_error", "rate_limit_exceeded", "timeout", "service_unavailable",
                    "overloaded", "capacity_exceeded", "engine_overloaded", "processing_error"}
_REQUEST_TIMEOUT_S = 120  # one create or poll; the job's own limit is options.timeout_s
_DOWNLOAD_TIMEOUT_S = 600


class OpenAIVideosOptions(Model):
    """`backends.openai_videos`: any server speaking the /v1/videos protocol (create, poll, download).
    OpenAI itself retired Sora 2 and this API on 2026-09-24; gateways still serve it for other models."""

    base_url: str | None = Field(None, description="the gateway, e.g. http://host:8000/v1")
    api_key_env: str = "OPENAI_API_KEY"
    model: str = "sora-2"
    size: str = Field("720x1280", pattern=r"^\d+x\d+$", description="what the provider makes; conformed after")
    seconds: list[int] = Field(default_factory=lambda: [4, 8, 12], description="clip lengths the model offers")
    poll_s: float = Field(5, gt=0, le=300)
    timeout_s: float = Field(1800, gt=0, description="give up on one job after this long")


class OpenAIVideosBackend(HostedVideoBackend):
    """VideoBackend (resumable): text-to-video, or image-to-video from the shot's keyframe."""

    name = "openai-videos"
    section = "openai_videos"
    Options = OpenAIVideosOptions
    lookup_hint = "the gateway's job list (GET /v1/videos)"

    def __init__(self, options: OpenAIVideosOptions):
        self.options = options
        w, h = (int(v) for v in options.size.split("x"))
        self.capabilities = VideoCapabilities(
            uses=frozenset({"keyframe"}), ignores=frozenset({"references"}),  # the sheets reach it through the keyframe
            billed=True, resumable=True, concurrency=4, pool="api",  # 4 jobs in flight per process
            modes=frozenset({"text", "image"}), max_references=0,  # one input_reference: the keyframe
            durations_s=tuple(float(s) for s in sorted(set(options.seconds))), aspect_ratios=(_ratio(w, h),))
        import warnings

        # The SDK marks every /v1/videos method deprecated (OpenAI's own shutdown); gateways serve it.
        warnings.filterwarnings("ignore", message="The Sora API is scheduled", category=DeprecationWarning)
        self.client = LazyClient(options.api_key_env, options.base_url, min(options.timeout_s, _REQUEST_TIMEOUT_S),
                                 what="OpenAI videos", setting="backends.openai_videos.base_url")

    def identity(self) -> dict:
        o = self.options
        return {"engine": "openai-videos", "model": o.model, "base_url": redact_url(o.base_url) or "api.openai.com",
                "size": o.size}

    @property
    def what(self) -> str:
        return f"openai-videos ({self.options.model} at {redact_url(self.options.base_url) or 'api.openai.com'})"

    def missing(self, *, keys: bool = True) -> list[tuple[str, str]]:
        o = self.options
        if keys and o.base_url is None and not os.environ.get(o.api_key_env):
            return [(f"openai-videos needs an API key in ${o.api_key_env}",
                     f"export {o.api_key_env}=..., or set backends.openai_videos.base_url to a gateway")]
        return []

    def provider(self) -> str:
        return f"{self.options.model} at {redact_url(self.options.base_url) or 'api.openai.com'}"

    # --- the job protocol -------------------------------------------------------------------------

    def submit(self, request: ShotRequest, client_key: str) -> str:
        o = self.options
        prompt = request.prompt
        args = dict(model=o.model, seconds=str(int(self.billed_seconds(request))), size=o.size)
        if request.keyframe is not None:
            prompt = request.motion_prompt or request.prompt
            args["input_reference"] = (f"{request.shot_id}.png", reference_png(request.keyframe, o.size), "image/png")
        if request.negative_prompt:
            prompt = f"{prompt}\nAvoid: {request.negative_prompt}"
        video = self._call(lambda c: c.videos.create(prompt=prompt, extra_headers={"Idempotency-Key": client_key},
                                                     **args), "creating a job", sending=True)
        if not getattr(video, "id", None):
            raise AnswerLost(f"{self.what} creating a job: the answer names no job id ({str(video)[:120]})")
        return video.id

    def poll(self, job_id: str) -> Poll:
        video = self._call(lambda c: c.videos.retrieve(job_id), f"polling job {job_id}")
        status = video.status
        if status in _RUNNING:
            return Poll("queued" if status == "queued" else "running", progress=video.progress)
        if status == "completed":
            if video.expires_at is not None and video.expires_at <= time.time():
                return Poll("gone", detail="its clip expired before it was downloaded")
            return Poll("done")
        if status == "failed":
            return Poll("failed", error=self._failure(video))
        return Poll("gone", detail=f"status {status}")  # cancelled, expired

    def fetch(self, job_id: str, poll: Poll, out: Path) -> None:
        import httpx2
        import openai

        try:
            with self.client().videos.with_streaming_response.download_content(
                    job_id, variant="video", timeout=_DOWNLOAD_TIMEOUT_S) as resp:
                resp.stream_to_file(out)
        except openai.APIStatusError as exc:
            if exc.status_code in (404, 410):
                raise NotFound(f"{self.what}: downloading job {job_id} answered {exc.status_code}") from exc
            raise map_openai_error(exc, f"{self.what} downloading job {job_id}") from exc
        except (openai.OpenAIError, httpx2.HTTPError, OSError) as exc:
            raise TransientError(f"{self.what}: downloading job {job_id} failed: {exc}") from exc

    def cancel(self, job_id: str) -> None:
        """The protocol has no cancel: deleting the job is what stops it."""
        self._call(lambda c: c.videos.delete(job_id), f"deleting job {job_id}")

    def _failure(self, video) -> BackendError:
        err = video.error
        code = (getattr(err, "code", None) or "").lower()
        message = getattr(err, "message", None) or "no reason given"
        text = f"{self.what}: job {video.id} failed: {message}" + (f" ({code})" if code else "")
        if is_refusal(code, message):
            return RejectedError(text)
        headers = getattr(err, "headers", None) or {}
        if err is None or code in _TRANSIENT_CODES or headers.get("retry-after") or headers.get("retry-after-ms"):
            return TransientError(text, retry_after_s=retry_after_s({k.lower(): v for k, v in headers.items()}))
        return PermanentError(text)

    def _call(self, fn, doing: str, *, sending: bool = False):
        """Run one SDK call; its errors as the job driver's classes (`sending`: a create, where a lost
        answer may have made a job)."""
        import openai

        try:
            return fn(self.client())
        except openai.APIStatusError as exc:
            if exc.status_code in (404, 410) and not sending:
                raise NotFound(f"{self.what} {doing} answered {exc.status_code}: {provider_message(exc)}") from exc
            if exc.status_code >= 500:
                raise AnswerLost(f"{self.what} {doing} answered {exc.status_code}: {provider_message(exc)}",
                                 retry_after_s=retry_after_s(exc.response.headers)) from exc
            raise map_openai_error(exc, f"{self.what} {doing}") from exc
        except openai.APIConnectionError as exc:
            import httpx2

            cause = exc.__cause__
            if isinstance(cause, (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout)):
                raise TransientError(f"{self.what} {doing}: cannot connect ({cause})") from exc
            raise AnswerLost(f"{self.what} {doing}: no answer ({exc.message})") from exc
        except ValueError as exc:  # a 2xx body that is not JSON (a proxy's page)
            raise AnswerLost(f"{self.what} {doing}: the answer is not JSON ({exc})") from exc
        except openai.OpenAIError as exc:
            raise map_openai_error(exc, f"{self.what} {doing}") from exc


def _ratio(w: int, h: int) -> str:
    import math

    g = math.gcd(w, h)
    return f"{w // g}:{h // g}"


def pick_seconds(allowed: list[int], duration_s: float, fps: int = 24) -> int:
    """The shortest clip length that covers `duration_s` (within a frame), else the longest."""
    if not allowed:
        raise PermanentError("backends.openai_videos.seconds is empty: list the clip lengths the model offers")
    return int(requested_seconds(VideoCapabilities(durations_s=tuple(allowed), billed=True), duration_s, fps))


def reference_png(path: Path, size: str) -> bytes:
    """The keyframe scaled and centre-cropped to the job's size (the protocol requires it), as PNG."""
    from PIL import Image, ImageOps

    w, h = (int(v) for v in size.split("x"))
    try:
        with Image.open(path) as im:
            img = ImageOps.fit(im.convert("RGB"), (w, h), Image.LANCZOS, centering=(0.5, 0.5))
    except OSError as exc:
        raise PermanentError(f"the keyframe {path} cannot be read: {exc}") from exc
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
