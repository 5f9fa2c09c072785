"""`rates:` in project.yaml: what each backend costs and how long it takes, for estimates, dry runs
and `--max-cost` (never part of an artifact's key)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stages.backends import registry
from stages.core.model import Model


def _literal(names):
    return Literal[tuple(names)]


class VideoRate(Model):
    """What one video backend costs and how long it takes (for estimates; never part of a key)."""

    cost_per_second: float = Field(0, ge=0, description="price per second of video the backend asks for (after "
                                                         "its rounding to the clip lengths it offers)")
    cost_per_shot: float = Field(0, ge=0, description="price per request (per paid job), on top")
    cost_per_reference: float = Field(0, ge=0, description="price per image a request sends (keyframe, "
                                                           "reference sheets), on top")
    cost_per_second_at: dict[str, float] = Field(
        default_factory=dict, description="per-second price by the resolution the backend makes (its "
        "`resolution`), instead of cost_per_second, e.g. {720p: 0.20, 4k: 0.40}")
    audio_cost_per_second: float = Field(0, ge=0, description="added per second when the model makes sound too "
                                                              "(the backend's with_audio)")
    seconds_per_shot: float | None = Field(None, ge=0, description="wall time to make one shot")
    seconds_per_second: float | None = Field(None, ge=0, description="wall time per second of video made "
                                                                      "(instead of seconds_per_shot)")


class SpeechRate(Model):
    """What one speech engine costs and how long it takes."""

    cost_per_1k_chars: float = Field(0, ge=0, description="price per 1,000 characters of text spoken")
    cost_per_minute: float = Field(0, ge=0, description="price per minute of audio made (estimated from "
                                                        "the text before it is spoken)")
    cost_per_line: float = Field(0, ge=0, description="price per request")
    cost_per_1k_bytes: float = Field(0, ge=0, description="price per 1,000 UTF-8 bytes of text (Fish Audio bills "
                                                          "bytes: a Chinese character is 3)")
    cost_per_voice: float = Field(0, ge=0, description="price of enrolling one cloned voice (once per reference "
                                                       "clip and account)")
    seconds_per_line: float | None = Field(None, ge=0, description="wall time to speak one line")


class ImageRate(Model):
    """What one image backend costs (reference sheets and keyframes) and how long it takes."""

    cost_per_image: float = Field(0, ge=0)
    seconds_per_image: float | None = Field(None, ge=0)


class TextRate(Model):
    """What one chat call costs (shot planning by an LLM, a batch of subtitle translation)."""

    cost_per_call: float = Field(0, ge=0)
    seconds_per_call: float | None = Field(None, ge=0)


class LipSyncRate(Model):
    """`rates.lipsync.<backend>`: what a lip-sync backend charges and how long it takes."""

    cost_per_second: float = Field(0, ge=0, description="price per second of video sent to be synced")
    cost_per_job: float = Field(0, ge=0, description="price per request, on top")
    seconds_per_second: float | None = Field(None, ge=0, description="wall time per second synced")


class Rates(Model):
    """Per-backend prices and speeds for `dramaforge estimate`, `render --dry-run` and `--max-cost`.

    Keys are backend names as written in `backends`. A hosted backend without a rate has an
    unknown cost (and `--max-cost` refuses it); local ones cost nothing. A time without a rate
    comes from what this project's ledger measured. Rates are never part of an artifact's key.
    """

    currency: str = Field("USD", min_length=1, max_length=8, description="shown beside every amount")
    video: dict[_literal(registry.VIDEO), VideoRate] = Field(default_factory=dict)
    speech: dict[_literal(registry.SPEECH), SpeechRate] = Field(default_factory=dict)
    image: dict[_literal(registry.IMAGE), ImageRate] = Field(default_factory=dict)
    lipsync: dict[_literal(registry.LIPSYNC), LipSyncRate] = Field(default_factory=dict)
    text: dict[Literal["planner", "translation"], TextRate] = Field(
        default_factory=dict, description="planner: one LLM planning call per episode; translation: "
                                          "one call per 60 subtitle lines")
