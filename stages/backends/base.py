"""The small Protocols every backend implements, and the three error classes they raise.

Flows decide what to retry from the class alone: TransientError is retried with backoff,
RejectedError and PermanentError are recorded and never looped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable


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
    instructions: str | None = None  # delivery direction for models that take it (parenthetical, notes)


@dataclass(frozen=True)
class Figure:
    """A character as the backends see them: id, canonical description (this episode's look), and
    their reference sheet (`references`: front, three-quarter, or the user's own images)."""

    id: str
    name: str
    description: str
    reference_image: Path | None = None
    speaking: bool = False
    references: tuple[Path, ...] = ()


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


class JobStore(Protocol):
    """Where a hosted backend records its provider job id before polling, so a restarted render
    resumes the same job instead of paying for a new one (backed by the ledger)."""

    def get(self) -> str | None: ...

    def put(self, job_id: str | None) -> None: ...


@runtime_checkable
class ImageBackend(Protocol):
    name: str

    def identity(self) -> dict:
        """What, besides the request, determines the output (model, version)."""

    def generate_image(self, request: ImageRequest, out_png: Path) -> None:
        """Write an RGB PNG of exactly request.width x request.height."""


@runtime_checkable
class SpeechBackend(Protocol):
    name: str

    def identity(self) -> dict:
        """What, besides the request, determines the output (engine version, sample rate)."""

    def synthesize(self, request: SpeechRequest, out_wav: Path) -> None:
        """Write a 16-bit PCM WAV of `request.text` to `out_wav`."""


@runtime_checkable
class TranslationBackend(Protocol):
    name: str

    def identity(self) -> dict:
        """What, besides the lines, determines the output (model, prompt templates)."""

    def translate(self, lines: list[str], source: str, target: str, context: str) -> list[str]:
        """The lines in `target`, same count and order; `context` is the series title and setting."""


@runtime_checkable
class VideoBackend(Protocol):
    name: str
    concurrency: int  # shots it can make at once in one process (a local GPU model: 1)

    def identity(self) -> dict:
        """What, besides the request, determines the output (model, version)."""

    def generate(self, request: ShotRequest, out_mp4: Path) -> None:
        """Write an H.264 mp4 of exactly `request.duration_s` at the request's size and fps.

        A backend with `resumable = True` takes `jobs: JobStore` as a keyword argument too.
        A backend with `uses = {"keyframe"}` or `{"references"}` gets those filled in the request.
        A backend with `billed = True` (any backend, any kind) calls a server that may charge, so
        its cost is unknown to estimates until the project's `rates` name it.
        """
