"""A lip-sync model on fal's queue: by default `fal-ai/sync-lipsync/v2` (Sync Labs' lipsync-2, hosted by
fal). The queue protocol (submit, status, result, cancel, and the Platform API's request list for a
lost submit) is `fal.FalBackend`'s; this file adds the model's input and the lip-sync record.

Protocol (fal's model pages `fal.ai/models/fal-ai/sync-lipsync{,/v2,/v3}/llms.txt`, fal's queue docs
and the `fal_client` source, as gathered in the research notes; nothing was checked against the live
API):
- auth `Authorization: Key $FAL_KEY`; submit `POST https://queue.fal.run/{model id}` with the input
  itself as the body; status, result and cancel under `{owner}/{app}/requests/{id}` without the
  model id's subpath (`/v2`) (all CONFIRMED [DOC] queue docs, [SDK] fal_client `AppId`).
- input: `video_url`, `audio_url` (required), `model` (`lipsync-2` or `lipsync-2-pro` on v2, none on
  v3), `sync_mode` (cut_off, loop, bounce, silence, remap; default cut_off) (CONFIRMED [DOC]
  llms.txt). The media go inline as `data:` URIs (`data:video/mp4;base64,...`,
  `data:audio/wav;base64,...`): fal's docs say its models take data URIs or URLs in general; that
  these endpoints take video and audio that way is NOT CONFIRMED.
- output: `{video: {url, content_type?, file_name?, file_size?}}` (CONFIRMED [DOC] llms.txt).
- limits on duration, size or resolution: NOT CONFIRMED (none documented), so none is declared.
- no idempotency key or client reference (NOT CONFIRMED that none exists): a lost submit is looked
  up in the request list by its exact input, which matches only where fal keeps the `data:` URIs as
  sent (NOT CONFIRMED); otherwise the piece stops as unknown-job.
- pricing ([DOC] llms.txt): v2 $3 per minute of video (lipsync-2-pro about 1.67 times that), v3 $8.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from stages.backends._lipsync import HostedLipSync, LipSyncOptions, media_data_url
from stages.backends.base import LipSyncCapabilities, LipSyncRequest
from stages.backends.fal import FalBackend

FILLED = ("video_url", "audio_url", "model", "sync_mode")  # the input fields this file fills


class FalLipSyncOptions(LipSyncOptions):
    """`backends.fal_lipsync`: a lip-sync model on fal's queue, e.g. `fal-ai/sync-lipsync/v2` (key in FAL_KEY)."""

    model: str = Field("fal-ai/sync-lipsync/v2", pattern=r"^[\w.-]+/[\w.-]+(/[\w.\-]+)*$",
                       description="the model id on fal: fal-ai/sync-lipsync/v2, fal-ai/sync-lipsync/v3, ...")
    base_url: str = Field("https://queue.fal.run", min_length=1, description="fal's queue")
    api_url: str = Field("https://api.fal.ai/v1", description="fal's Platform API (finds a request whose answer "
                                                              "was lost)")
    api_key_env: str = Field("FAL_KEY", min_length=1, description="environment variable holding the API key")
    sync_model: str | None = Field("lipsync-2", description="the model's own `model` input: lipsync-2 or "
                                                            "lipsync-2-pro on v2; null for a model without one (v3)")
    sync_mode: Literal["cut_off", "loop", "bounce", "silence", "remap"] = Field(
        "cut_off", description="what the model does where audio and video lengths differ (dramaforge sends "
                               "them equal)")
    inputs: dict = Field(default_factory=dict, description="further input fields, sent as written")

    @model_validator(mode="after")
    def _fields_free(self) -> "FalLipSyncOptions":
        clash = sorted(set(FILLED) & set(self.inputs))
        if clash:
            raise ValueError(f"inputs {clash} are fields dramaforge fills (sync_model, sync_mode): drop them from "
                             f"inputs")
        return self

    @property
    def queue_url(self) -> str:
        """The queue's address, by the name `fal.FalBackend` reads."""
        return self.base_url


class FalLipSyncBackend(FalBackend, HostedLipSync):
    """LipSyncBackend (resumable, billed) on fal's queue: fal's five job calls (`FalBackend`, first in
    line), the lip-sync record, identity and job driver (`HostedLipSync`)."""

    name = "fal-lipsync"
    section = "fal_lipsync"
    Options = FalLipSyncOptions
    limits: ClassVar[LipSyncCapabilities] = LipSyncCapabilities()  # none documented
    target_hint = "set model to the lip-sync model id on fal, e.g. fal-ai/sync-lipsync/v2"

    def __init__(self, options: FalLipSyncOptions):
        HostedLipSync.__init__(self, options)

    def identity(self) -> dict:
        o = self.options
        return {**HostedLipSync.identity(self), "sync_model": o.sync_model, "sync_mode": o.sync_mode,
                "inputs": o.inputs}

    def model_input(self, request: LipSyncRequest) -> dict:
        """The model's input for one piece, the same every time it is built (a lookup compares it)."""
        o = self.options
        body = {"video_url": media_data_url(request.video, "video/mp4"),
                "audio_url": media_data_url(request.audio, "audio/wav")}
        if o.sync_model is not None:
            body["model"] = o.sync_model
        return {**body, "sync_mode": o.sync_mode, **o.inputs}

    def same_input(self, ours: dict, theirs) -> bool:
        """Only the exact input: the piece's media are all that tell one piece's request from another's."""
        return ours == theirs
