"""Kling's lip sync (its `lip-sync` task) on Kling's own API: the speaker's lips in a piece of video
redrawn to follow our audio. Kling takes the video only by URL, so the pieces are served from the
project's build/lipsync folder at `media_base_url`.

Protocol (Kling's API docs read through mirrored copies, ComfyUI's generated Kling client and the
Comfy Router schema, as gathered in the research notes; nothing was checked against the live API):
- auth: a JWT (HS256) from the access and secret keys, as `Authorization: Bearer <token>`
  (CONFIRMED [DOC] common info; made by `kling.KlingAuth`, the same as the video backend's); base
  `https://api-singapore.klingai.com` (CONFIRMED [DOC]); every answer is `{code, message,
  request_id, data}`, code 0 meaning success (CONFIRMED [DOC]).
- create: `POST /v1/videos/lip-sync` `{input: {video_url, mode: audio2video, audio_type: file,
  audio_file}}` (field names CONFIRMED by ComfyUI's generated KlingLipSyncInputObject and the Comfy
  Router schema; the endpoint is Kling's "legacy" lip sync). `audio_file` is the WAV as base64 without
  a `data:` prefix (NOT CONFIRMED beyond those schemas' wording "base64"). -> `data: {task_id,
  task_status: submitted}` (the shape of every Kling create; the lip-sync example is a reseller's:
  NOT CONFIRMED officially).
- video: `video_url` only (`video_id` takes only videos Kling made); .mp4/.mov up to 100 MB, 2-10 s,
  sides 720-1920 px (the Router schema and ComfyUI's checks, NOT CONFIRMED in Kling's own text). This
  file keeps each piece in its folder under a content-addressed name (`<sha256[:24]>.mp4`), sends
  `media_base_url/<name>` and, before paying, checks that the address answers with the file's size.
- audio: .mp3/.wav/.m4a/.aac up to 5 MB (the schemas; read as 5,000,000 bytes, the stricter
  reading); 2-60 s per third parties (NOT CONFIRMED).
- poll: `GET /v1/videos/lip-sync/{task_id}` (ComfyUI's polling path; listed in the official spec's
  table of contents): `task_status` submitted, processing, succeed (the clip at
  `task_result.videos[0].url`), failed (`task_status_msg`), read by `kling.read_task` (CONFIRMED by
  the Router schema's enum and ComfyUI).
- lookup: none. Whether this endpoint takes an `external_task_id` is NOT CONFIRMED (it is in none of
  its schemas), so no client key is sent and a create whose answer was lost stops as unknown-job.
- cancel: none documented for any Kling task.
- pricing: NOT CONFIRMED (Kling's answers report `final_unit_deduction`).
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from stages.backends._http import _httpx
from stages.backends._jobs import LookupUnsupported, Poll
from stages.backends._lipsync import HostedLipSync, LipSyncOptions
from stages.backends.base import LipSyncCapabilities, LipSyncRequest, PermanentError
from stages.backends.kling import KlingAuth, created_task, read_task
from stages.core.trust import redact_url

MAX_AUDIO_BYTES = 5_000_000  # "max 5MB"
TASKS = "/v1/videos/lip-sync"


class KlingLipSyncOptions(LipSyncOptions):
    """`backends.kling_lipsync`: Kling's lip-sync task on Kling's own API (keys from
    app.klingai.com/global/dev); the pieces must be served at `media_base_url`."""

    model: Literal["lip-sync"] = Field("lip-sync", description="the task (Kling's lip sync takes no model name)")
    base_url: str = Field("https://api-singapore.klingai.com", min_length=1,
                          description="api-singapore.klingai.com; in China api-beijing.klingai.com")
    api_key_env: str = Field("KLING_ACCESS_KEY", min_length=1, description="the access key (the token's issuer)")
    secret_key_env: str = Field("KLING_SECRET_KEY", min_length=1, description="the secret key that signs the token")
    media_base_url: str = Field(..., pattern=r"^https?://\S+$",
                                description="the public address at which you serve this project's build/lipsync "
                                            "folder: Kling downloads each piece from <media_base_url>/<file>")


class KlingLipSyncBackend(KlingAuth, HostedLipSync):
    """LipSyncBackend (resumable, billed) on Kling's lip-sync tasks."""

    name = "kling-lipsync"
    section = "kling_lipsync"
    Options = KlingLipSyncOptions
    limits: ClassVar[LipSyncCapabilities] = LipSyncCapabilities(min_s=2.0, max_s=10.0, min_side_px=720,
                                                                max_side_px=1920)
    label = "Kling"
    keys_at = "https://app.klingai.com/global/dev/api-key"
    lookup_hint = "your Kling API console's task list"

    def billed_seconds(self, request: LipSyncRequest) -> float:
        """Kling's own price per lip-sync second is NOT CONFIRMED; resellers bill started seconds (fal:
        per input second, rounded up to 5 s): counted here as whole seconds, started ones up."""
        import math

        return float(max(1, math.ceil(request.duration_s - 1e-6)))

    # --- the job protocol -------------------------------------------------------------------------

    def submit(self, request: LipSyncRequest, client_key: str) -> str:
        size = request.audio.stat().st_size
        if size > MAX_AUDIO_BYTES:
            raise PermanentError(f"{self.what}: the speech for shot {request.shot_id} is {size / 1e6:.1f} MB; Kling "
                                 f"takes at most {MAX_AUDIO_BYTES / 1e6:g} MB of audio (a shorter piece: a lower "
                                 f"lip-sync max length)")
        body = {"input": {"video_url": self.served(request.video), "mode": "audio2video", "audio_type": "file",
                          "audio_file": base64.b64encode(request.audio.read_bytes()).decode()}}
        return created_task(self.what, self.call("POST", TASKS, "creating a lip-sync task", body=body))

    def poll(self, job_id: str) -> Poll:
        data = self.call("GET", f"{TASKS}/{job_id}", f"polling task {job_id}").get("data") or {}
        return read_task(self.what, job_id, data)

    def cancel(self, job_id: str) -> None:
        raise PermanentError(f"{self.what}: Kling's API has no way to cancel task {job_id}")

    def lookup(self, client_key: str, request: LipSyncRequest, sent_at: float) -> str | None:
        """None possible: the lip-sync create carries no client key Kling is known to keep."""
        raise LookupUnsupported

    # --- the piece Kling downloads ----------------------------------------------------------------

    def served(self, video: Path) -> str:
        """The piece's public address: kept beside it under its content's name (it stays while Kling
        may still fetch it), and checked to answer there with its size before anything is paid."""
        from stages.core.artifacts import file_sha256

        name = f"{file_sha256(video)[:24]}.mp4"
        kept, size = video.parent / name, video.stat().st_size
        if not (kept.exists() and kept.stat().st_size == size):
            _keep(video, kept)
        url = f"{self.options.media_base_url.rstrip('/')}/{name}"
        problem = self._answers(url, size)
        if problem:
            raise PermanentError(
                f"{self.what}: Kling downloads each piece from media_base_url, but {redact_url(url)} {problem}. Serve "
                f"the folder {kept.parent} at {redact_url(self.options.media_base_url)} (a public bucket kept in step with it, or a web "
                f"server or tunnel in front of it), or correct backends.{self.section}.media_base_url; nothing was "
                f"sent to Kling")
        return url

    def _answers(self, url: str, size: int) -> str:
        """What is wrong with `url` as the address of a file of `size` bytes ('' when nothing is)."""
        httpx, client = _httpx(), self.http().client()  # no Kling token goes to the media host
        try:
            resp = client.head(url)
            length = resp.headers.get("content-length") if resp.status_code == 200 else None
            if length is None:  # a server that answers no HEAD (or no length to one): read it
                with client.stream("GET", url) as resp:
                    if resp.status_code != 200:
                        return f"answered {resp.status_code}"
                    length = resp.headers.get("content-length")
                    if length is None:
                        length = sum(len(chunk) for chunk in resp.iter_bytes(1 << 20))
        except httpx.HTTPError as exc:
            return f"cannot be fetched ({type(exc).__name__}: {exc})"
        if int(length) != size:
            return f"answered with {length} bytes where the piece has {size}"
        return ""


def _keep(video: Path, kept: Path) -> None:
    """Copy `video` to `kept` through a temp name the sweep knows (never a half-written file)."""
    from stages.core.artifacts import partial_file

    fd, tmp = partial_file(kept.parent, kept.stem, kept.suffix, tag="serve")
    os.close(fd)
    try:
        shutil.copyfile(video, tmp)
        os.replace(tmp, kept)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
