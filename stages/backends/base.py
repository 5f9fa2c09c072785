"""The small Protocols every backend implements, the capability record each one declares, and the
three error classes they raise.

Flows decide what to retry from the class alone: TransientError is retried with backoff,
RejectedError and PermanentError are recorded and never looped. What a backend can do is declared
once, in its `capabilities`: the plan reads `uses` and `ignores`, estimates `billed`, the shot gate
`concurrency`, generation `resumable`, `check` `extra`/`requires`; the video fields (modes, reference
limits, durations, ratios, audio) and `pool` are declared for fitting requests and routing work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from pydantic import Field, model_validator

from stages.core.model import Model


class BackendError(Exception):
    """Base of backend failures; `retry_after_s` is the provider's hint, when it gave one."""

    def __init__(self, message: str, *, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TransientError(BackendError):
    """Timeouts, 429, 5xx, a busy device: worth retrying."""


class RejectedError(BackendError):
    """The provider refused the content: record the reason, do not loop."""


class PermanentError(BackendError):
    """Bad request, auth, unsupported size or voice: fail at once with the provider's message."""


# A provider refusing the content says so in one of these words (code or message), whatever the medium.
_REFUSAL_CODES = {"content_policy_violation", "moderation_blocked", "content_filter", "safety_violation",
                  "input_moderation", "output_moderation"}
_REFUSAL_WORDS = re.compile(r"content[ _-]?(policy|filter)|moderation|safety|flagged|guardrail|risk[ _-]?control|"
                            r"sensitive", re.IGNORECASE)


def is_refusal(code: str | None, message: str | None) -> bool:
    """Whether a provider's error code or message says it refused the content (not a fault to retry)."""
    code = (code or "").lower()
    return code in _REFUSAL_CODES or bool(_REFUSAL_WORDS.search(message or "") or _REFUSAL_WORDS.search(code))


@dataclass(frozen=True)
class Capabilities:
    """What a backend declares about itself, once, in its own file.

    `uses`: request fields filled in only for a backend that reads them ("keyframe", "references";
    "staging": the drawing hints in `extra`, INT./EXT. and clean overlays);
    `ignores`: request fields that do not change its output, so they stay out of its artifacts' keys.
    """

    uses: frozenset[str] = frozenset()
    ignores: frozenset[str] = frozenset()
    billed: bool = False  # calls a server that may charge: unknown cost until the project's `rates` price it
    resumable: bool = False  # takes `jobs` (its shot's paid-job journal) and resumes a provider job after a crash
    concurrency: int = 1  # shots the render makes on it at once in one process (a local GPU model: 1)
    pool: Literal["cpu", "gpu", "api"] = "cpu"  # the kind of worker its units need
    extra: str | None = None  # the pip extra it needs (`pip install 'dramaforge[extra]'`)
    requires: tuple[str, ...] = ()  # modules that extra brings; a render is refused while one is missing
    install: str | None = None  # how to install it, where the extra alone is not enough
    free: bool = False  # offline and instant: its images are made even when no shot needs them (for review)
    # Built-in speed for a first estimate, measured on a 2-core laptop CPU (the project's own ledger
    # replaces it after a render): wall seconds per second of 1080x1920 video (video), per line
    # (speech), per image (image).
    seconds_each: float | None = None


@dataclass(frozen=True)
class VideoCapabilities(Capabilities):
    """A video backend's record: what it can start from, and what clips it can make."""

    modes: frozenset[str] = frozenset({"text"})  # text, image (from a keyframe), reference (character sheets)
    max_references: int = 0  # reference images one request may carry
    durations_s: tuple[float, ...] | None = None  # clip lengths it makes (None: any length)
    aspect_ratios: tuple[str, ...] | None = None  # e.g. ("9:16", "16:9"); None: any size
    native_audio: bool = False  # its clips carry sound of their own (dropped: dramaforge mixes the episode)
    resolution: str | None = None  # what it is asked to make, as its provider bills it (e.g. "720p", "4k")
    faces: bool = False  # it can say where it drew each face (`faces(request)`): subtitles keep clear of them
    seeded: bool = True  # another seed gives another picture: a shot's takes differ
    uploads: bool = False  # its images go through an upload step first (once per file and account)


@dataclass(frozen=True)
class SpeechCapabilities(Capabilities):
    """A speech backend's record: whose voice it speaks in, where acting notes go, what it bills."""

    cloning: bool = False  # speaks in a voice made from the character's reference clip (`voice.reference`)
    enrolls: bool = False  # that voice is enrolled first: one paid unit per clip and account, its id kept
    # Where a line's acting notes (parenthetical, V.O., `voice.notes`) go, through templates/acting/<name>.j2:
    # "tags" (inline in the text), "emotion" (one of `emotions`), "instruction" (free text); None: unused.
    acting: Literal["tags", "emotion", "instruction"] | None = None
    emotions: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()  # what it speaks (ISO 639-1; empty: whatever it is given)
    bills: Literal["characters", "bytes", "seconds"] | None = None  # how its provider counts a line
    clip_s: tuple[float, float] | None = None  # the reference clip lengths it takes, from its docs


@dataclass(frozen=True)
class LipSyncCapabilities(Capabilities):
    """A lip-sync backend's record: the pieces of video it takes (a piece outside them is split,
    grown within its shot, or named and not sent)."""

    min_s: float = 0.0  # shortest piece it takes
    max_s: float | None = None  # longest piece it takes (None: any)
    min_side_px: int = 0  # a smaller picture is scaled up to this before it is sent
    max_side_px: int | None = None
    needs_video: str | None = None  # the video backend whose clips it can redraw (the animatic's own)


def requested_seconds(caps: VideoCapabilities, duration_s: float, fps: int) -> float:
    """Seconds of video a backend is asked for (and a billed one charges) for a shot of `duration_s`:
    the shortest clip length it offers that covers the shot (within a frame: the last frame is held),
    else its longest; a billed backend that lists none makes whole seconds; a local one, the shot."""
    import math

    if caps.durations_s:
        choices = sorted(set(caps.durations_s))
        return next((s for s in choices if s + 1.0 / fps >= duration_s), choices[-1])
    return float(max(1, math.ceil(duration_s - 1.0 / fps))) if caps.billed else duration_s


def images_sent(caps: VideoCapabilities, request: "ShotRequest", backend: str | None = None) -> int:
    """Images one request carries: its keyframe, and the figures' references up to the limit."""
    keyframe = int("keyframe" in caps.uses and request.keyframe is not None)
    if "references" not in caps.uses:
        return keyframe
    return keyframe + len(fit_references(request.figures, caps.max_references, backend).sent)


@dataclass(frozen=True)
class Ref:
    """One reference a request carries: a figure's image (`path`), or a provider's saved id for the
    character (`asset`, e.g. a Kling element or a Seedance face asset: it takes the slot of an image)."""

    figure: "Figure"
    path: Path | None = None
    asset: str | None = None

    @property
    def view(self) -> str:
        """What the image shows: the sheet's view (`front-<hash>.png` -> front), or the file's name."""
        if self.asset:
            return "saved"
        stem = self.path.stem
        return stem.rsplit("-", 1)[0] if re.fullmatch(r".+-[0-9a-f]{20}", stem) else stem

    def label(self) -> str:
        return f"{self.figure.name} ({self.view})"


@dataclass(frozen=True)
class Fitted:
    """A shot's references fitted to a provider's limit: `sent` in slot order (slot i is `@image_{i+1}`,
    `character{i+1}`...), `dropped` what did not fit (named by `check` and the review, never silent)."""

    sent: tuple[Ref, ...]
    dropped: tuple[Ref, ...]
    limit: int

    def of(self, figure_id: str) -> list[int]:
        """The 1-based slots that show `figure_id`."""
        return [i + 1 for i, r in enumerate(self.sent) if r.figure.id == figure_id]

    def unseen(self) -> list["Figure"]:
        """Figures with references of their own of which none was sent."""
        sent = {r.figure.id for r in self.sent}
        return list({r.figure.id: r.figure for r in self.dropped if r.figure.id not in sent}.values())


def fit_references(figures: tuple["Figure", ...], limit: int, backend: str | None = None) -> Fitted:
    """The references one request carries, by the stated rule: the speaking character first, then
    the others in the shot's order (the planner names the one framed largest first); each character's
    saved asset, then their images in sheet order, taken in turns, so everyone's first reference is in
    before anyone's second. Whatever is past `limit` is dropped, and said so. `backend`: whose saved
    assets count (none for another backend)."""
    order = sorted(figures, key=lambda f: not f.speaking)  # stable: the shot's order otherwise
    queues, seen = [], set()
    for f in order:
        refs = [Ref(f, asset=a) for b, a in f.assets if b == backend] + [Ref(f, path=p) for p in f.references]
        queue = []
        for r in refs:
            key = r.asset or r.path
            if key not in seen:
                seen.add(key)
                queue.append(r)
        queues.append(queue)
    ranked = []
    for turn in range(max((len(q) for q in queues), default=0)):
        ranked += [q[turn] for q in queues if turn < len(q)]
    limit = max(0, limit)
    return Fitted(tuple(ranked[:limit]), tuple(ranked[limit:]), limit)


class IPAdapterOptions(Model):
    """`backends.image.ip_adapter`: an IP-Adapter loaded into a diffusers image pipeline, so every
    on-screen character's sheet conditions each keyframe (and each further view of a sheet)."""

    model: str = Field(..., min_length=1, description="local folder (or hub id) holding the adapter weights")
    subfolder: str = Field("", description="the weights' folder inside it, e.g. sdxl_models")
    weight_name: str = Field(..., min_length=1, description="the weights file, e.g. ip-adapter_sdxl.safetensors")
    image_encoder: str | None = Field(None, description="the CLIP image encoder's folder inside `model`, when the "
                                                        "pipeline has none (diffusers' image_encoder_folder)")
    scale: float = Field(0.6, ge=0, le=2, description="how strongly the references steer the picture")


class ImageOptions(Model):
    """`backends.image`: the image backend for reference sheets and keyframes and its settings (one
    section for the family: each backend reads its own fields)."""

    kind: str = "animatic"
    pipeline: str | None = Field(None, description="diffusers: class name, e.g. FluxPipeline, "
                                                   "StableDiffusionXLPipeline")
    model: str | None = Field(None, description="diffusers: local folder or hub id; openai: image model")
    dtype: Literal["float32", "float16", "bfloat16"] = "bfloat16"
    device: str = "auto"
    steps: int = Field(28, ge=1, le=500)
    guidance: float = Field(3.5, ge=0, le=30)
    base_url: str | None = Field(None, description="openai: any server speaking the images API")
    api_key_env: str = "OPENAI_API_KEY"
    ip_adapter: IPAdapterOptions | None = Field(None, description="diffusers: an IP-Adapter, so keyframes take "
                                                                  "every on-screen character's sheet")

    @model_validator(mode="after")
    def _configured(self) -> "ImageOptions":
        if self.kind == "diffusers" and not (self.pipeline and self.model):
            raise ValueError("image: {kind: diffusers} needs pipeline and model")
        return self


@dataclass(frozen=True)
class SpeechRequest:
    """One line to speak, and every voice setting that shapes the audio.

    `voice` is backend-specific: an OpenAI voice name (`coral`), or a Piper voice file (absolute
    path; `voice_sha` is its content digest, so the cache key survives moving the project).
    """

    text: str
    language: str
    variant: str | None
    pitch: int
    speed_wpm: int
    voice: str | None = None
    voice_sha: str | None = None
    speaker: int | None = None
    speed: float = 1.0
    instructions: str | None = None  # the acting notes as the engine takes them (templates/acting/<name>.j2)
    # A cloned voice: the character's clip (`reference`, an absolute path; `reference_sha` its content, which
    # is what the key counts) and its transcript. `voice_id`: the id its enrollment got, filled in when
    # the line is spoken (the enrollment's key already counts in this line's key through the clip).
    reference: str | None = None
    reference_sha: str | None = None
    reference_text: str | None = None
    voice_id: str | None = None


@dataclass(frozen=True)
class Figure:
    """A character as the backends see them: id, canonical description (this episode's look), and
    their reference sheet (`references`: front, three-quarter, or the user's own images); `assets`:
    ids a provider keeps for them (only the backend it names reads its own)."""

    id: str
    name: str
    description: str
    reference_image: Path | None = None
    speaking: bool = False
    references: tuple[Path, ...] = ()
    assets: tuple[tuple[str, str], ...] = ()  # (backend, the provider's saved id for them), from the cast
    voices: tuple[tuple[str, str], ...] = ()  # (backend, the provider's voice id): only when the model speaks
    voice_clip: Path | None = None  # their reference clip (`voice.reference`): only when the model speaks


@dataclass(frozen=True)
class ShotRequest:
    """Everything a video backend needs to make one shot."""

    shot_id: str
    prompt: str
    size: str
    camera: str
    location: str
    time: str
    action: str
    caption: str
    figures: tuple[Figure, ...]
    duration_s: float
    width: int
    height: int
    fps: int
    seed: int
    style: str = ""
    extra: dict = field(default_factory=dict)
    negative_prompt: str = ""
    motion_prompt: str = ""  # image-to-video: only the motion (the keyframe fixes faces and place)
    keyframe: Path | None = None  # the shot's first frame, for image-to-video backends


@dataclass(frozen=True)
class ImageRequest:
    """One still: a character reference view or a shot's keyframe."""

    purpose: str  # "reference" or "keyframe"
    prompt: str
    width: int
    height: int
    seed: int
    negative_prompt: str = ""
    references: tuple[Path, ...] = ()  # images to stay consistent with (the characters' sheets)
    figures: tuple[Figure, ...] = ()  # for compositing backends (the animatic)
    location: str = ""
    time: str = ""
    size: str = ""  # shot size, for keyframes
    view: str = ""  # "front" / "three-quarter", for references


@runtime_checkable
class ImageBackend(Protocol):
    name: str
    capabilities: Capabilities

    def identity(self) -> dict:
        """What, besides the request, determines the output (model, version)."""

    def generate_image(self, request: ImageRequest, out_png: Path) -> None:
        """Write an RGB PNG of exactly request.width x request.height."""


@runtime_checkable
class SpeechBackend(Protocol):
    name: str
    capabilities: Capabilities

    def identity(self) -> dict:
        """What, besides the request, determines the output (engine version, sample rate)."""

    def synthesize(self, request: SpeechRequest, out_wav: Path) -> None:
        """Write a 16-bit PCM WAV of `request.text` to `out_wav`."""


@runtime_checkable
class TranslationBackend(Protocol):
    name: str
    capabilities: Capabilities

    def identity(self) -> dict:
        """What, besides the lines, determines the output (model, prompt templates)."""

    def calls(self, count: int) -> int:
        """Requests that translating `count` lines takes (what an estimate prices)."""

    def translate(self, lines: list[str], source: str, target: str, context: str,
                  glossary: tuple[tuple[str, str], ...] = ()) -> list[str]:
        """The lines in `target`, same count and order; `context` is the series title and setting;
        `glossary`: (term, its word in `target`) pairs a line that has the term must translate so."""


@dataclass(frozen=True)
class LipSyncRequest:
    """One piece of a shot whose speaker's lips follow `audio`: `video` (H.264, no sound) and `audio`
    (WAV) are exactly `duration_s` long; `start_s` is where the piece starts in its shot, `shot` the
    shot as its video backend was asked (a drawing backend redraws it)."""

    shot_id: str
    character: str
    video: Path
    audio: Path
    duration_s: float
    width: int
    height: int
    fps: int
    start_s: float = 0.0
    shot: ShotRequest | None = None


@runtime_checkable
class LipSyncBackend(Protocol):
    name: str
    capabilities: LipSyncCapabilities

    def identity(self) -> dict:
        """What, besides the video and audio, determines the output (model, options)."""

    def sync(self, request: LipSyncRequest, out_mp4: Path, jobs=None) -> None:
        """Write `request.video` with the speaker's lips moving to `request.audio`: H.264, same size,
        fps and frame count, no sound. A `resumable` backend takes `jobs` (its paid-job journal)."""


@runtime_checkable
class VideoBackend(Protocol):
    name: str
    capabilities: VideoCapabilities

    def identity(self) -> dict:
        """What, besides the request, determines the output (model, version)."""

    def generate(self, request: ShotRequest, out_mp4: Path) -> None:
        """Write an H.264 mp4 of exactly `request.duration_s` at the request's size and fps.

        A backend whose capabilities say `resumable` takes `jobs` (a `_jobs.ShotJobs`) as a keyword too;
        one that `uses` "keyframe" or "references" gets those filled in the request.
        """
