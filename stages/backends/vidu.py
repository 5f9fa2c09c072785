"""Vidu's enterprise API (Shengshu; api.vidu.com/ent/v2, in China api.vidu.cn/ent/v2): text, image
(start frame) and reference (subject) to video.

Protocol (Vidu's platform docs: text2video, img2video, reference2video, get-generation,
cancel-generation, error-code):
- auth: `Authorization: Token <api key>` (the word Token, not Bearer); JSON bodies.
- create: `POST /text2video` (prompt, aspect_ratio), `POST /img2video` (`images`: exactly one start
  frame; it follows the image's shape, no aspect_ratio), `POST /reference2video` in subject mode:
  `subjects: [{id, images: [up to 3], voice_id?}]`, 1-7 subjects and at most 7 images in all, named
  in the prompt as `@<id>`. Every body: `model`, `prompt`, `duration` (an integer of seconds),
  `seed`, `resolution` (360p/540p/720p/1080p by model), `audio` (native sound, on img2video and
  reference2video), `payload` (an opaque string echoed back: our client key). Images are URLs or
  base64 with its `data:image/...;base64,` prefix (png, jpeg, webp; at least 128 px a side; 1:4-4:1).
  The answer is flat: `{task_id, state: created, credits, ...}`.
- poll: `GET /tasks/{id}/creations`: state created, queueing, processing, success (the clip at
  `creations[0].url`, valid 24 hours), failed (`err_code`: the reason, e.g. CreationPolicyViolation;
  a cancelled task fails with UserCancelled).
- cancel: `POST /tasks/{id}/cancel` with `{"id": <task id>}` -> `{}` (documented for off-peak tasks;
  a running task may answer 400 "can not cancel").
- errors: `{code, reason, message, metadata: {trace_id}}`. reason TaskPromptPolicyViolation,
  AuditSubmitIllegal, CreationPolicyViolation: refused (RejectedError); CreditInsufficient: the
  balance (PermanentError); TooManyRequests, QuotaExceeded, SystemThrottling (429): retried; the
  Field*/Image*/BadRequest family: a bad request (PermanentError); 401 Unauthorized.
- there is no client key to find a task by: the list (`GET /tasks`) filters by time, id, model and
  state, and whether it echoes `payload` is not documented; a lost create is `unknown-job`.

Subject mode, which form: the official (CN) reference2video page gives `subjects[].id` with the
prompt naming subjects `@1`, `@2` (its example ids are placeholders); newer pages seen only through
resellers use `name` with `@name`. This backend sends the documented `id` form with ids "1", "2"...
(the subject's place), so `@1` reads the same whether Vidu matches by id or by place. Models with
subject mode in the docs: viduq2, viduq1, vidu2.0 (vidu2.0: at most 3 images). A reference shot
with nobody on screen goes to text2video where the model offers it. Saved assets
(`cast[].assets.vidu`) are image URLs added to the character's subject (Vidu's subject library ids
are not documented in the pages we have, so none are sent). With `dialogue: native`, a speaking
subject carries `voice_id` from `cast[].voice.ids.vidu` (the field is in the reference2video page's
subject; which ids it takes, Vidu's preset voices or cloned ones, is NOT CONFIRMED).

Vidu publishes no Python SDK (its MCP server wraps this API with plain requests).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import Field, model_validator

from stages.backends._direct import DirectBackend, DirectOptions, Limits
from stages.backends._http import AnswerLost, NotFound, _httpx
from stages.backends._jobs import Poll
from stages.backends.base import (
    BackendError,
    Fitted,
    PermanentError,
    Ref,
    RejectedError,
    ShotRequest,
    TransientError,
    fit_references,
    is_refusal,
)

MAX_IMAGES = 7  # reference2video: images in all, and subjects
PER_SUBJECT = 3  # images one subject may carry
MIN_SIDE = 128
ENDPOINTS = {"text": "text2video", "image": "img2video", "reference": "reference2video"}
_Q2 = tuple(range(1, 11))
# (model, endpoint) -> the durations its docs give
DURATIONS: dict[tuple[str, str], tuple[int, ...]] = {
    ("viduq2", "text2video"): _Q2, ("viduq2", "reference2video"): _Q2,
    ("viduq2-pro", "img2video"): _Q2, ("viduq2-pro-fast", "img2video"): _Q2, ("viduq2-turbo", "img2video"): _Q2,
    ("viduq1", "text2video"): (5,), ("viduq1", "img2video"): (5,), ("viduq1", "reference2video"): (5,),
    ("viduq1-classic", "img2video"): (5,),
    ("vidu2.0", "img2video"): (4, 8), ("vidu2.0", "reference2video"): (4,),
}
RESOLUTIONS = {"viduq2": ("540p", "720p", "1080p"), "viduq2-pro": ("540p", "720p", "1080p"),
               "viduq2-pro-fast": ("720p", "1080p"), "viduq2-turbo": ("540p", "720p", "1080p"),
               "viduq1": ("1080p",), "viduq1-classic": ("1080p",), "vidu2.0": ("360p", "720p")}
AUDIO_ENDPOINTS = ("img2video", "reference2video")
REFUSED = {"TaskPromptPolicyViolation", "AuditSubmitIllegal", "CreationPolicyViolation"}
THROTTLED = {"TooManyRequests", "QuotaExceeded", "SystemThrottling"}
BALANCE = {"CreditInsufficient"}
BAD_REQUEST = re.compile(r"^(BadRequest|Field\w*|Image\w*|PageSizeOutOfRange|ModelUnavailable)$")


class ViduOptions(DirectOptions):
    """`backends.vidu`: a model on Vidu's enterprise API (keys at platform.vidu.com)."""

    LIMITS: ClassVar[Limits] = Limits(
        modes=frozenset({"text", "image", "reference"}), max_references=MAX_IMAGES,
        durations_s=tuple(float(s) for s in range(1, 11)), aspect_ratios=("9:16", "16:9", "1:1", "4:3", "3:4"),
        audio=True, resolutions=("360p", "540p", "720p", "1080p"))

    model: str = Field("viduq2", min_length=1, description="viduq2 (text, reference), viduq2-pro / -pro-fast / "
                                                           "-turbo (image), viduq1, vidu2.0")
    base_url: str = Field("https://api.vidu.com/ent/v2", description="api.vidu.com/ent/v2; in China "
                                                                     "api.vidu.cn/ent/v2")
    api_key_env: str = Field("VIDU_API_KEY", description="the API key (sent as `Token <key>`)")
    resolution: str | None = Field("720p", description="360p, 540p, 720p or 1080p, as the model offers")

    @model_validator(mode="after")
    def _vidu_model(self) -> ViduOptions:
        endpoint = ENDPOINTS[self.mode]
        lengths = DURATIONS.get((self.model, endpoint))
        if lengths is None:
            offered = sorted({m for m, e in DURATIONS if e == endpoint})
            raise ValueError(f"model {self.model!r} does not take mode {self.mode!r} ({endpoint}: "
                             f"{', '.join(offered)})")
        bad = [d for d in self.durations or () if d not in lengths]
        if bad:
            raise ValueError(f"durations {bad} are not offered by {self.model} on {endpoint} (seconds: "
                             f"{', '.join(str(s) for s in lengths)})")
        resolutions = RESOLUTIONS[self.model]
        if self.resolution is not None and self.resolution not in resolutions:
            raise ValueError(f"resolution {self.resolution!r} is not offered by {self.model} "
                             f"({', '.join(resolutions)})")
        if self.aspect_ratio in ("4:3", "3:4") and not self.model.startswith("viduq2"):
            raise ValueError(f"aspect_ratio {self.aspect_ratio!r} is offered by the viduq2 models only")
        if self.audio and endpoint not in AUDIO_ENDPOINTS:
            raise ValueError(f"audio: {endpoint} takes no audio field (img2video and reference2video do)")
        if self.mode == "reference" and self.model == "vidu2.0" and (self.max_references or 0) > 3:
            raise ValueError("max_references: vidu2.0 takes at most 3 reference images")
        return self

    def clip_lengths(self) -> tuple[float, ...]:
        lengths = self.durations or DURATIONS[(self.model, ENDPOINTS[self.mode])]
        return tuple(sorted({float(s) for s in lengths}))


