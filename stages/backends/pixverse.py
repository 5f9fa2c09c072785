"""PixVerse's platform API (app-api.pixverse.ai, OpenAPI v2): text, image (start frame) and reference
(fusion) to video.

Protocol (docs.platform.pixverse.ai: text-to-video, image-to-video, upload image, fusion/reference to
video, get video generation status, the official "PixVerse-api-llm.txt", common errors):
- base `https://app-api.pixverse.ai/openapi/v2`; every request carries `API-KEY: <key>` (not Bearer) and
  `Ai-trace-id: <uuid>`. The docs: "reusing the same value returns the previous result instead of
  triggering a new generation". The create's trace id is therefore our client key (a UUID made from it),
  and every other request gets a fresh one.
- every answer is `{ErrCode, ErrMsg, Resp}`; ErrCode 0 is success. Whether an error keeps HTTP 200 is not
  documented: both are read (an ErrCode on a 2xx create made no job).
- images are uploaded first: `POST /image/upload`, multipart field `image` -> `Resp.img_id` (int). URL
  uploads are "not supported". An img_id's lifetime is not documented: each is reused for 24 h.
- create: `POST /video/text/generate` `{prompt, model, duration (5|8), quality (360p|540p|720p|1080p; 1080p
  makes no 8 s), aspect_ratio, seed, negative_prompt?}`; `POST /video/img/generate` the same with `img_id`
  and no aspect_ratio (the clip follows the image); `POST /video/fusion/generate` with
  `image_references: [{type: subject, img_id, ref_name}]` (1-3, v4.5 and later), each called in the
  prompt as `@ref_name ` (a space must follow; templates/references/pixverse.j2). -> `Resp.video_id` (int).
  A reference shot with no character to show goes to text generation. `generate_audio_switch` (native
  sound, v5.5+) is sent only when `audio` is asked for; that field is known from third-party docs only.
- poll: `GET /video/result/{video_id}` -> `Resp.status`: 1 done (`Resp.url`), 5 generating, 7 refused by
  moderation, 8 failed; 6 (deleted) is from third-party guides.
- lookup: a create whose answer was lost is sent again, byte for byte, with the same Ai-trace-id: by the
  docs that returns the earlier job, never a new one (and if the first never arrived, it makes the one
  job). How long PixVerse remembers a trace id is not documented, so this is done only within
  `REPLAY_WINDOW_S` of the first send; later the shot stops as `unknown-job` instead of risking a second
  generation.
- errors (numbers from third-party code): 400017 invalid parameter, 500044 concurrency limit; "Invalid
  API-KEY". PixVerse documents no cancel.
PixVerse publishes no Python SDK; its MCP server is a wrapper over the same calls.
"""

from __future__ import annotations

import mimetypes
import re
import time
import uuid
from pathlib import Path
from typing import ClassVar

from pydantic import Field, model_validator

from stages.backends._direct import DirectBackend, DirectOptions, Limits
from stages.backends._http import AnswerLost, NotFound
from stages.backends._jobs import LookupUnsupported, Poll
from stages.backends.base import (
    PermanentError,
    RejectedError,
    ShotRequest,
    TransientError,
    is_refusal,
)

FUSION_MAX = 3  # image_references: 1-3 (the docs; newer models may take 7, unconfirmed)
UPLOAD_TTL_S = 24 * 3600  # an img_id's lifetime is not documented
REPLAY_WINDOW_S = 15 * 60  # re-send a lost create with its trace id only this soon after (retention undocumented)
TRACE_NS = uuid.UUID("6f1d3a52-0b7e-4b55-9f0e-6a7d0c2f4e11")
_BUSY = ("500044",)


