"""What the direct provider backends share (Kling, Seedance, Wan on DashScope, Veo, Runway, MiniMax,
Vidu, PixVerse, Grok Imagine): options checked against the provider's limits once, at the edge; the
key from the environment; every on-screen character's references fitted to the provider's limit
(`base.fit_references`) and named in the prompt by the backend's own Jinja macro
(`templates/references/<name>.j2`); uploads made once per file and account (`core.jobs.Uploads`).

A provider file adds its protocol: `submit`, `poll`, `fetch`, `cancel` (and `lookup` where the
provider can find a job by what was sent); `run_job` (`_jobs.py`) owns every rule about money.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from stages.backends._http import AnswerLost, Http
from stages.backends._jobs import HostedVideoBackend, data_url, run_job
from stages.backends.base import (Fitted, PermanentError, ShotRequest, TransientError, VideoCapabilities,
                                  fit_references, requested_seconds)
from stages.core.model import Model
from stages.core.trust import join_url


@dataclass(frozen=True)
class Limits:
    """What a provider's API takes, from its docs: the bounds project.yaml is checked against."""

    modes: frozenset[str]  # text, image (from the shot's keyframe), reference (the characters' images)
    max_references: int  # reference images one request may carry (saved assets share the slots)
    durations_s: tuple[float, ...]  # clip lengths it makes, in seconds
    aspect_ratios: tuple[str, ...]
    audio: bool = False  # it can make sound with the picture
    resolutions: tuple[str, ...] = ()  # what `resolution` may be (empty: not asked for)
    default_durations_s: tuple[float, ...] | None = None  # the model's lengths when project.yaml names none


class DirectOptions(Model):
    """`backends.<provider>`: one model of a provider's own API. Each provider's file sets the defaults."""

    LIMITS: ClassVar[Limits]

    model: str = Field(..., min_length=1, description="the provider's model id")
    mode: Literal["text", "image", "reference"] = Field(
        "reference", description="reference: every on-screen character's images go with the prompt; image: "
                                 "starts from the shot's keyframe; text: the prompt alone")
    base_url: str = Field(..., description="the API's address (a region's host, a workspace's, or a test server)")
    api_key_env: str = Field(..., description="the environment variable holding the key")
    aspect_ratio: str = Field("9:16", pattern=r"^\d+:\d+$")
    durations: list[float] | None = Field(None, description="clip lengths to ask for (default: the model's)")
    resolution: str | None = Field(None, description="what the model makes, as the provider bills it, e.g. 720p")
    audio: bool = Field(False, description="ask for the model's own sound (billed as such; dramaforge mixes its "
                                           "own, so the clip's sound is dropped)")
    max_references: int | None = Field(None, ge=0, description="at most this many references per request "
                                                                 "(default: the provider's limit)")
    inputs: dict = Field(default_factory=dict, description="further fields sent as written with every request")
    poll_s: float = Field(5, gt=0, le=300)
    request_timeout_s: float = Field(60, gt=0, le=600, description="wait this long for one answer (a submit "
                                                                   "that times out is never re-sent)")
    timeout_s: float = Field(3600, gt=0, description="give up waiting on one job after this long (it stays "
                                                    "recorded: the next run resumes it)")

    @model_validator(mode="after")
    def _within_limits(self) -> "DirectOptions":
        lim = self.LIMITS
        if self.mode not in lim.modes:
            raise ValueError(f"mode {self.mode!r} is not offered (modes: {', '.join(sorted(lim.modes))})")
        if self.aspect_ratio not in lim.aspect_ratios:
            raise ValueError(f"aspect_ratio {self.aspect_ratio!r} is not offered ({', '.join(lim.aspect_ratios)})")
        bad = [d for d in self.durations or () if d not in lim.durations_s]
        if bad:
            raise ValueError(f"durations {bad} are not offered (seconds: {', '.join(f'{d:g}' for d in lim.durations_s)})")
        if self.max_references is not None and self.max_references > lim.max_references:
            raise ValueError(f"max_references {self.max_references} is over the provider's {lim.max_references}")
        if self.audio and not lim.audio:
            raise ValueError("audio: this provider makes no sound")
        if self.resolution is not None and lim.resolutions and self.resolution not in lim.resolutions:
            raise ValueError(f"resolution {self.resolution!r} is not offered ({', '.join(lim.resolutions)})")
        return self

    def clip_lengths(self) -> tuple[float, ...]:
        lim = self.LIMITS
        return tuple(sorted(set(self.durations or lim.default_durations_s or lim.durations_s)))


