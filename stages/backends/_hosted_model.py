"""What the gateway backends (fal, Replicate) share: one model's input fields from project.yaml, and
the capability record and prices they imply.

A gateway hosts many models (Kling, Veo, Wan, Seedance, Hailuo, PixVerse, LTX), each naming its
fields its own way: `fields` says which input gets the prompt, the keyframe, the reference images,
the clip length (and in what form), the ratio, the negative prompt and the seed; `inputs` are sent
as written (resolution, audio, model switches). The request is built the same way every time, so
a lost request can be recognised by its input.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

import os
from pathlib import Path

from stages.backends._http import Http
from stages.backends._jobs import HostedVideoBackend, data_url
from stages.backends.base import PermanentError, ShotRequest, VideoCapabilities, fit_references
from stages.core.model import Model


class Fields(Model):
    """Which input field of the model gets what (null: the model has no such field; not sent)."""

    prompt: str = "prompt"
    image: str | None = Field("image_url", description="the shot's keyframe (its first frame)")
    references: str | None = Field(None, description="a list of the characters' reference images")
    duration: str | None = "duration"
    aspect_ratio: str | None = "aspect_ratio"
    negative_prompt: str | None = "negative_prompt"
    seed: str | None = "seed"
    resolution: str | None = "resolution"


class ModelOptions(Model):
    """The model-facing half of `backends.fal` and `backends.replicate`."""

    fields: Fields = Field(default_factory=Fields)
    inputs: dict = Field(default_factory=dict, description="sent as written with every request, e.g. "
                                                           "{resolution: 720p, generate_audio: false}")
    durations: list[float] = Field(default_factory=lambda: [5.0, 10.0], min_length=1,
                                   description="clip lengths the model offers, in seconds (it bills what it makes)")
    duration_as: Literal["string", "seconds", "integer"] = Field(
        "string", description='how the model takes a length: "5", "5s" or 5')
    aspect_ratio: str = Field("9:16", pattern=r"^\d+:\d+$")
    resolution: str | None = Field(None, description='what the model makes, e.g. "720p" (sent in fields.resolution; '
                                                     'rates may price it: rates.video.<backend>.cost_per_second_at)')
    max_references: int = Field(4, ge=0, le=9, description="reference images one request may carry")
    with_audio: bool = Field(False, description="the model makes sound too (billed as such; dramaforge mixes "
                                                "its own, so the clip's sound is dropped)")
    poll_s: float = Field(5, gt=0, le=300)
    request_timeout_s: float = Field(60, gt=0, le=600, description="wait this long for one answer (a submit that "
                                                                   "times out is looked up, never re-sent)")
    timeout_s: float = Field(3600, gt=0, description="give up waiting on one job after this long (it stays "
                                                    "recorded: the next run resumes it)")

    @model_validator(mode="after")
    def _fields_free(self) -> "ModelOptions":
        named = {v for v in self.fields.model_dump().values() if v}
        clash = named & set(self.inputs)
        if clash:
            raise ValueError(f"inputs {sorted(clash)} are also fields dramaforge fills: drop them from inputs")
        return self


def capabilities(o: ModelOptions) -> VideoCapabilities:
    f = o.fields
    uses = {k for k, field in (("keyframe", f.image), ("references", f.references)) if field}
    modes = {"text"} | ({"image"} if f.image else set()) | ({"reference"} if f.references else set())
    return VideoCapabilities(uses=frozenset(uses), ignores=frozenset({"keyframe", "references"} - uses),
                             billed=True, resumable=True, concurrency=4, pool="api", modes=frozenset(modes),
                             max_references=o.max_references if f.references else 0,
                             durations_s=tuple(sorted(set(o.durations))), aspect_ratios=(o.aspect_ratio,),
                             native_audio=o.with_audio, resolution=o.resolution)


def model_input(o: ModelOptions, request: ShotRequest, seconds: float, image_url) -> dict:
    """The model's input for one shot (`image_url(path)` makes a file an URL the provider takes)."""
    f = o.fields
    body = dict(o.inputs)
    start = request.keyframe if f.image else None
    body[f.prompt] = (request.motion_prompt or request.prompt) if start is not None else request.prompt
    if start is not None:
        body[f.image] = image_url(start)
    refs = references(o, request)
    if refs:
        body[f.references] = [image_url(p) for p in refs]
    if f.duration:
        s = int(seconds) if float(seconds).is_integer() else seconds
        body[f.duration] = {"string": str(s), "seconds": f"{s}s", "integer": s}[o.duration_as]
    if f.aspect_ratio:
        body[f.aspect_ratio] = o.aspect_ratio
    if f.negative_prompt and request.negative_prompt:
        body[f.negative_prompt] = request.negative_prompt
    if f.seed:
        body[f.seed] = request.seed
    if f.resolution and o.resolution:
        body[f.resolution] = o.resolution
    return body