class PixverseOptions(DirectOptions):
    """`backends.pixverse`: a model on PixVerse's platform API (keys at platform.pixverse.ai)."""

    LIMITS: ClassVar[Limits] = Limits(
        modes=frozenset({"text", "image", "reference"}), max_references=FUSION_MAX, durations_s=(5.0, 8.0),
        aspect_ratios=("9:16", "16:9", "1:1", "4:3", "3:4"), audio=True,
        resolutions=("360p", "540p", "720p", "1080p"))

    model: str = Field("v5", min_length=1, description="v5, v5.5, v4.5 ... (fusion needs v4.5 or later)")
    base_url: str = Field("https://app-api.pixverse.ai/openapi/v2", description="the platform API's address")
    api_key_env: str = Field("PIXVERSE_API_KEY", description="the platform API key (sent as API-KEY)")
    resolution: str | None = Field("540p", description="quality: 360p, 540p, 720p or 1080p (no 8 s at 1080p)")

    @model_validator(mode="after")
    def _quality(self) -> PixverseOptions:
        if self.resolution is None:
            self.resolution = "540p"
        if self.resolution == "1080p" and 8.0 in (self.durations or ()):
            raise ValueError("durations [8]: PixVerse makes no 8 s clip at 1080p")
        return self

    def clip_lengths(self) -> tuple[float, ...]:
        if self.resolution == "1080p" and not self.durations:
            return (5.0,)
        return super().clip_lengths()


def ref_name(figure_id: str, slot: int) -> str:
    """A reference's ref_name (and `@name` in the prompt): the character's id and its slot."""
    base = re.sub(r"[^a-z0-9]+", "_", figure_id.lower()).strip("_")[:20] or "ref"
    return f"{base}_{slot}"


def trace_id(client_key: str) -> str:
    """The create's Ai-trace-id: a UUID made from the client key (the same for a re-send)."""
    return str(uuid.uuid5(TRACE_NS, client_key))


