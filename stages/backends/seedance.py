"""ByteDance Seedance on Volcengine Ark (火山方舟) or BytePlus ModelArk: text, image (first frame) and
reference to video, with saved face assets.

Protocol (the official SDK `volcengine-python-sdk` [ark] 5.0.42, `volcenginesdkarkruntime`, and the
BytePlus ModelArk pages 1520757 / 1366799; see the research notes for each field's standing):
- base: `https://ark.cn-beijing.volces.com/api/v3` (Volcengine, models `doubao-seedance-...`) or
  `https://ark.ap-southeast.bytepluses.com/api/v3` (BytePlus, models `dreamina-seedance-...` /
  `seedance-...`); a model id or an endpoint id (`ep-...`). Auth: `Authorization: Bearer $ARK_API_KEY`.
- create: `POST /contents/generations/tasks` `{model, content: [...], ratio, duration, resolution, seed,
  watermark, generate_audio}` -> `{id: "cgt-..."}`. `content` is the text item `{type: text, text}` then
  image items `{type: image_url, image_url: {url}, role}`: role `first_frame` for the shot's keyframe
  (mode image), `reference_image` for each character image (mode reference; Seedance 2.0 takes up to
  9). A saved face asset (project.yaml `cast[].assets.seedance`) goes as the url `asset://<id>` in a
  `reference_image` item, in the slot of an image. Images go inline as `data:image/jpeg;base64,...`
  (documented). Parameters go as top-level fields (the SDK's create signature), never as the old
  `--ratio 9:16` text suffix.
- the prompt names the images the way the official 2.0 multimodal example does, in words, by their
  order among the image items: "Image 1" (图片1 in the Chinese example); templates/references/
  seedance.j2. Resellers' `@Image1` is not Ark's documented form, so it is not used.
- poll: `GET /contents/generations/tasks/{id}`: status queued, running, succeeded (the clip at
  `content.video_url`, kept 24 h), failed (`error {code, message}`), cancelled, expired (ran past its
  `execution_expires_after`).
- cancel: `DELETE /contents/generations/tasks/{id}` cancels a task only while it is queued; a running
  task cannot be stopped (it finishes and is billed), and on a finished task DELETE erases its record
  (the clip's URL with it): so `cancel` looks first and deletes only a queued task.
- errors: `{error: {code, message, param, type}}` with 400 (InvalidParameter, MissingParameter,
  SensitiveContentDetected, Input*SensitiveContentDetected...), 401 AuthenticationError, 403
  AccountOverdueError / AccessDenied, 404 InvalidEndpointOrModel.NotFound, 429, 500.

Fields and their evidence: `content`, the roles, `ratio`, `duration`, `resolution`, `seed`,
`watermark`, `generate_audio` are the SDK's create fields (CONFIRMED); the allowed values (ratio
16:9/4:3/1:1/3:4/9:16/21:9, duration 4-15 s on 2.0, 480p/720p/1080p, seed -1..2^32-1) and that
`generate_audio` defaults to on for 1.5 pro and 2.0 (so `false` is always sent: sound is billed) come
from mirrors of the official docs (UNCONFIRMED); `asset://` face assets are documented only by
resellers that copy Volcengine (UNCONFIRMED). Billing is by tokens (width x height x fps x seconds /
1024), not by the second.

No lookup: a task list (`GET /contents/generations/tasks?filter.status&filter.model&filter.task_ids`)
exists, but its items carry only the task's own fields (id, model, status, seed, ratio, duration...),
nothing of the request (no prompt, no images, no client key), so a job whose create answer was lost
cannot be told from another made with the same settings: it stops as unknown-job.

Not the SDK: its client retries every request twice by default (`DEFAULT_MAX_RETRIES = 2`, on
timeouts, connection errors, 408/409/429/5xx), create included, and Ark has no idempotency key: a
retried create is a second paid task.

Voices (`dialogue: native`): for each character the model speaks for whose voice has a reference clip
(`cast[].voice.reference`, `Figure.voice_clip`), the clip goes with the request as an audio item
`{type: audio_url, audio_url: {url: "data:audio/wav;base64,..."}, role: reference_audio}` after the
image items, and the prompt names it by its order among the audio items, in words ("ANN speaks in the
voice of Audio 1"; templates/references/seedance.j2). At most 3 clips, the shot's speaker first (the
others are named in the log, not sent); a clip that is WAV or MP3, at most 15 MB and fits the time
left is sent as it is; one that is longer than its share of the 15 s total (shared evenly, a
shorter clip keeping its length, 14.5 s in all for the decoders' rounding), in another format, or
larger, is cut from its start and sent as 16-bit mono WAV (ffmpeg); one under 2 s is refused
(PermanentError) before anything is paid. Only in mode `reference` with `audio: true` on Seedance 2.0
(or an endpoint id, not checked): there `capabilities.uses` has "voice_clips", so the clip's content
counts in the shot's key. A shot that sends no reference image sends no clip (Ark takes no audio
alone), and says so in the log.
- CONFIRMED (the SDK's `CreateTaskContentAudioParam`, volcengine-python-sdk commit 2690a7c3,
  2026-02-17; Volcengine doc 82379/1520757 "创建视频生成任务 API", read in verbatim copies; ComfyUI's
  `comfy_api_nodes/apis/bytedance.py` `TaskAudioContent` and its Seedance 2.0 reference node): the
  item `{type: "audio_url", audio_url: {url}, role}`; role `reference_audio` (the only one); the url as
  a public URL, `asset://<id>` or `data:audio/<format>;base64,<...>` with the format in lower case
  (the doc's example: `data:audio/wav;base64,`); wav and mp3 only; each clip 2-15 s, at most 3, 15 s
  in all; at most 15 MB a clip and 64 MB a request body; Seedance 2.0 only; never audio alone (at
  least one reference image or video); first frame, first+last frame and multimodal reference are
  three scenes that cannot be mixed (so no clip goes with mode `image`). ComfyUI checks each clip is
  at least 1.8 s and all of them at most 15.1 s.
- CONFIRMED as a form, NOT CONFIRMED in English: the official multimodal example (doc 1520757's tea
  advert) names the audio by its order among audio items ("全程使用音频1作为背景音乐", the images as
  图片1); a third-party summary of Ark's prompt guide (doc 82379/2222480) asks for a voice as
  「角色」说："…"，音色参考「音频n」, right after the line, where we name it in the legend before the
  prompt; "Audio 1" is the English the way "Image 1" is.
- NOT CONFIRMED: `data:audio/mp3` for an MP3 (the doc gives the pattern with a WAV example only; were
  Ark to refuse it, it answers 400 and makes no task, so nothing is paid); how closely the model
  keeps a clip's voice (no live run here); whether a reference clip changes the price (billing counts
  input video seconds; audio is not mentioned).
"""

