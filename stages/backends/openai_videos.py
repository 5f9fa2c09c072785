"""Hosted video through the `/v1/videos` protocol: create a job, poll it, download the mp4.

OpenAI retired Sora 2 and this API on 2026-09-24; gateways keep serving the same protocol for
other models. A job costs money, so its id is recorded in the JobStore (the ledger) the moment
`create` returns, before the first poll: a render that is killed resumes the same job instead of
paying for a new one. The provider's clip is never trusted to match the request: it is conformed
with ffmpeg to the request's exact size (scaled and centre-cropped), fps and duration.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import time
from pathlib import Path

from pydantic import Field

from stages.backends._openai import LazyClient, map_openai_error, provider_message, retry_after_s
from stages.backends.base import (BackendError, JobStore, PermanentError, RejectedError, ShotRequest,
                                  TransientError, VideoCapabilities, is_refusal)
from stages.core.model import Model

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


class _Expired(Exception):
    """The job's assets are gone (expired, or the provider no longer knows the id)."""


class _MemoryJobs:
    """The JobStore used when the caller passes none: resumes nothing across processes."""

    def __init__(self):
        self.job_id: str | None = None

    def get(self) -> str | None:
        return self.job_id

    def put(self, job_id: str | None) -> None:
        self.job_id = job_id


