"""Grok Imagine video on xAI's own API: text, image (start frame) and reference to video.

Protocol (docs.x.ai video generation and reference-to-video; the REST shapes as the AI SDK's xAI
client sends them, matching xai-sdk's GenerateVideoRequest):
- auth: `Authorization: Bearer $XAI_API_KEY`.
- create: `POST /v1/videos/generations` with {model, prompt, duration (1-15 s, at most 10 with
  references), aspect_ratio (1:1 16:9 9:16 4:3 3:4 3:2 2:3), resolution (480p, 720p; 1080p on
  grok-imagine-video-1.5 only, and never with references), generate_audio (default true)}, plus one
  of: `image: {url}` (the start frame) or `reference_images: [{url}, ...]` (at most 7, named in the
  prompt as <IMAGE_1>, <IMAGE_2>..., templates/references/grok-imagine.j2). A url may be an https
  URL or an inline `data:image/...;base64,` URL (the AI SDK's client sends files so); we send data
  URLs. Answer: `{request_id}` (the 2xx code itself is not documented: any 2xx is taken).
- poll: `GET /v1/videos/{request_id}`: status pending (with `progress`), done (`video.url`, public,
  kept 24 h; `video.respect_moderation` false = blocked, no url), expired, failed (`error: {code,
  message}`), each with HTTP 200; an unknown id is 404.
- errors: a flat `{code: "<gRPC status text>", error: "<message>"}` (or OpenAI-style `{error:
  {message}}`); `_http.provider_detail` reads either. xAI documents no cancel and no job list, and
  takes no client key: a lost create cannot be looked up (it stops as unknown-job).
- unconfirmed: the REST field names come from the AI SDK's xAI client (secondary), not from xAI's
  REST reference; `generate_audio` is xai-sdk's field name (its REST spelling is taken to be the same).

Why not xai-sdk: it is a gRPC client, and its channel's service config retries every method, the
create (GenerateVideo) included, up to 5 times on UNAVAILABLE: an UNAVAILABLE after xAI took the
request would make (and bill) a second video. The REST calls go through `_http.Http`, which never
retries.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from stages.backends._direct import DirectBackend, DirectOptions, Limits
from stages.backends._http import AnswerLost
from stages.backends._jobs import Poll
from stages.backends.base import PermanentError, RejectedError, ShotRequest, TransientError, is_refusal

MAX_REFERENCES = 7
MAX_WITH_REFERENCES_S = 10.0
_BAD_REQUEST = {"invalid_argument", "invalid_request", "bad_request", "failed_precondition", "out_of_range"}


class GrokImagineOptions(DirectOptions):
    """`backends.grok_imagine`: a Grok Imagine model on xAI's API (keys from console.x.ai)."""

    LIMITS: ClassVar[Limits] = Limits(
        modes=frozenset({"text", "image", "reference"}), max_references=MAX_REFERENCES,
        durations_s=tuple(float(s) for s in range(1, 16)), aspect_ratios=("9:16", "16:9", "1:1", "4:3", "3:4", "3:2",
                                                                          "2:3"),
        audio=True, resolutions=("480p", "720p", "1080p"))

    model: str = Field("grok-imagine-video", min_length=1, description="grok-imagine-video, grok-imagine-video-1.5")
    base_url: str = Field("https://api.x.ai", description="xAI's API")
    api_key_env: str = Field("XAI_API_KEY", description="the xAI API key")
    resolution: str | None = Field("720p", description="480p or 720p; 1080p on grok-imagine-video-1.5 "
                                                       "(not with references)")

    @model_validator(mode="after")
    def _grok_rules(self) -> GrokImagineOptions:
        if self.resolution == "1080p" and not self.model.startswith("grok-imagine-video-1.5"):
            raise ValueError(f"resolution 1080p: only grok-imagine-video-1.5 makes it, not {self.model}")
        if self.mode == "reference":
            if self.resolution == "1080p":
                raise ValueError("resolution 1080p: reference images take 720p at most")
            long = [d for d in self.durations or () if d > MAX_WITH_REFERENCES_S]
            if long:
                raise ValueError(f"durations {long}: with reference images Grok Imagine makes "
                                 f"{MAX_WITH_REFERENCES_S:g} s at most")
        return self

    def clip_lengths(self) -> tuple[float, ...]:
        lengths = super().clip_lengths()
        if self.mode == "reference":
            return tuple(d for d in lengths if d <= MAX_WITH_REFERENCES_S)
        return lengths