from __future__ import annotations

import base64
import json
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from pydantic import Field, model_validator

from stages.backends._direct import DirectBackend, DirectOptions, Limits, Slot
from stages.backends._http import AnswerLost, NotFound
from stages.backends._jobs import Poll
from stages.backends.base import Figure, Fitted, PermanentError, RejectedError, ShotRequest, TransientError, is_refusal

log = logging.getLogger(__name__)

MAX_IMAGES = 9  # Seedance 2.0: reference images per request (saved assets share the slots)
LITE_I2V_MAX = 4  # seedance-1-0-lite-i2v: 1-4 reference images
SEED_MAX = 2 ** 32 - 1
# Failed-task codes the provider marks as the request's fault (the 400 codes of Ark's error table)
BAD_REQUEST = ("InvalidParameter", "MissingParameter")
# Reference audio on Seedance 2.0 (doc 82379/1520757): wav or mp3, 2-15 s a clip, at most 3 clips and 15 s in
# all, 15 MB a clip, 64 MB a request body
MAX_AUDIOS = 3
AUDIO_MIN_S, AUDIO_MAX_S, AUDIO_TOTAL_S = 2.0, 15.0, 15.0
AUDIO_BUDGET_S = AUDIO_TOTAL_S - 0.5  # what the clips sent add up to at most, whatever a decoder rounds
AUDIO_MAX_BYTES = 15 * 1000 * 1000
BODY_MAX_BYTES = 64 * 1000 * 1000
AUDIO_RATE = 44_100  # a converted clip: 16-bit mono WAV at this rate


