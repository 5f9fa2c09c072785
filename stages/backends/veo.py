"""Veo 3.1 on the Gemini API (Google AI Studio keys), through Google's own client, google-genai.

Protocol (ai.google.dev/gemini-api/docs/video; google-genai's models.py, operations.py, files.py):
- auth: the key in the `x-goog-api-key` header on every call, the download included.
- create: `POST {base}/v1beta/models/{model}:predictLongRunning` with `instances[0]` = {prompt, image
  (the start frame), referenceImages (at most 3 `{image, referenceType: asset}`)} and `parameters` =
  {sampleCount 1, durationSeconds 4/6/8, aspectRatio 16:9 or 9:16, resolution 720p/1080p/4k,
  negativePrompt}; images go inline as `{bytesBase64Encoded, mimeType}`. It answers an operation:
  `{name: models/{model}/operations/{id}}`. Reference images, 1080p and 4k take 8 s clips only; a start
  frame and reference images do not go together. The sound is always on for Veo 3.1 on the Gemini
  API (there is no generateAudio there, and no seed through the client).
- poll: `GET {base}/v1beta/{operation name}`: `done` absent or false while it works; then `error`
  ({code, message}: gRPC codes, 1 cancelled, 3 invalid argument), or `response.generateVideoResponse`
  with `generatedSamples[0].video.uri`, or, when the safety filter blocked it (not billed),
  `raiMediaFilteredCount` and `raiMediaFilteredReasons` and no sample.
- download: `GET {base}/v1beta/files/{id}:download?alt=media` with the key (the client takes the id
  out of the uri and asks the base URL for it); clips are kept 2 days.
- errors: `{error: {code, message, status}}` with the HTTP status; the client raises ClientError (4xx)
  or ServerError (5xx) with `.code`.
- no job lookup: a lost predictLongRunning answer cannot be found. The Gemini API documents listing
  and cancelling operations only for tuned models (OAuth scopes, not an API key), and an operation
  carries nothing of what we sent; so there is no lookup (a lost answer stops as unknown-job) and no
  cancel.

The client: google-genai (the `veo` extra), because the issue asks for the provider's own client. Its
2.x line is the last that speaks Veo on the Gemini API: from 3.0 `generate_videos` works only on Vertex
("only supported in Gemini Enterprise Agent Platform mode"). It never retries unless asked
(`HttpOptions.retry_options` None = tenacity `stop_after_attempt(1)`); we still pass
`HttpRetryOptions(attempts=1)` so a create is sent exactly once whatever a later default is, and map
its failures onto the money rules of `_http.Http`: a refused connection made no job; a timeout after
sending, a 5xx or a garbled answer on the create may have made one (`AnswerLost`). It is imported
inside the methods only (a heavy import).
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import ClassVar

from pydantic import Field, model_validator

from stages.backends._direct import DirectBackend, DirectOptions, Limits
from stages.backends._http import AnswerLost, NotFound, body_summary
from stages.backends._jobs import Poll
from stages.backends._openai import retry_after_s
from stages.backends.base import (BackendError, PermanentError, RejectedError, ShotRequest, TransientError,
                                  is_refusal, requested_seconds)

MAX_REFERENCES = 3
EIGHT_ONLY = ("1080p", "4k")  # resolutions made in 8 s clips only
_CANCELLED, _INVALID = 1, (3, 9, 11)  # gRPC codes: CANCELLED; INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE


class VeoOptions(DirectOptions):
    """`backends.veo`: Veo on the Gemini API (keys from aistudio.google.com/apikey)."""

    LIMITS: ClassVar[Limits] = Limits(
        modes=frozenset({"text", "image", "reference"}), max_references=MAX_REFERENCES, durations_s=(4.0, 6.0, 8.0),
        aspect_ratios=("9:16", "16:9"), audio=True, resolutions=("720p", "1080p", "4k"))

    model: str = Field("veo-3.1-generate-preview", min_length=1,
                       description="veo-3.1-generate-preview, veo-3.1-fast-generate-preview")
    base_url: str = Field("https://generativelanguage.googleapis.com", description="the Gemini API's address")
    api_key_env: str = Field("GEMINI_API_KEY", description="the Gemini API key (Google AI Studio)")
    api_version: str = Field("v1beta", min_length=1, description="the API version in every path")
    resolution: str | None = Field("720p", description="720p; 1080p or 4k (8 s clips only)")
    audio: bool = Field(True, description="Veo 3.1 on the Gemini API always makes sound (billed as such)")
    inputs: dict = Field(default_factory=dict, description="further JSON merged into the create request as "
                                                           "written, e.g. {parameters: {personGeneration: allow_adult}}")

    @model_validator(mode="after")
    def _veo_rules(self) -> VeoOptions:
        if not self.audio:
            raise ValueError("audio: Veo 3.1 on the Gemini API always makes sound (it takes no generateAudio); "
                             "leave audio true")
        if self.resolution in EIGHT_ONLY and any(d != 8 for d in self.durations or ()):
            raise ValueError(f"durations: Veo makes {self.resolution} in 8 s clips only")
        if self.mode == "reference" and self.durations and 8 not in self.durations:
            raise ValueError("durations: Veo's reference images take 8 s clips only; list 8")
        return self

    def clip_lengths(self) -> tuple[float, ...]:
        if self.resolution in EIGHT_ONLY:
            return (8.0,)
        return super().clip_lengths()


class VeoBackend(DirectBackend):
    """VideoBackend (resumable, billed) on the Gemini API's Veo, through google-genai."""

    name = "veo"
    section = "veo"
    Options = VeoOptions
    label = "the Gemini API"
    keys_at = "https://aistudio.google.com/apikey"
    lookup_hint = "your Google AI Studio usage page"

    def __init__(self, options: VeoOptions):
        super().__init__(options)
        self._client = None

    # --- the client -----------------------------------------------------------------------------

    def client(self):
        """google-genai's client on our base URL and key: one attempt per call, our timeout."""
        if self._client is None:
            for problem, fix in self.missing():
                raise PermanentError(f"{problem}: {fix}")
            from google import genai
            from google.genai import types

            o = self.options
            self._client = genai.Client(
                api_key=self.key(), vertexai=False,
                http_options=types.HttpOptions(base_url=o.base_url, api_version=o.api_version,
                                               timeout=max(1, math.ceil(o.request_timeout_s * 1000)),
                                               retry_options=types.HttpRetryOptions(attempts=1)))
        return self._client

    def sdk(self, doing: str, call, *, create: bool = False):
        """Run one client call; its failure as the class the job driver acts on (see `_http.Http`)."""
        try:
            return call()
        except BackendError:
            raise
        except Exception as exc:  # sorted below; anything unknown on a create goes up as-is
            raise self.mapped(exc, doing, create=create) from exc

    def mapped(self, exc: Exception, doing: str, *, create: bool) -> Exception:
        from google.genai import errors

        what = f"{self.what} {doing}"
        if isinstance(exc, errors.APIError):
            code = exc.code if isinstance(exc.code, int) else 0
            words = exc.message or str(exc.details)[:300]
            response = getattr(exc, "response", None)
            kind = getattr(response, "headers", None) and response.headers.get("content-type")
            if kind and "json" not in kind:  # the SDK passes a proxy's page on as the message: describe it
                words = body_summary(exc.message or "", kind)
            message = f"{what} answered {code} {exc.status or ''}: {words}".replace("  ", " ")
            headers = getattr(getattr(exc, "response", None), "headers", None) or {}
            if code in (408, 409, 429):
                return TransientError(message, retry_after_s=retry_after_s(headers))
            if code >= 500 or not 400 <= code < 500:  # a 5xx, or a 2xx/3xx the client could not read
                return AnswerLost(message, retry_after_s=retry_after_s(headers))
            if code in (401, 403) or "API_KEY" in str(exc.details) or "API key" in words:
                return PermanentError(f"{message} (check the key in ${self.options.api_key_env})")
            if code in (404, 410):
                return NotFound(message)
            if is_refusal(exc.status, words):
                return RejectedError(message)
            return PermanentError(message)
        kind = _transport_error(exc)
        if kind == "connect":
            return TransientError(f"{what}: cannot connect ({type(exc).__name__}: {exc})")
        if kind == "lost":
            return AnswerLost(f"{what}: no answer ({type(exc).__name__}: {exc or 'timed out'})")
        if isinstance(exc, json.JSONDecodeError) or (not create and isinstance(exc, (ValueError, TypeError,
                                                                                     AttributeError))):
            return AnswerLost(f"{what}: an answer that is not the operation's JSON ({type(exc).__name__}: "
                              f"{str(exc)[:200]})")
        return exc

    # --- the request ------------------------------------------------------------------------------

    def billed_seconds(self, request: ShotRequest) -> float:
        """A request that carries reference images asks for 8 s (Veo's only length with them)."""
        if self.fitted(request).sent:
            return 8.0
        return requested_seconds(self.capabilities, request.duration_s, request.fps)

    def request_parts(self, request: ShotRequest) -> tuple[dict, dict]:
        """The `source` and `config` of `generate_videos`, as plain values (the test reads them)."""
        o, fitted = self.options, self.fitted(request)
        source: dict = {"prompt": self.prompt(request, fitted)}
        start = self.start_frame(request)
        if start is not None:
            source["image"] = _image(self.image_data(start))
        refs = []
        for r in fitted.sent:
            if r.path is None:
                raise PermanentError(f"{self.what}: Veo keeps no saved assets ({r.figure.name}'s "
                                     f"`assets.veo: {r.asset}`); give the character reference images instead")
            refs.append({"image": _image(self.image_data(r.path)), "reference_type": "asset"})
        config: dict = {"number_of_videos": 1, "duration_seconds": int(self.billed_seconds(request)),
                        "aspect_ratio": o.aspect_ratio}
        if o.resolution:
            config["resolution"] = o.resolution
        if request.negative_prompt:
            config["negative_prompt"] = request.negative_prompt
        if refs:
            config["reference_images"] = refs
        return source, config

    # --- the job protocol -------------------------------------------------------------------------

    def submit(self, request: ShotRequest, client_key: str) -> str:
        client = self.client()
        source, config = self.request_parts(request)
        try:  # built before anything is sent: a value the client refuses made no job
            from google.genai import types

            built_source = types.GenerateVideosSource(
                prompt=source["prompt"], image=types.Image(**source["image"]) if "image" in source else None)
            refs = [types.VideoGenerationReferenceImage(image=types.Image(**r["image"]),
                                                        reference_type=r["reference_type"])
                    for r in config.pop("reference_images", [])]
            extra = {"http_options": types.HttpOptions(extra_body=self.options.inputs)} if self.options.inputs else {}
            built_config = types.GenerateVideosConfig(**config, reference_images=refs or None, **extra)
        except ValueError as exc:
            raise PermanentError(f"{self.what}: the request cannot be built: {exc}") from exc
        op = self.sdk("creating a video", lambda: client.models.generate_videos(
            model=self.options.model, source=built_source, config=built_config), create=True)
        if not getattr(op, "name", None):
            raise AnswerLost(f"{self.what} creating a video: the answer names no operation ({str(op)[:200]})")
        return str(op.name)

    def poll(self, job_id: str) -> Poll:
        from google.genai import types

        client = self.client()
        op = self.sdk(f"polling {job_id}", lambda: client.operations.get(types.GenerateVideosOperation(name=job_id)))
        if not op.done:
            return Poll("running")
        if op.error:
            err = op.error if isinstance(op.error, dict) else {"message": str(op.error)}
            code, why = err.get("code"), err.get("message") or str(err)
            text = f"{self.what}: operation {job_id} failed ({code}): {why}"
            if code == _CANCELLED:
                return Poll("gone", detail=text)
            if is_refusal(None, why):
                return Poll("failed", error=RejectedError(text))
            if code in _INVALID:
                return Poll("failed", error=PermanentError(text))
            return Poll("failed", error=TransientError(text))
        result = op.response or op.result
        videos = (result.generated_videos if result else None) or []
        if not videos or videos[0].video is None:
            reasons = "; ".join((result.rai_media_filtered_reasons if result else None) or [])
            if result is not None and (result.rai_media_filtered_count or reasons):
                return Poll("failed", error=RejectedError(f"{self.what}: operation {job_id} was blocked by the "
                                                          f"safety filter (not billed): {reasons or 'no reason'}"))
            return Poll("failed", error=PermanentError(f"{self.what}: operation {job_id} finished without a video "
                                                       f"({str(op)[:200]})"))
        video = videos[0].video
        if video.video_bytes:
            return Poll("done", result=video.video_bytes)
        if not video.uri:
            return Poll("failed", error=PermanentError(f"{self.what}: operation {job_id} names no video"))
        return Poll("done", result=video.uri)

    def fetch(self, job_id: str, poll: Poll, out: Path) -> None:
        if isinstance(poll.result, bytes):  # sent inline (encodedVideo)
            out.write_bytes(poll.result)
            return
        client = self.client()
        self.sdk(f"downloading the video of {job_id}",
                 lambda: client.files.download(file=str(poll.result), destination=str(out)))

    def cancel(self, job_id: str) -> None:
        raise PermanentError(f"{self.what}: the Gemini API has no way to cancel a video operation ({job_id}); "
                             f"it documents operation cancel for tuned models only")


def _image(url: str) -> dict:
    """A `data:` URL as the client's Image fields (bytes and their type)."""
    head, _, data = url.partition(",")
    return {"image_bytes": base64.b64decode(data), "mime_type": head.removeprefix("data:").split(";")[0]}


def _transport_error(exc: Exception) -> str | None:
    """"connect" (nothing was sent), "lost" (sent, no answer) or None, for httpx's and httpx2's errors
    (the client uses either)."""
    for module in ("httpx", "httpx2"):
        try:
            lib = __import__(module)
        except ImportError:
            continue
        if isinstance(exc, (lib.ConnectError, lib.ConnectTimeout, lib.PoolTimeout)):
            return "connect"
        if isinstance(exc, lib.HTTPError):
            return "lost"
    return None