class GrokImagineBackend(DirectBackend):
    """VideoBackend (resumable, billed) on xAI's Grok Imagine video API."""

    name = "grok-imagine"
    section = "grok_imagine"
    Options = GrokImagineOptions
    label = "xAI"
    keys_at = "https://console.x.ai"
    lookup_hint = "your xAI console's usage page"

    # --- the request ------------------------------------------------------------------------------

    def body(self, request: ShotRequest) -> dict:
        o, fitted = self.options, self.fitted(request)
        body = {"model": o.model, "prompt": self.prompt(request, fitted), "duration": int(self.seconds(request)),
                "aspect_ratio": o.aspect_ratio, "generate_audio": o.audio}
        if o.resolution:
            body["resolution"] = o.resolution
        start = self.start_frame(request)
        if start is not None:
            body["image"] = {"url": self.image_data(start)}
        refs = []
        for r in fitted.sent:
            if r.path is not None:
                refs.append({"url": self.image_data(r.path)})
            elif r.asset.startswith(("https://", "http://")):  # a saved image of the character, by its URL
                refs.append({"url": r.asset})
            else:
                raise PermanentError(f"{self.what}: a saved asset for Grok Imagine is an image URL; "
                                     f"{r.figure.name}'s `assets.grok-imagine: {r.asset}` is not one")
        if refs:
            body["reference_images"] = refs
        return {**body, **o.inputs}

    # --- the job protocol -------------------------------------------------------------------------

    def submit(self, request: ShotRequest, client_key: str) -> str:
        answer = self.call("POST", "/v1/videos/generations", "creating a video", body=self.body(request))
        request_id = answer.get("request_id")
        if not request_id or not isinstance(request_id, str):
            raise AnswerLost(f"{self.what} creating a video: the answer names no request_id ({str(answer)[:200]})")
        return request_id

    def poll(self, job_id: str) -> Poll:
        data = self.call("GET", f"/v1/videos/{job_id}", f"polling video {job_id}")
        state = data.get("status")
        video = data.get("video") if isinstance(data.get("video"), dict) else {}
        if state == "pending":
            progress = data.get("progress")
            return Poll("running", progress=progress / 100 if isinstance(progress, (int, float)) else None)
        if state == "expired":
            return Poll("gone", detail=f"{self.what}: request {job_id} expired")
        if state == "failed":
            err = data.get("error") if isinstance(data.get("error"), dict) else {"message": str(data.get("error"))}
            code, why = str(err.get("code") or ""), err.get("message") or "failed"
            text = f"{self.what}: request {job_id} failed ({code or 'no code'}): {why}"
            if is_refusal(code, why):
                return Poll("failed", error=RejectedError(text))
            if code.lower() in _BAD_REQUEST:
                return Poll("failed", error=PermanentError(text))
            return Poll("failed", error=TransientError(text))
        if state not in ("done", None):
            raise TransientError(f"{self.what}: request {job_id} has a status this backend does not know: {state!r}")
        if video.get("respect_moderation") is False:
            return Poll("failed", error=RejectedError(f"{self.what}: request {job_id}'s video was blocked by "
                                                      f"moderation (respect_moderation false)"))
        if not video.get("url"):
            if state is None:  # neither a status nor a video: not an answer we can read
                raise TransientError(f"{self.what}: request {job_id}: an answer without a status ({str(data)[:200]})")
            return Poll("failed", error=PermanentError(f"{self.what}: request {job_id} is done without a video url"))
        return Poll("done", result=video["url"])

    def cancel(self, job_id: str) -> None:
        raise PermanentError(f"{self.what}: xAI's API has no way to cancel video request {job_id}")
