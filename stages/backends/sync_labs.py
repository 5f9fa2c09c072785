"""Sync Labs (sync.so) API v2: the speaker's lips in a piece of video redrawn to follow an audio track,
both sent as files in the create.

Protocol (the official SDK `synchronicity-labs/sync-python-sdk` 0.2.7 [SDK] and the sync.so API
reference [DOC], as gathered in the research notes; nothing here was checked against the live API):
- auth: `x-api-key: <key>` (CONFIRMED [SDK] client_wrapper; the SDK reads SYNC_API_KEY); base
  `https://api.sync.so` (CONFIRMED [SDK] environment).
- create: `POST /v2/generate` as multipart/form-data with the files `video` and `audio` (CONFIRMED
  [SDK] `create_with_files`; [DOC] create-with-files: "the multipart/form-data form of POST
  /v2/generate") and the form fields `model` (CONFIRMED), `options` as a JSON string (CONFIRMED [SDK]:
  nested objects go as JSON strings) whose keys are snake_case, here `sync_mode` (bounce, loop,
  cut_off, silence, remap: CONFIRMED [SDK] SyncMode), and `outputFileName`, our client key (letters,
  digits, `_` and `-`, up to 255: CONFIRMED as a field of the JSON create [SDK CreateGenerationDto];
  that the multipart form takes it too is NOT CONFIRMED: the SDK's create_with_files sends only
  model, input, options and webhookUrl). The answer is the Generation, `{id, status: PENDING, ...}`
  (CONFIRMED [SDK], [DOC] example); whether it is 200 or 201 is NOT CONFIRMED (any 2xx is taken).
- `Idempotency-Key: <our client key>` on the create (CONFIRMED [DOC] guides/idempotency: 1-128
  characters of [A-Za-z0-9._~-], scoped to the organisation, multipart included; a keyed request
  whose outcome is unknown answers 503 IDEMPOTENCY_OUTCOME_UNKNOWN). What a reused key answers and
  how long keys are kept is NOT CONFIRMED; a create is never re-sent here (a lost answer is looked
  up), so the key is a second guard, not the one this file relies on.
- poll: `GET /v2/generate/{id}` (CONFIRMED [SDK]): `status` PENDING, PROCESSING, COMPLETED, FAILED,
  REJECTED (CONFIRMED [SDK] 0.2.5+, [DOC] list); CANCELED and TIMED_OUT come from older SDKs (read,
  NOT CONFIRMED now). The clip: `outputUrl`, a signed URL (CONFIRMED [SDK]), else `outputMediaUrl`
  (NOT CONFIRMED: named only by a third-party page on sync's MCP tools). The reason: `error`, and a
  code in `error_code` ([SDK] Generation, webhooks) or `errorCode` ([DOC] list, delete): both read.
  Which FAILED codes are the request's fault is NOT CONFIRMED beyond the `generation_input_...`
  family the docs name (e.g. generation_input_video_inaccessible); any other is counted as sync's own
  failure (re-created only as limits.recreate_failed_jobs allows).
- lookup: `GET /v2/generations?limit=100` (CONFIRMED [DOC] list: a bare array, newest first with a
  limit, paged by `cursor` = the last id of the previous page), matched by the `outputFileName` a
  generation echoes (CONFIRMED [DOC] get and delete answers; NOT in the SDK's Generation type: a
  listing whose recent generations carry no outputFileName at all cannot tell ours, and the piece
  stops as unknown-job). The listing is the organisation's whole list, so a lost create that is not
  in it once the request must have ended made nothing (`lookup_complete`).
- cancel: none (`POST /v2/generate/{id}/cancel` existed only in SDK 0.0.2 and is gone from the docs).
- errors: `{message, statusCode, errorCode?}`; 400, 401, 402, 404, 409, 413, 422, 429
  (rate_limit_exceeded, concurrency_limit_reached), 500, 503 (CONFIRMED [SDK], [DOC]).
- limits: the longest input and largest picture on a paid plan are NOT CONFIRMED (no number found;
  the free plan stops at 20 s), so none is declared. Billing: per output frame at 25 fps ([DOC]
  billing), lipsync-2 $0.04-0.05 a second.

Not the SDK: its create takes no Idempotency-Key (only as an extra header) and its multipart create
sends no outputFileName, the field a lost create is found by.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from stages.backends._http import AnswerLost
from stages.backends._jobs import Poll
from stages.backends._lipsync import HostedLipSync, LipSyncOptions
from stages.backends.base import (BackendError, LipSyncCapabilities, LipSyncRequest, PermanentError, RejectedError,
                                  TransientError, is_refusal)

LIST_LIMIT = 100  # the listing's largest page
LIST_PAGES = 10  # pages looked through for a lost create before giving up on telling
CLOCK_SLACK_S = 120  # our clock and sync's may differ: a generation this much older than the request may be it
INPUT_FAULT = "generation_input"  # the error-code family of inputs sync cannot use ([DOC] list)

SyncMode = Literal["cut_off", "loop", "bounce", "silence", "remap"]


class SyncLabsOptions(LipSyncOptions):
    """`backends.sync`: a lip-sync model on Sync Labs' API (sync.so; key in SYNC_API_KEY)."""

    model: str = Field("lipsync-2", min_length=1, description="lipsync-2, lipsync-2-pro, sync-3, ...")
    base_url: str = Field("https://api.sync.so", min_length=1, description="the API's address")
    api_key_env: str = Field("SYNC_API_KEY", min_length=1, description="environment variable holding the API key")
    sync_mode: SyncMode = Field("cut_off", description="what sync does where audio and video lengths differ "
                                                       "(dramaforge sends them equal)")
    extra_options: dict = Field(default_factory=dict, description="further keys of the generation's `options`, "
                                                                  "sent as written, e.g. {temperature: 0.5}")

    @model_validator(mode="after")
    def _sync_mode_once(self) -> "SyncLabsOptions":
        if "sync_mode" in self.extra_options:
            raise ValueError("extra_options: set sync_mode as its own setting, not in extra_options")
        return self