def references(o: ModelOptions, request: ShotRequest) -> list:
    """The reference images a request carries, fitted to `max_references` by the stated rule
    (`base.fit_references`: the speaker first; everyone's first image before anyone's second)."""
    if not o.fields.references:
        return []
    return [r.path for r in fit_references(request.figures, o.max_references).sent]


def same_input(o: ModelOptions, ours: dict, theirs) -> bool:
    """Whether a provider's record of a request is ours: every field equal but the images (a provider
    may keep a file's URL in place of the data we sent); prompt and seed make a shot's input unique."""
    if not isinstance(theirs, dict):
        return False
    files = {o.fields.image, o.fields.references} - {None}
    return {k: v for k, v in ours.items() if k not in files} == {k: v for k, v in theirs.items() if k not in files}


class GatewayBackend(HostedVideoBackend):
    """A gateway hosting many models (fal, Replicate): one of them, named in project.yaml, its key
    from the environment; the provider file adds its protocol's five calls."""

    label: str  # the provider as people name it
    auth: str  # the Authorization scheme: "Key" or "Bearer"
    keys_at: str  # where a user makes a key
    target_hint: str  # how to name the model in project.yaml

    def __init__(self, options: ModelOptions):
        self.options = options
        self.capabilities = capabilities(options)
        self._http: Http | None = None

    def target(self) -> str | None:
        """The model (or version, or deployment) the jobs go to."""
        return self.options.model

    def identity(self) -> dict:
        o = self.options
        return {"engine": self.name, "target": self.target(), "inputs": o.inputs, "fields": o.fields.model_dump(),
                "duration_as": o.duration_as, "aspect_ratio": o.aspect_ratio, "resolution": o.resolution}

    @property
    def what(self) -> str:
        return f"{self.name} ({self.target()})"

    def provider(self) -> str:
        return f"{self.target()} on {self.label}"

    def missing(self, *, keys: bool = True) -> list[tuple[str, str]]:
        env, out = self.options.api_key_env, []
        if self.target() is None:
            out.append((f"backends.{self.section} names no model", self.target_hint))
        if keys and not os.environ.get(env):
            out.append((f"{self.label} needs an API key in ${env}", f"export {env}=... ({self.keys_at})"))
        return out

    def http(self) -> Http:
        if self._http is None:
            o = self.options
            for problem, fix in self.missing():
                raise PermanentError(f"{problem}: {fix}")
            self._http = Http({"Authorization": f"{self.auth} {os.environ[o.api_key_env]}"}, what=self.what,
                              key_env=o.api_key_env, timeout_s=o.request_timeout_s)
        return self._http

    def model_input(self, request: ShotRequest) -> dict:
        """The model's input for one shot, the same every time it is built (a lookup compares it)."""
        return model_input(self.options, request, self.billed_seconds(request), self.image_url)

    def image_url(self, path: Path) -> str:
        """An image as the provider takes it in an input: a `data:` URL."""
        return data_url(path)