class PixverseBackend(DirectBackend):
    """VideoBackend (resumable, billed) on PixVerse's platform API."""

    name = "pixverse"
    section = "pixverse"
    Options = PixverseOptions
    label = "PixVerse"
    keys_at = "https://platform.pixverse.ai (API keys)"
    lookup_hint = "your PixVerse platform account's generation history"
    sends_uploads = True

    def auth_headers(self) -> dict[str, str]:
        return {"API-KEY": self.key(), "Ai-trace-id": str(uuid.uuid4())}

    def template_context(self) -> dict:
        return {"ref_name": lambda r: ref_name(r.id, r.slot)}

    # --- the request ------------------------------------------------------------------------------

    def request_for(self, request: ShotRequest) -> tuple[str, dict]:
        """(endpoint, body) of the create; uploads the images it names first (once per file)."""
        o = self.options
        body: dict = {"model": o.model, "duration": int(self.billed_seconds(request)), "quality": o.resolution,
                      "seed": request.seed % 2**31}
        if request.negative_prompt:
            body["negative_prompt"] = request.negative_prompt
        if o.audio:
            body["generate_audio_switch"] = True
        start = self.start_frame(request)
        fitted = self.fitted(request)
        if o.mode == "image" and start is None:
            raise PermanentError(f"{self.what}: shot {request.shot_id} has no keyframe for image-to-video")
        if start is not None:
            path = "/video/img/generate"
            body.update(prompt=self.prompt(request), img_id=self.img_id(start))
        elif fitted.sent:
            path = "/video/fusion/generate"
            body.update(prompt=self.prompt(request, fitted), aspect_ratio=o.aspect_ratio,
                        image_references=[{"type": "subject", "img_id": self.img_id(r.path) if r.asset is None
                                           else _asset_id(r.asset), "ref_name": ref_name(r.figure.id, i + 1)}
                                          for i, r in enumerate(fitted.sent)])
        else:
            path = "/video/text/generate"
            body.update(prompt=self.prompt(request, fitted), aspect_ratio=o.aspect_ratio)
        body.update(o.inputs)
        return path, body

    def img_id(self, path: Path) -> int:
        return int(self.uploaded(path, self._upload, ttl_s=UPLOAD_TTL_S))

    def _upload(self, path: Path) -> str:
        """`POST /image/upload` (multipart `image`): its img_id. Free and safe to repeat: a failure is
        transient or permanent, never a lost paid answer."""
        import httpx2

        try:
            data = path.read_bytes()
        except OSError as exc:
            raise PermanentError(f"the image {path} cannot be read: {exc}") from exc
        ctype = mimetypes.guess_type(path.name)[0] or "image/png"
        doing = f"uploading {path.name}"
        try:
            try:
                resp = self.http().client().post(self.url("/image/upload"), headers=self.auth_headers(),
                                                 files={"image": (path.name, data, ctype)})
            except httpx2.HTTPError as exc:
                raise TransientError(f"{self.what} {doing}: {type(exc).__name__}: {exc}") from exc
            answer = self._ok(self.http().answer(resp, doing), doing)
        except AnswerLost as exc:
            raise TransientError(str(exc), retry_after_s=exc.retry_after_s) from None
        img = (answer.get("Resp") or {}).get("img_id")
        if img is None:
            raise TransientError(f"{self.what} {doing}: the answer names no img_id ({str(answer)[:200]})")
        return str(img)

    def _ok(self, answer: dict, doing: str) -> dict:
        """The answer if its ErrCode is 0, else the error class for what PixVerse said."""
        code = answer.get("ErrCode")
        if code in (0, None) and "Resp" in answer:
            return answer
        if code in (0, None):
            raise AnswerLost(f"{self.what} {doing}: an answer without Resp ({str(answer)[:200]})")
        message = f"{self.what} {doing}: ErrCode {code}: {answer.get('ErrMsg') or 'no message'}"
        if is_refusal(str(code), str(answer.get("ErrMsg"))):
            raise RejectedError(message)
        if str(code) in _BUSY or "concurrent" in str(answer.get("ErrMsg")).lower():
            raise TransientError(message, retry_after_s=30)
        raise PermanentError(message)

    def create(self, path: str, body: dict, client_key: str) -> str:
        answer = self.call("POST", path, "creating a video", body=body,
                           headers={"Ai-trace-id": trace_id(client_key)})
        video = (self._ok(answer, "creating a video").get("Resp") or {}).get("video_id")
        if video is None:
            raise AnswerLost(f"{self.what} creating a video: the answer names no video_id ({str(answer)[:200]})")
        return str(video)

    # --- the job protocol -------------------------------------------------------------------------

    def submit(self, request: ShotRequest, client_key: str) -> str:
        path, body = self.request_for(request)
        return self.create(path, body, client_key)

    def poll(self, job_id: str) -> Poll:
        answer = self.call("GET", f"/video/result/{job_id}", f"polling video {job_id}")
        code, message = answer.get("ErrCode"), str(answer.get("ErrMsg") or "")
        if code not in (0, None):
            if re.search(r"not (be )?found|not exist|no such", message, re.IGNORECASE):
                raise NotFound(f"{self.what}: video {job_id}: ErrCode {code}: {message}")
            raise TransientError(f"{self.what} polling video {job_id}: ErrCode {code}: {message}")
        resp = answer.get("Resp") or {}
        status = resp.get("status")
        if status == 5:
            return Poll("running")
        if status == 1:
            if not resp.get("url"):
                return Poll("failed", error=PermanentError(f"{self.what}: video {job_id} is done without a url"))
            return Poll("done", result=resp["url"])
        if status == 7:
            return Poll("failed", error=RejectedError(f"{self.what}: video {job_id} failed content moderation "
                                                      f"(status 7)"))
        if status == 8:  # PixVerse says only that it failed: counted as its own failure
            return Poll("failed", error=TransientError(f"{self.what}: video {job_id} failed (status 8)"))
        if status == 6:
            return Poll("gone", detail=f"video {job_id} was deleted (status 6)")
        raise TransientError(f"{self.what}: video {job_id} has a status this backend does not know: {status!r}")

    def cancel(self, job_id: str) -> None:
        raise PermanentError(f"{self.what}: PixVerse's API has no way to cancel video {job_id}")

    def lookup(self, client_key: str, request: ShotRequest, sent_at: float) -> str | None:
        """The lost create sent again with its Ai-trace-id: PixVerse answers with the job it made (or
        makes the one job, if the first never arrived). Only soon after the first send (see the module)."""
        if time.time() - sent_at > REPLAY_WINDOW_S:
            raise LookupUnsupported
        path, body = self.request_for(request)
        return self.create(path, body, client_key)


def _asset_id(asset: str) -> int | str:
    """A saved image's img_id (a number in PixVerse's API)."""
    return int(asset) if asset.isdigit() else asset