def _generation(model: str) -> str:
    """The model's family, by its id: "2.0", "1.5", "1.0-lite-i2v", "1.0-lite-t2v", "1.0" or "" (an
    endpoint id `ep-...` or a model this file does not know: not checked)."""
    m = model.lower()
    if "seedance-2-0" in m:
        return "2.0"
    if "seedance-1-5" in m:
        return "1.5"
    if "seedance-1-0-lite-i2v" in m:
        return "1.0-lite-i2v"
    if "seedance-1-0-lite-t2v" in m:
        return "1.0-lite-t2v"
    if "seedance-1-0" in m:
        return "1.0"
    return ""


class SeedanceOptions(DirectOptions):
    """`backends.seedance`: a Seedance model on Volcengine Ark or BytePlus ModelArk (key: ARK_API_KEY)."""

    LIMITS: ClassVar[Limits] = Limits(
        modes=frozenset({"text", "image", "reference"}), max_references=MAX_IMAGES,
        durations_s=tuple(float(s) for s in range(4, 16)),
        aspect_ratios=("9:16", "16:9", "4:3", "1:1", "3:4", "21:9"), audio=True,
        resolutions=("480p", "720p", "1080p"), default_durations_s=(5.0, 10.0))

    model: str = Field("doubao-seedance-2-0-260128", min_length=1,
                       description="model id or endpoint id (ep-...): doubao-seedance-2-0-260128, "
                                   "doubao-seedance-2-0-fast-260128 on Volcengine; dreamina-seedance-2-0-260128 "
                                   "on BytePlus; the 1.x models take no reference images")
    base_url: str = Field("https://ark.cn-beijing.volces.com/api/v3",
                          description="Volcengine ark.cn-beijing.volces.com/api/v3; BytePlus "
                                      "ark.ap-southeast.bytepluses.com/api/v3")
    api_key_env: str = Field("ARK_API_KEY", description="the Ark API key (Bearer)")
    resolution: str | None = Field("720p", description="480p, 720p or 1080p (the 2.0 models' default is 720p)")

    @model_validator(mode="after")
    def _model_fits(self) -> SeedanceOptions:
        gen = _generation(self.model)
        if self.mode == "reference" and gen in ("1.0", "1.0-lite-t2v", "1.5"):
            raise ValueError(f"mode reference: {self.model} takes no reference images (Seedance 2.0 or "
                             f"seedance-1-0-lite-i2v do)")
        if self.mode == "image" and gen == "1.0-lite-t2v":
            raise ValueError(f"mode image: {self.model} is text-to-video only")
        if self.audio and gen not in ("", "2.0", "1.5"):
            raise ValueError(f"audio: {self.model} makes no sound (Seedance 1.5 pro and 2.0 do)")
        if self.max_references is not None and gen == "1.0-lite-i2v" and self.max_references > LITE_I2V_MAX:
            raise ValueError(f"max_references {self.max_references} is over {self.model}'s {LITE_I2V_MAX}")
        return self