@dataclass(frozen=True)
class Subject:
    """One character as a reference2video subject: its id ("1", "2"...: its place) and its images."""

    id: str
    figure_id: str
    name: str
    refs: tuple


def subjects(refs) -> list[Subject]:
    """The references grouped by character, in the order each character's first one was sent."""
    order: dict[str, list] = {}
    names = {}
    for r in refs:
        fid = r.figure.id if isinstance(r, Ref) else r.id
        order.setdefault(fid, []).append(r)
        names[fid] = r.figure.name if isinstance(r, Ref) else r.name
    return [Subject(str(i), fid, names[fid], tuple(rs)) for i, (fid, rs) in enumerate(order.items(), 1)]


def voice_of(subject: Subject, backend: str) -> dict:
    """`{voice_id}` for a subject the model speaks for (dialogue: native) whose cast gives a Vidu voice id
    (`cast[].voice.ids.vidu`); nothing otherwise."""
    figure = next((r.figure for r in subject.refs if isinstance(r, Ref)), None)
    voice = next((v for b, v in figure.voices if b == backend), None) if figure is not None else None
    return {"voice_id": voice} if voice else {}


class ViduBackend(DirectBackend):
    """VideoBackend (resumable, billed) on Vidu's enterprise API."""

    name = "vidu"
    section = "vidu"
    Options = ViduOptions
    label = "Vidu"
    keys_at = "https://platform.vidu.com (API keys)"
    lookup_hint = "your Vidu platform console's task list (platform.vidu.com)"

    def __init__(self, options: ViduOptions):
        super().__init__(options)
        if options.model == "vidu2.0":
            from dataclasses import replace

            self.capabilities = replace(self.capabilities, max_references=min(self.capabilities.max_references, 3))

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.key()}"}

    def template_context(self) -> dict:
        return {"subjects_of": subjects}

    def fitted(self, request: ShotRequest) -> Fitted:
        """The stated rule (`fit_references`), and at most 3 images per subject (Vidu's limit)."""
        if "references" not in self.capabilities.uses:
            return Fitted((), (), 0)
        limit = self.capabilities.max_references
        ranked = fit_references(request.figures, 10 ** 6, self.name).sent
        kept, dropped, per = [], [], {}
        for r in ranked:
            n = per.get(r.figure.id, 0)
            if n < PER_SUBJECT and len(kept) < limit:
                kept.append(r)
                per[r.figure.id] = n + 1
            else:
                dropped.append(r)
        return Fitted(tuple(kept), tuple(dropped), limit)

    def images_sent(self, request: ShotRequest) -> int:
        start = self.start_frame(request)
        return int(start is not None) + len(self.fitted(request).sent)

    # --- HTTP: Vidu's error reasons decide the class ----------------------------------------------

    def call(self, method: str, path: str, doing: str, *, body: dict | None = None,
             headers: dict[str, str] | None = None) -> dict:
        http, httpx = self.http(), _httpx()
        try:
            resp = http.client().request(method, self.url(path), json=body,
                                         headers={**self.auth_headers(), **(headers or {})})
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise TransientError(f"{self.what} {doing}: cannot connect ({type(exc).__name__}: {exc})") from exc
        except httpx.HTTPError as exc:
            raise AnswerLost(f"{self.what} {doing}: no answer ({type(exc).__name__}: {exc or 'timed out'})") from exc
        if 400 <= resp.status_code < 500:
            self._refused(resp, doing)
        return http.answer(resp, doing)

    def _refused(self, resp, doing: str) -> None:
        """Raise the class Vidu's `reason` means (a 4xx answer: no task was made)."""
        from stages.backends._openai import retry_after_s

        try:
            data = resp.json()
        except ValueError:
            return
        reason = data.get("reason") if isinstance(data, dict) else None
        if not isinstance(reason, str):
            return
        text = f"{self.what} {doing} answered {resp.status_code}: {reason}: {data.get('message') or ''}".rstrip(": ")
        if reason in REFUSED:
            raise RejectedError(text)
        if reason in BALANCE:
            raise PermanentError(f"{text} (top up the Vidu account)")
        if reason in THROTTLED:
            raise TransientError(text, retry_after_s=retry_after_s(resp.headers))
        if resp.status_code == 404:
            raise NotFound(text)
        if resp.status_code == 401:
            raise PermanentError(f"{text} (check the key in ${self.options.api_key_env})")
        raise PermanentError(text)

    # --- the request ------------------------------------------------------------------------------

    def image(self, path: Path) -> str:
        from PIL import Image

        try:
            with Image.open(path) as im:
                w, h = im.size
        except OSError as exc:
            raise PermanentError(f"the image {path} cannot be read: {exc}") from exc
        if min(w, h) < MIN_SIDE or max(w, h) > 4 * min(w, h):
            raise PermanentError(f"the image {path} ({w}x{h}) is outside Vidu's limits (at least {MIN_SIDE} px a "
                                 f"side, 1:4 to 4:1)")
        return self.image_data(path)

    def reference(self, ref: Ref) -> str:
        if ref.asset is not None:
            if not ref.asset.startswith(("https://", "http://")):
                raise PermanentError(f"cast asset for vidu {ref.asset!r} ({ref.figure.name}): an image URL is "
                                     f"expected (subject-library ids are not supported)")
            return ref.asset
        return self.image(ref.path)

    def endpoint(self, request: ShotRequest, fitted: Fitted) -> str:
        endpoint = ENDPOINTS[self.options.mode]
        if endpoint == "reference2video" and not fitted.sent:  # nobody on screen: the prompt alone
            if (self.options.model, "text2video") not in DURATIONS:
                raise PermanentError(f"shot {request.shot_id} has no character references and "
                                     f"{self.options.model} makes no text2video")
            return "text2video"
        return endpoint

    def body(self, request: ShotRequest, client_key: str) -> tuple[str, dict]:
        o = self.options
        fitted = self.fitted(request)
        endpoint = self.endpoint(request, fitted)
        body = {"model": o.model, "prompt": self.prompt(request, fitted), "duration": int(self.seconds(request)),
                "seed": request.seed % 2 ** 31}
        if o.resolution:
            body["resolution"] = o.resolution
        if endpoint == "img2video":
            start = self.start_frame(request)
            if start is None:
                raise PermanentError(f"shot {request.shot_id}: mode 'image' needs the shot's keyframe")
            body["images"] = [self.image(start)]  # it follows the image's shape: no aspect_ratio
        else:
            body["aspect_ratio"] = o.aspect_ratio
        if endpoint == "reference2video":
            body["subjects"] = [{"id": s.id, "images": [self.reference(r) for r in s.refs], **voice_of(s, self.name)}
                                for s in subjects(fitted.sent)]
        if endpoint in AUDIO_ENDPOINTS:
            body["audio"] = o.audio  # said either way: a model whose default is sound bills it
        body["payload"] = client_key
        return endpoint, {**body, **o.inputs}

    # --- the job protocol -------------------------------------------------------------------------

    def submit(self, request: ShotRequest, client_key: str) -> str:
        endpoint, body = self.body(request, client_key)
        answer = self.call("POST", f"/{endpoint}", f"creating a {endpoint} task", body=body)
        task_id = answer.get("task_id")
        if not task_id:
            raise AnswerLost(f"{self.what} creating a task: the answer names no task_id ({str(answer)[:200]})")
        return str(task_id)

    def poll(self, job_id: str) -> Poll:
        data = self.call("GET", f"/tasks/{job_id}/creations", f"polling task {job_id}")
        state = data.get("state")
        if state in ("created", "queueing"):
            return Poll("queued", detail=state)
        if state == "processing":
            return Poll("running")
        if state == "failed":
            reason = data.get("err_code") or ""
            text = f"{self.what}: task {job_id} failed: {reason or 'no reason given'}"
            if reason in ("UserCancelled", "Canceled"):
                return Poll("gone", detail=text)
            return Poll("failed", error=failure(reason, text))
        if state != "success":
            raise TransientError(f"{self.what}: task {job_id} has a state this backend does not know: {state!r}")
        creations = data.get("creations") or []
        url = creations[0].get("url") if creations and isinstance(creations[0], dict) else None
        if not url:
            return Poll("failed", error=PermanentError(f"{self.what}: task {job_id} succeeded without a creation "
                                                       f"({str(data)[:200]})"))
        return Poll("done", result=url)

    def cancel(self, job_id: str) -> None:
        self.call("POST", f"/tasks/{job_id}/cancel", f"cancelling task {job_id}", body={"id": job_id})


def failure(reason: str, text: str) -> BackendError:
    """A failed task's `err_code` as the class a flow acts on."""
    if reason in REFUSED or is_refusal(reason, text):
        return RejectedError(text)
    if reason in BALANCE or BAD_REQUEST.match(reason or ""):
        return PermanentError(text)
    return TransientError(text)  # Vidu's own failure (InternalServiceFailure...): re-created only as allowed