def output_name(client_key: str) -> str:
    """Our client key as sync takes an output file name: letters, digits, `_` and `-`, at most 255."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", client_key)[:255]


class SyncLabsBackend(HostedLipSync):
    """LipSyncBackend (resumable, billed) on Sync Labs' generations."""

    name = "sync"
    section = "sync"
    Options = SyncLabsOptions
    limits: ClassVar[LipSyncCapabilities] = LipSyncCapabilities()  # no documented bounds on a paid plan
    label = "Sync Labs"
    keys_at = "the API keys page of your sync.so dashboard"
    lookup_hint = "the generations list of your sync.so dashboard"
    lookup_complete = True  # GET /v2/generations lists every generation of the organisation

    def identity(self) -> dict:
        o = self.options
        return {**super().identity(), "sync_mode": o.sync_mode, "extra_options": o.extra_options}

    def auth_headers(self) -> dict[str, str]:
        return {"x-api-key": self.key()}

    # --- the job protocol -------------------------------------------------------------------------

    def submit(self, request: LipSyncRequest, client_key: str) -> str:
        o, name = self.options, output_name(client_key)
        form = {"model": o.model, "options": json.dumps({"sync_mode": o.sync_mode, **o.extra_options}),
                "outputFileName": name}
        files = {"video": (f"{name}.mp4", request.video.read_bytes(), "video/mp4"),
                 "audio": (f"{name}.wav", request.audio.read_bytes(), "audio/wav")}
        answer = self.http().call_multipart(self.url("/v2/generate"), "creating a generation", data=form, files=files,
                                            headers={**self.auth_headers(), "Idempotency-Key": name})
        generation_id = answer.get("id")
        if not isinstance(generation_id, str) or not generation_id:
            raise AnswerLost(f"{self.what} creating a generation: the answer names no id ({str(answer)[:200]})")
        return generation_id

    def poll(self, job_id: str) -> Poll:
        return self.read(job_id, self.call("GET", f"/v2/generate/{job_id}", f"polling generation {job_id}"))

    def read(self, job_id: str, generation: dict) -> Poll:
        """One Generation object as the job driver sees it."""
        state = generation.get("status")
        if state == "PENDING":
            return Poll("queued")
        if state == "PROCESSING":
            return Poll("running")
        if state == "CANCELED":
            return Poll("gone", detail="sync says the generation was cancelled")
        if state in ("FAILED", "REJECTED", "TIMED_OUT"):
            return Poll("failed", error=self._failure(job_id, state, generation))
        if state != "COMPLETED":
            raise TransientError(f"{self.what}: generation {job_id} has a status this backend does not know: {state!r}")
        url = generation.get("outputUrl") or generation.get("outputMediaUrl")
        if not isinstance(url, str) or not url:
            return Poll("failed", error=PermanentError(f"{self.what}: generation {job_id} completed without an "
                                                       f"outputUrl ({str(generation)[:200]})"))
        return Poll("done", result=url)

    def _failure(self, job_id: str, state: str, generation: dict) -> BackendError:
        code = str(generation.get("errorCode") or generation.get("error_code") or "")
        why = str(generation.get("error") or state.lower().replace("_", " "))
        text = f"{self.what}: generation {job_id} {state}: {why}" + (f" ({code})" if code else "")
        if state == "REJECTED" or is_refusal(code, why):
            return RejectedError(text)
        if code.startswith(INPUT_FAULT):
            return PermanentError(text)  # the piece we sent cannot be used: a new generation would fail too
        return TransientError(text)  # sync's own failure: re-created only as limits.recreate_failed_jobs allows

    def cancel(self, job_id: str) -> None:
        raise PermanentError(f"{self.what}: sync's API has no way to cancel generation {job_id}")

    def lookup(self, client_key: str, request: LipSyncRequest, sent_at: float) -> str | None:
        """The generation whose `outputFileName` is our client key, in the organisation's newest ones
        back to the request; None when it is not there. A listing that cannot tell (its recent items
        carry no outputFileName, or more were made since than it pages through) is an error."""
        name, since, cursor = output_name(client_key), sent_at - CLOCK_SLACK_S, None
        for _ in range(LIST_PAGES):
            query = f"limit={LIST_LIMIT}" + (f"&cursor={cursor}" if cursor else "")
            page = self.http().call("GET", self.url(f"/v2/generations?{query}"), "listing generations",
                                    headers=self.auth_headers(), array=True)
            items = [g for g in page if isinstance(g, dict)]
            recent = [g for g in items if _created(g) is None or _created(g) >= since]
            for g in recent:
                if g.get("outputFileName") in (name, f"{name}.mp4") and g.get("id"):
                    return str(g["id"])
            if any("outputFileName" not in g for g in recent):
                raise PermanentError(f"{self.what}: the generations list shows recent generations without an "
                                     f"outputFileName, so the one this request may have made cannot be told apart")
            if len(page) < LIST_LIMIT or len(recent) < len(items):
                return None  # the list's end, or back past the request's time
            cursor = items[-1].get("id")
            if not cursor:
                raise PermanentError(f"{self.what}: the generations list cannot be paged (its last item has no id)")
        raise PermanentError(f"{self.what}: over {LIST_PAGES * LIST_LIMIT} generations were made since the request "
                             f"was sent; the list was not searched to its time")


def _created(generation: dict) -> float | None:
    """A generation's `createdAt` (ISO 8601) in epoch seconds; None when it is not one."""
    try:
        return datetime.fromisoformat(str(generation.get("createdAt"))).timestamp()
    except ValueError:
        return None
