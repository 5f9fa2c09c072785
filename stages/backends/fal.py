"""fal's queue API: one backend for every video model fal hosts (Kling, Veo 3.1, Wan, Seedance,
Hailuo, PixVerse, LTX); the model id and its input fields come from project.yaml.

Protocol (fal's docs, docs.fal.ai/model-endpoints/queue): `POST {queue}/{model_id}` with the model's
input as the body -> `request_id`; `GET {queue}/{app}/requests/{id}/status` -> IN_QUEUE, IN_PROGRESS,
COMPLETED (a failed request is COMPLETED with `error` and `error_type`); `GET {queue}/{app}/requests/{id}`
-> the model's output (`video.url`); `PUT .../cancel`. `{app}` is the model id without its subpath
(`fal-ai/kling-video/v2.1/standard/image-to-video` -> `fal-ai/kling-video`). Auth: `Authorization: Key
$FAL_KEY`. The queue documents no idempotency key; a request whose answer was lost is looked up in the
Platform API's request list (`GET {api}/models/requests/by-endpoint`, matched by its exact input).
Images go as `data:` URLs inside the input (fal's docs: models accept data URIs or URLs).

Not fal's Python client: fal-client 1.0.3 re-sends a submit after a read timeout or a dropped
connection (up to 10 times), which can make a second paid job; 0.5.9 has no base URL (tests) and
cannot take a custom header. Both pin `httpx<1` beside our httpx2.
"""

from __future__ import annotations

import time
import urllib.parse
from pathlib import Path

from pydantic import Field

from stages.backends import _hosted_model as hosted
from stages.backends._http import AnswerLost, NotFound
from stages.backends._jobs import Poll
from stages.backends.base import BackendError, PermanentError, RejectedError, ShotRequest, TransientError, is_refusal
from stages.core.trust import join_url

# fal's infrastructure error types (docs: model-apis/request-errors): the job, not the request, failed
_INFRA = {"request_timeout", "startup_timeout", "runner_scheduling_failure", "runner_connection_timeout",
          "runner_disconnected", "runner_connection_refused", "runner_connection_error", "runner_server_error",
          "internal_error", "server_error"}


class FalOptions(hosted.ModelOptions):
    """`backends.fal`: a video model on fal's queue, e.g. `fal-ai/kling-video/v2.1/standard/image-to-video`."""

    model: str | None = Field(None, pattern=r"^[\w.-]+/[\w.-]+(/[\w.\-]+)*$", description="the model id on fal")
    queue_url: str = "https://queue.fal.run"
    api_url: str = Field("https://api.fal.ai/v1", description="fal's Platform API (finds a request whose "
                                                               "answer was lost)")
    api_key_env: str = "FAL_KEY"


class FalBackend(hosted.GatewayBackend):
    """VideoBackend (resumable, billed) on fal's queue."""

    name = "fal"
    section = "fal"
    Options = FalOptions
    lookup_hint = "https://fal.ai/dashboard/requests"
    label, auth, keys_at = "fal", "Key", "https://fal.ai/dashboard/keys"
    target_hint = "set model to the model id on fal, e.g. fal-ai/kling-video/v2.1/standard/image-to-video"

    def _app(self) -> str:
        """The model id without its subpath: fal's status, result and cancel URLs use only owner/app."""
        parts = self.options.model.split("/")
        keep = 3 if parts[0] in ("workflows", "comfy") else 2
        return "/".join(parts[:keep])

    def _request_url(self, job_id: str, tail: str = "") -> str:
        return join_url(self.options.queue_url, f"{self._app()}/requests/{job_id}{tail}")

    # --- the job protocol -------------------------------------------------------------------------

    def submit(self, request: ShotRequest, client_key: str) -> str:
        body = self.model_input(request)
        http = self.http()
        answer = http.call("POST", join_url(self.options.queue_url, self.options.model), "submitting a job",
                           body=body)
        job_id = answer.get("request_id")
        if not isinstance(job_id, str) or not job_id:
            raise AnswerLost(f"{self.what} submitting a job: the answer names no request_id ({str(answer)[:120]})")
        return job_id

    def poll(self, job_id: str) -> Poll:
        http = self.http()
        status = http.call("GET", self._request_url(job_id, "/status"), f"polling request {job_id}")
        state = status.get("status")
        if state == "IN_QUEUE":
            return Poll("queued", detail=f"queue position {status.get('queue_position')}")
        if state == "IN_PROGRESS":
            return Poll("running")
        if state in ("CANCELED", "CANCELLED"):  # not in fal's docs; seen in schemas elsewhere
            return Poll("gone", detail=f"request {state.lower()}")
        if state == "FAILED":
            why = status.get("error") or "failed"
            return Poll("failed", error=self._failure(job_id, why, status.get("error_type")))
        if state != "COMPLETED":
            raise TransientError(f"{self.what}: request {job_id} has a status this backend does not know: {state!r}")
        if status.get("error") and "cancel" in str(status.get("error_type") or "").lower():
            return Poll("gone", detail=f"cancelled: {status.get('error')}")  # fal lists no CANCELED state
        if status.get("error"):
            return Poll("failed", error=self._failure(job_id, status.get("error"), status.get("error_type")))
        try:
            result = http.call("GET", self._request_url(job_id), f"fetching the result of request {job_id}")
        except (RejectedError, PermanentError) as exc:  # the model's own error, answered as the result (its docs)
            if isinstance(exc, NotFound):
                raise
            return Poll("failed", error=exc)
        except AnswerLost as exc:  # a 5xx: fal's proxy (retried), or the request's own failure (marked by fal)
            kind = getattr(exc, "headers", {}).get("x-fal-error-type")
            if kind:
                return Poll("failed", error=self._failure(job_id, str(exc), kind))
            raise
        video = result.get("video")
        url = video.get("url") if isinstance(video, dict) else None
        if not isinstance(url, str) or not url:
            return Poll("failed", error=PermanentError(f"{self.what}: request {job_id} finished without a video "
                                                       f"(its output: {str(result)[:200]})"))
        return Poll("done", result=url)

    def _failure(self, job_id: str, error, error_type) -> BackendError:
        text = f"{self.what}: request {job_id} failed: {error}" + (f" ({error_type})" if error_type else "")
        if is_refusal(error_type, str(error)):
            return RejectedError(text)
        if (error_type or "").lower() in _INFRA:
            return TransientError(text)  # fal's side: re-created only as limits.recreate_failed_jobs allows
        return PermanentError(text)

    def fetch(self, job_id: str, poll: Poll, out: Path) -> None:
        self.http().download(poll.result, out, f"downloading the video of request {job_id}")

    def cancel(self, job_id: str) -> None:
        self.http().call("PUT", self._request_url(job_id, "/cancel"), f"cancelling request {job_id}")

    def lookup(self, client_key: str, request: ShotRequest, sent_at: float) -> str | None:
        """The request fal logged with exactly this input since just before it was sent."""
        body = self.model_input(request)
        start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sent_at - 120))
        query = urllib.parse.urlencode({"endpoint_id": self.options.model, "start": start, "limit": 100})
        listing = self.http().call("GET", join_url(self.options.api_url, f"models/requests/by-endpoint?{query}"),
                                   "listing recent requests")
        for item in listing.get("items") or []:
            if isinstance(item, dict) and self.same_input(body, item.get("json_input")) and item.get("request_id"):
                return str(item["request_id"])
        return None

    def same_input(self, ours: dict, theirs) -> bool:
        """Whether fal's record of a request's input is ours (see `_hosted_model.same_input`)."""
        return hosted.same_input(self.options, ours, theirs)