class SeedanceBackend(DirectBackend):
    """VideoBackend (resumable, billed) on Volcengine Ark / BytePlus ModelArk's content generation tasks."""

    name = "seedance"
    section = "seedance"
    Options = SeedanceOptions
    label = "Volcengine Ark (Seedance)"
    keys_at = "https://console.volcengine.com/ark (API Key management); BytePlus: console.byteplus.com/ark"
    lookup_hint = "the Ark console's task history (or GET /contents/generations/tasks)"

    def __init__(self, options: SeedanceOptions):
        super().__init__(options)
        gen = _generation(options.model)
        if gen == "1.0-lite-i2v":
            self.capabilities = replace(self.capabilities, max_references=min(self.capabilities.max_references,
                                                                              LITE_I2V_MAX))
        if options.mode == "reference" and options.audio and gen in ("2.0", ""):
            # the speakers' reference clips go with a native-dialogue shot (and count in its key)
            self.capabilities = replace(self.capabilities, uses=self.capabilities.uses | {"voice_clips"})

    # --- the request ------------------------------------------------------------------------------

    def body(self, request: ShotRequest) -> dict:
        o = self.options
        fitted = self.fitted(request)
        voices = self.voices(request, fitted)
        content: list[dict] = [{"type": "text", "text": self.prompt(request, fitted, voices)}]
        start = self.start_frame(request)
        if start is not None:
            content.append({"type": "image_url", "image_url": {"url": self.image_data(start)}, "role": "first_frame"})
        for r in fitted.sent:
            url = _asset_url(r.asset) if r.asset is not None else self.image_data(r.path)
            content.append({"type": "image_url", "image_url": {"url": url}, "role": "reference_image"})
        for v in voices:
            content.append({"type": "audio_url", "audio_url": {"url": v.url}, "role": "reference_audio"})
        body = {"model": o.model, "content": content, "ratio": o.aspect_ratio, "duration": int(self.seconds(request)),
                "seed": request.seed % (SEED_MAX + 1), "watermark": False,
                "generate_audio": bool(o.audio)}  # sent either way: on by default for 1.5 pro and 2.0, and billed
        if o.resolution:
            body["resolution"] = o.resolution
        body.update(o.inputs)
        if voices and len(json.dumps(body)) > BODY_MAX_BYTES:
            raise PermanentError(f"{self.what}: shot {request.shot_id}'s request, with its voice clips, is over Ark's "
                                 f"{BODY_MAX_BYTES // 1000 // 1000} MB; nothing was sent")
        return body

    def prompt(self, request: ShotRequest, fitted: Fitted | None = None, voices: list[Voice] | tuple = ()) -> str:
        """The prompt with the references named in Ark's words (templates/references/seedance.j2): the
        images by their order among image items, each voice clip by its order among audio items."""
        from stages.core.prompts import render_template

        if self.start_frame(request) is not None:
            return request.motion_prompt or request.prompt
        fitted = fitted if fitted is not None else self.fitted(request)
        slots, kinds = [], {}
        for i, r in enumerate(fitted.sent):
            kind = r.asset is not None
            kinds[kind] = kinds.get(kind, 0) + 1
            slots.append(Slot(i + 1, kinds[kind], r.figure.id, r.figure.name, r.view, r.asset, r.figure.speaking))
        return render_template(f"references/{self.name}.j2", prompt=request.prompt, refs=slots, voices=list(voices),
                               **self.template_context())

    # --- the speakers' voices (dialogue: native) --------------------------------------------------

    def voices(self, request: ShotRequest, fitted: Fitted | None = None) -> list[Voice]:
        """The reference clips this request carries: one per character the model speaks for whose voice
        has one, the shot's speaker first, at most 3, fitted to Ark's limits (cut, or converted to WAV);
        none for a shot the model does not speak in, or one with no reference image (Ark takes no audio
        alone). A clip too short, or unreadable, is refused here, before anything is paid."""
        if "voice_clips" not in self.capabilities.uses or not request.extra.get("dialogue"):
            return []
        figures: list[Figure] = []
        for f in sorted((f for f in request.figures if f.voice_clip is not None), key=lambda f: not f.speaking):
            if all(Path(f.voice_clip) != Path(g.voice_clip) for g in figures):
                figures.append(f)
        if not figures:
            return []
        fitted = fitted if fitted is not None else self.fitted(request)
        if not fitted.sent:
            log.warning("%s: shot %s sends no reference image, and Ark takes no audio alone: %s speak in the "
                        "model's own voice", self.what, request.shot_id, ", ".join(f.name for f in figures))
            return []
        if len(figures) > MAX_AUDIOS:
            log.warning("%s: shot %s: Ark takes %d reference clips; not sent: %s", self.what, request.shot_id,
                        MAX_AUDIOS, ", ".join(f"{f.name}'s voice" for f in figures[MAX_AUDIOS:]))
            figures = figures[:MAX_AUDIOS]
        infos = [self._clip_info(f) for f in figures]
        shares = _shares([i.duration_s for i in infos], AUDIO_BUDGET_S)
        return [Voice(n + 1, f.id, f.name, f.speaking, self._clip_url(f, info, share), min(info.duration_s, share))
                for n, (f, info, share) in enumerate(zip(figures, infos, shares))]

    def _clip_info(self, figure: Figure):
        from stages.core.media import probe

        path = Path(figure.voice_clip)
        try:
            info = probe(path)
        except Exception as exc:  # noqa: BLE001 -- any decoder's complaint: a clip that cannot be sent
            raise PermanentError(f"{self.what}: {figure.name}'s voice.reference {path} cannot be read as audio "
                                 f"({exc}); nothing was sent") from None
        if info.audio_codec is None or not info.duration_s:
            raise PermanentError(f"{self.what}: {figure.name}'s voice.reference {path} has no sound; nothing was sent")
        if info.duration_s < AUDIO_MIN_S:
            raise PermanentError(f"{self.what}: {figure.name}'s voice.reference {path.name} is {info.duration_s:.1f} s, "
                                 f"and Ark takes reference audio of {AUDIO_MIN_S:g}-{AUDIO_MAX_S:g} s; nothing was "
                                 f"sent: give a longer clip (or remove voice.reference: the model then picks a voice)")
        return info

    def _clip_url(self, figure: Figure, info, share: float) -> str:
        """The clip as a `data:audio/<format>;base64,` URL: as it is where Ark takes it (WAV or MP3, small
        and short enough), else its first `share` seconds as 16-bit mono WAV."""
        path, seconds = Path(figure.voice_clip), info.duration_s
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise PermanentError(f"{self.what}: {figure.name}'s voice.reference {path} cannot be read: "
                                 f"{exc.strerror or exc}") from None
        kind = _audio_format(data, info.audio_codec)
        if kind is None or len(data) > AUDIO_MAX_BYTES or share < seconds:
            data, kind = self._converted(figure, path, share if share < seconds else None), "wav"
            log.info("%s: %s's voice.reference %s sent as %.2f s of WAV", self.what, figure.name, path.name,
                     min(seconds, share))
        return f"data:audio/{kind};base64," + base64.b64encode(data).decode()

    def _converted(self, figure: Figure, path: Path, seconds: float | None) -> bytes:
        import tempfile

        from stages.core.errors import RenderError
        from stages.core.media import run_ffmpeg

        with tempfile.TemporaryDirectory(prefix="dramaforge-voice-") as tmp:
            out = Path(tmp) / "clip.wav"
            cut = ["-t", f"{seconds:.3f}"] if seconds is not None else []
            try:
                run_ffmpeg(["-i", str(path), "-map", "0:a:0", *cut, "-ac", "1", "-ar", str(AUDIO_RATE),
                            "-c:a", "pcm_s16le", str(out)], what=f"converting {figure.name}'s voice.reference")
            except RenderError as exc:
                raise PermanentError(f"{self.what}: {figure.name}'s voice.reference {path} could not be made into "
                                     f"a clip Ark takes: {exc}; nothing was sent") from None
            return out.read_bytes()

    # --- the job protocol -------------------------------------------------------------------------

    def task_path(self, job_id: str = "") -> str:
        return "/contents/generations/tasks" + (f"/{job_id}" if job_id else "")

    def submit(self, request: ShotRequest, client_key: str) -> str:
        # Ark takes no client key (X-Client-Request-Id is a trace header, never echoed in a task): none is sent
        answer = self.call("POST", self.task_path(), "creating a task", body=self.body(request))
        task_id = answer.get("id")
        if not task_id or not isinstance(task_id, str):
            raise AnswerLost(f"{self.what} creating a task: the answer names no id ({str(answer)[:200]})")
        return task_id

    def task(self, job_id: str) -> dict:
        return self.call("GET", self.task_path(job_id), f"polling task {job_id}")

    def poll(self, job_id: str) -> Poll:
        return self.read(job_id, self.task(job_id))

    def read(self, job_id: str, task: dict) -> Poll:
        """One task object as the job driver sees it."""
        state = task.get("status")
        if state == "queued":
            return Poll("queued")
        if state == "running":
            return Poll("running")
        if state in ("cancelled", "expired"):
            return Poll("gone", detail=f"Ark says the task is {state}")
        if state == "failed":
            error = task.get("error") if isinstance(task.get("error"), dict) else {}
            code, why = str(error.get("code") or ""), str(error.get("message") or "failed")
            text = f"{self.what}: task {job_id} failed: {code + ': ' if code else ''}{why}"
            if is_refusal(code, why):
                return Poll("failed", error=RejectedError(text))
            if code in BAD_REQUEST or code.startswith(tuple(c + "." for c in BAD_REQUEST)):
                return Poll("failed", error=PermanentError(text))
            return Poll("failed", error=TransientError(text))  # Ark's own failure: re-created only as allowed
        if state != "succeeded":
            raise TransientError(f"{self.what}: task {job_id} has a status this backend does not know: {state!r}")
        url = (task.get("content") or {}).get("video_url") if isinstance(task.get("content"), dict) else None
        if not url:
            return Poll("failed", error=PermanentError(f"{self.what}: task {job_id} succeeded without a video "
                                                       f"({str(task)[:200]})"))
        return Poll("done", result=url)

    def cancel(self, job_id: str) -> None:
        """Cancel a queued task (DELETE); a running one cannot be stopped, and a finished one is left
        alone (DELETE would erase its record and clip, and it is billed already)."""
        try:
            state = self.task(job_id).get("status")
        except NotFound as exc:
            raise PermanentError(f"{self.what}: there is no way to cancel task {job_id}: Ark does not know it "
                                 f"({exc})") from None
        if state == "running":
            raise PermanentError(f"{self.what}: Ark has no way to cancel task {job_id} once it is running (only a "
                                 f"queued task can be cancelled); it runs to the end and is billed")
        if state != "queued":  # succeeded, failed, cancelled, expired: nothing left to stop
            return
        try:
            self.call("DELETE", self.task_path(job_id), f"cancelling task {job_id}")
        except NotFound:
            return
        except PermanentError as exc:  # it started between the look and the DELETE
            raise PermanentError(f"{self.what}: Ark has no way to cancel task {job_id} now (only a queued task "
                                 f"can be cancelled): {exc}") from None