def capabilities(o: DirectOptions) -> VideoCapabilities:
    """The capability record a direct backend's options imply."""
    uses = {"text": frozenset(), "image": frozenset({"keyframe"}), "reference": frozenset({"references"})}[o.mode]
    limit = o.LIMITS.max_references if o.max_references is None else o.max_references
    return VideoCapabilities(uses=uses, ignores=frozenset({"keyframe", "references"} - uses), billed=True,
                             resumable=True, concurrency=4, pool="api", modes=o.LIMITS.modes,
                             max_references=limit if o.mode == "reference" else 0, durations_s=o.clip_lengths(),
                             aspect_ratios=(o.aspect_ratio,), native_audio=o.audio, resolution=o.resolution)


@dataclass(frozen=True)
class Slot:
    """One reference as a template sees it: its slot (1-based, in the order sent), its place among
    references of its kind (`nth`: images and saved assets are numbered apart), whose it is and what
    it shows."""

    slot: int
    nth: int
    id: str
    name: str
    view: str
    asset: str | None
    speaking: bool


class DirectBackend(HostedVideoBackend):
    """A provider's own API, one model, its key from the environment."""

    Options: ClassVar[type[DirectOptions]]
    label: ClassVar[str]  # the provider as people name it
    keys_at: ClassVar[str]  # where a user makes a key
    version: ClassVar[int] = 1  # the request's shape: a change that alters clips bumps it
    sends_uploads: ClassVar[bool] = False  # images go through the provider's upload step, not inline

    def __init__(self, options: DirectOptions):
        self.options = options
        self.capabilities = replace(capabilities(options), uploads=self.sends_uploads)
        self._http: Http | None = None
        self._uploads = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {"options": self.options}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["options"])

    # --- who and where ------------------------------------------------------------------------

    @property
    def what(self) -> str:
        return f"{self.name} ({self.options.model})"

    def provider(self) -> str:
        return f"{self.options.model} on {self.label}"

    def identity(self) -> dict:
        o = self.options
        return {"engine": self.name, "version": self.version, "model": o.model, "mode": o.mode,
                "aspect_ratio": o.aspect_ratio, "resolution": o.resolution, "audio": o.audio, "inputs": o.inputs,
                "max_references": self.capabilities.max_references}

    def missing(self, *, keys: bool = True) -> list[tuple[str, str]]:
        env = self.options.api_key_env
        if keys and not self.key():
            return [(f"{self.label} needs an API key in ${env}", f"export {env}=... ({self.keys_at})")]
        return []

    def key(self) -> str:
        return os.environ.get(self.options.api_key_env, "")

    def account(self) -> str:
        """Who uploads belong to: the API's address and key, hashed (the key is never stored)."""
        return hashlib.sha256(f"{self.options.base_url}\n{self.key()}".encode()).hexdigest()[:20]

    # --- HTTP -----------------------------------------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        """The headers that prove who we are, made for each request (a signed token expires)."""
        return {"Authorization": f"Bearer {self.key()}"}

    def http(self) -> Http:
        if self._http is None:
            for problem, fix in self.missing():
                raise PermanentError(f"{problem}: {fix}")
            self._http = Http({}, what=self.what, key_env=self.options.api_key_env,
                              timeout_s=self.options.request_timeout_s)
        return self._http

    def url(self, path: str) -> str:
        return join_url(self.options.base_url, path)

    def call(self, method: str, path: str, doing: str, *, body: dict | None = None,
             headers: dict[str, str] | None = None) -> dict:
        """One JSON request to the provider's API, signed."""
        return self.http().call(method, self.url(path), doing, body=body,
                                headers={**self.auth_headers(), **(headers or {})})

    # --- what a request carries --------------------------------------------------------------

    def billed_seconds(self, request: ShotRequest) -> float:
        return requested_seconds(self.capabilities, request.duration_s, request.fps)

    def seconds(self, request: ShotRequest) -> int | float:
        """The clip length to ask for, as a number (an integer where it is whole)."""
        s = self.billed_seconds(request)
        return int(s) if float(s).is_integer() else s

    def fitted(self, request: ShotRequest) -> Fitted:
        """The references this request carries, and what did not fit (see `fit_references`)."""
        if "references" not in self.capabilities.uses:
            return Fitted((), (), 0)
        return fit_references(request.figures, self.capabilities.max_references, self.name)

    def start_frame(self, request: ShotRequest) -> Path | None:
        return request.keyframe if "keyframe" in self.capabilities.uses else None

    def prompt(self, request: ShotRequest, fitted: Fitted | None = None) -> str:
        """The prompt as this provider reads it: from a keyframe, only the motion; with references,
        the shot's prompt with the references named in the provider's syntax (its macro)."""
        from stages.core.prompts import render_template

        if self.start_frame(request) is not None:
            return request.motion_prompt or request.prompt
        fitted = fitted if fitted is not None else self.fitted(request)
        slots, kinds = [], {}
        for i, r in enumerate(fitted.sent):
            kind = r.asset is not None
            kinds[kind] = kinds.get(kind, 0) + 1
            slots.append(Slot(i + 1, kinds[kind], r.figure.id, r.figure.name, r.view, r.asset, r.figure.speaking))
        return render_template(f"references/{self.name}.j2", prompt=request.prompt, refs=slots,
                               **self.template_context())

    def template_context(self) -> dict:
        """Anything more the backend's reference macro needs (the model's syntax)."""
        return {}

    def image_data(self, path: Path) -> str:
        """An image as a `data:` URL (JPEG, at most 1280 px a side)."""
        return data_url(path)

    def uploaded(self, path: Path, upload, *, ttl_s: float | None = None) -> str:
        """The provider's reference for `path`: made by `upload(path)` once per file and account, then
        reused from the ledger's `uploads` table (a reference that expires is made again)."""
        from stages.core.artifacts import file_sha256

        digest = file_sha256(path)
        uploads = self._uploads
        if uploads is not None:
            ref = uploads.get(self.account(), digest)
            if ref is not None:
                return ref
        try:
            ref = upload(path)
        except AnswerLost as exc:  # an upload makes no job: worth a retry, never a lookup of a paid request
            raise TransientError(f"{self.what}: uploading {path.name} failed: {exc}",
                                 retry_after_s=exc.retry_after_s) from None
        if uploads is not None:
            uploads.put(self.account(), digest, ref, ttl_s=ttl_s)
        return ref

    def uploads_for(self, request: ShotRequest) -> list[Path]:
        """The files a request would upload first (for the estimate); none where images go inline."""
        if not self.capabilities.uploads:
            return []
        start = self.start_frame(request)
        return ([start] if start else []) + [r.path for r in self.fitted(request).sent if r.path is not None]

    def fetch(self, job_id: str, poll, out: Path) -> None:
        """Download the finished job's clip from the URL its poll gave (a provider with its own download
        step overrides this)."""
        self.http().download(poll.result, out, f"downloading the video of job {job_id}")

    def generate(self, request: ShotRequest, out_mp4: Path, jobs) -> None:
        from stages.core.jobs import Uploads

        with self._lock:
            if self._uploads is None or self._uploads.ledger.path != jobs.journal.ledger.path:
                self._uploads = Uploads(jobs.journal.ledger)
        run_job(self, request, out_mp4, jobs)


def extension_of(path: Path) -> str:
    return path.suffix.lower().lstrip(".") or "png"