class OpenAIVideosBackend:
    """VideoBackend (resumable): text-to-video, or image-to-video from the shot's keyframe."""

    name = "openai-videos"
    section = "openai_videos"
    Options = OpenAIVideosOptions

    def __init__(self, options: OpenAIVideosOptions):
        self.options = options
        w, h = (int(v) for v in options.size.split("x"))
        self.capabilities = VideoCapabilities(
            uses=frozenset({"keyframe"}), ignores=frozenset({"references"}),  # the sheets reach it through the keyframe
            billed=True, resumable=True, concurrency=4, pool="api",  # 4 jobs in flight per process
            modes=frozenset({"text", "image"}), max_references=1,  # one input_reference: the keyframe
            durations_s=tuple(float(s) for s in sorted(set(options.seconds))), aspect_ratios=(_ratio(w, h),))
        import warnings

        # The SDK marks every /v1/videos method deprecated (OpenAI's own shutdown); gateways serve it.
        warnings.filterwarnings("ignore", message="The Sora API is scheduled", category=DeprecationWarning)
        self.client = LazyClient(options.api_key_env, options.base_url, min(options.timeout_s, _REQUEST_TIMEOUT_S),
                                 what="OpenAI videos", setting="backends.openai_videos.base_url")

    def identity(self) -> dict:
        o = self.options
        return {"engine": "openai-videos", "model": o.model, "base_url": o.base_url or "api.openai.com",
                "size": o.size}

    @property
    def what(self) -> str:
        return f"openai-videos ({self.options.model} at {self.options.base_url or 'api.openai.com'})"

    def generate(self, request: ShotRequest, out_mp4: Path, jobs: JobStore | None = None) -> None:
        """Resume the stored job, or create one; wait for it; download and conform it to the request."""
        jobs = jobs if jobs is not None else _MemoryJobs()
        deadline = time.monotonic() + self.options.timeout_s
        expired_once = False
        while True:
            video = self._resume(jobs)
            if video is None:
                video = self._create(request)
                jobs.put(video.id)  # before the first poll: a killed render resumes this job
            try:
                video = self._wait(video, deadline, jobs)
                self._download_and_conform(video, request, out_mp4)
            except _Expired as exc:
                jobs.put(None)
                if expired_once:
                    raise TransientError(f"{self.what}: job {video.id} expired again ({exc}); "
                                         f"a retry creates a new one") from None
                log.warning("%s: job %s expired (%s); creating a new one", self.what, video.id, exc)
                expired_once = True
                continue
            jobs.put(None)  # done: the artifact is the record now, and a changed request never reuses it
            return

    # --- the job ----------------------------------------------------------------------------------

    def _resume(self, jobs: JobStore):
        """The stored job if it can still deliver; clears the store (returns None) if not."""
        job_id = jobs.get()
        if not job_id:
            return None
        try:
            video = self._call(lambda c: c.videos.retrieve(job_id), f"checking job {job_id}")
        except _Expired:
            video = None
        if video is None or video.status == "failed" or _is_expired(video) or video.status == "cancelled":
            why = "unknown to the provider" if video is None else video.status
            log.warning("%s: stored job %s is %s; creating a new one", self.what, job_id, why)
            jobs.put(None)
            return None
        log.info("%s: resuming job %s (%s)", self.what, job_id, video.status)
        return video

    def _create(self, request: ShotRequest):
        o = self.options
        seconds = pick_seconds(o.seconds, request.duration_s, request.fps)
        prompt = request.prompt
        args = dict(model=o.model, seconds=str(seconds), size=o.size)
        if request.keyframe is not None:
            prompt = request.motion_prompt or request.prompt
            args["input_reference"] = (f"{request.shot_id}.png", reference_png(request.keyframe, o.size), "image/png")
        if request.negative_prompt:
            prompt = f"{prompt}\nAvoid: {request.negative_prompt}"
        return self._call(lambda c: c.videos.create(prompt=prompt, **args), "creating a job", expire=False)

    def _wait(self, video, deadline: float, jobs: JobStore):
        """Poll until the job leaves queued/in_progress; the completed video, or an error."""
        o = self.options
        while video.status not in ("completed", "failed", "expired", "cancelled"):
            left = deadline - time.monotonic()
            if left <= 0:  # the job id stays stored: the next run picks the same job up
                raise TransientError(f"{self.what}: job {video.id} still running after {o.timeout_s:g} s "
                                     f"({video.progress or 0}% done); resume with rerun",
                                     retry_after_s=o.poll_s)
            time.sleep(min(o.poll_s, left))
            video = self._call(lambda c: c.videos.retrieve(video.id), f"polling job {video.id}")
        if video.status == "failed":
            jobs.put(None)  # a retry must create a new job, not re-read this failure
            raise self._failure(video)
        if video.status == "cancelled":
            jobs.put(None)
            raise TransientError(f"{self.what}: job {video.id} was cancelled; a retry creates a new one")
        if _is_expired(video):
            raise _Expired(f"status {video.status}")
        return video

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

    def _download_and_conform(self, video, request: ShotRequest, out_mp4: Path) -> None:
        """Download the clip beside `out_mp4`, then conform it; failures keep the job for a re-download."""
        import httpx2
        import openai

        from stages.core.errors import RenderError

        fd, name = tempfile.mkstemp(prefix=f".{out_mp4.stem}.", suffix=".download.mp4", dir=out_mp4.parent)
        os.close(fd)
        src = Path(name)
        try:
            try:
                with self.client().videos.with_streaming_response.download_content(
                        video.id, variant="video", timeout=_DOWNLOAD_TIMEOUT_S) as resp:
                    resp.stream_to_file(src)
            except openai.APIStatusError as exc:
                if exc.status_code in (404, 410):
                    raise _Expired(f"download answered {exc.status_code}") from exc
                raise map_openai_error(exc, f"{self.what} downloading job {video.id}") from exc
            except (openai.OpenAIError, httpx2.HTTPError, OSError) as exc:
                raise TransientError(f"{self.what}: downloading job {video.id} failed: {exc}") from exc
            if src.stat().st_size == 0:
                raise TransientError(f"{self.what}: job {video.id} downloaded an empty file")
            try:
                conform(src, out_mp4, request)
            except RenderError as exc:
                raise TransientError(f"{self.what}: the clip of job {video.id} cannot be decoded "
                                     f"({src.stat().st_size} bytes): {exc.message}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                src.unlink()

    def _call(self, fn, doing: str, *, expire: bool = True):
        """Run one SDK call; map its errors (a 404 on a job is `_Expired` when `expire`)."""
        import openai

        try:
            return fn(self.client())
        except openai.APIStatusError as exc:
            if expire and exc.status_code in (404, 410):
                raise _Expired(f"{doing} answered {exc.status_code}: {provider_message(exc)}") from exc
            raise map_openai_error(exc, f"{self.what} {doing}") from exc
        except openai.OpenAIError as exc:
            raise map_openai_error(exc, f"{self.what} {doing}") from exc


def _ratio(w: int, h: int) -> str:
    import math

    g = math.gcd(w, h)
    return f"{w // g}:{h // g}"


def _is_expired(video) -> bool:
    if video.status == "expired":
        return True
    return video.status == "completed" and video.expires_at is not None and video.expires_at <= time.time()


def pick_seconds(allowed: list[int], duration_s: float, fps: int = 24) -> int:
    """The shortest clip length that covers `duration_s` (within a frame), else the longest."""
    choices = sorted(set(allowed))
    if not choices:
        raise PermanentError("backends.openai_videos.seconds is empty: list the clip lengths the model offers")
    return next((s for s in choices if s + 1.0 / fps >= duration_s), choices[-1])


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


def conform(src: Path, out_mp4: Path, request: ShotRequest) -> None:
    """Re-encode `src` to exactly the request: size (scale to cover, centre crop), fps, frame count
    (trimmed, or the last frame held), H.264 yuv420p, no audio."""
    from stages.core.media import run_ffmpeg

    w, h, fps = request.width, request.height, request.fps
    frames = max(1, round(request.duration_s * fps))
    vf = (f"scale={w}:{h}:force_original_aspect_ratio=increase:flags=lanczos,crop={w}:{h},setsar=1,"
          f"fps={fps},tpad=stop_mode=clone:stop_duration={frames / fps + 1:.3f}")
    run_ffmpeg(["-i", str(src), "-map", "0:v:0", "-vf", vf, "-frames:v", str(frames), "-r", str(fps),
                "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
                "-movflags", "+faststart", "-an", "-f", "mp4", str(out_mp4)],
               what="conforming the downloaded clip", timeout_s=max(120.0, 30 * request.duration_s))