def _asset_url(asset: str) -> str:
    """A saved face asset as Ark takes it: `asset://<id>` (written with or without the scheme)."""
    return asset if asset.startswith("asset://") else f"asset://{asset}"


@dataclass(frozen=True)
class Voice:
    """One speaker's reference clip as a request carries it: its place among the audio items (`slot`,
    1-based: "Audio 1"), whose voice it is, and the clip as Ark takes it."""

    slot: int
    id: str
    name: str
    speaking: bool
    url: str
    seconds: float


def _audio_format(data: bytes, codec: str | None) -> str | None:
    """"wav" or "mp3" as Ark names them, by the file's own header and the decoder's codec (not by its
    name); None for anything else (an MP2, a WAV of compressed audio, an M4A...)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE" and (codec or "").startswith("pcm_"):
        return "wav"
    if (data[:3] == b"ID3" or data[:1] == b"\xff") and codec in ("mp3", "mp3float"):
        return "mp3"
    return None


def _shares(seconds: list[float], budget: float) -> list[float]:
    """How long each clip may be so that together they take at most `budget` seconds: shared evenly, a
    clip shorter than its share keeping its length and leaving the rest to the others (each share is cut
    to the hundredth below, and to Ark's 15 s a clip)."""
    order = sorted(range(len(seconds)), key=lambda i: seconds[i])
    left, out = budget, [0.0] * len(seconds)
    for k, i in enumerate(order):
        share = min(math.floor(left / (len(seconds) - k) * 100) / 100, AUDIO_MAX_S)
        out[i] = min(seconds[i], share)
        left -= out[i]
    return out
