"""Replicate's predictions API: one backend for any video model (or deployment) on Replicate; the model
and its input fields come from project.yaml.

Protocol (Replicate's OpenAPI spec, api.replicate.com/openapi.json): `POST /v1/models/{owner}/{name}/
predictions` (an official model), `POST /v1/predictions` with `version`, or `POST /v1/deployments/
{owner}/{name}/predictions`, body `{"input": ...}`, no `Prefer: wait` (the answer comes at once, 201 or
202, status `starting`) -> the prediction `id`; `GET /v1/predictions/{id}` until `succeeded` (`output`:
the video URL), `failed` (`error`), `canceled` or `aborted`; `POST /v1/predictions/{id}/cancel`. Auth:
`Authorization: Bearer $REPLICATE_API_TOKEN`. No idempotency key exists; a prediction whose create
answer was lost is found by listing `GET /v1/predictions?created_after=...` (full objects, input
included, newest first) and matching the exact input. Inputs and outputs are deleted an hour after a
prediction ends, so the clip is downloaded as soon as it succeeds. Images up to 256 KB go as `data:`
URLs, larger ones through `POST /v1/files` (the spec's limit for data URLs).

Not the `replicate` package: 1.0.7 fails to parse a prediction whose status is `aborted` (pydantic
`Literal`), drops fields it does not know, and pins `httpx<1` beside our httpx2; its transport never
re-sends a POST, so it would be safe, but the plain protocol is as short and covers `aborted`.
"""

from __future__ import annotations

import base64
import time
import urllib.parse
from pathlib import Path

from pydantic import Field, model_validator

from stages.backends import _hosted_model as hosted
from stages.backends._http import AnswerLost
from stages.backends._jobs import Poll, data_url
from stages.backends.base import BackendError, PermanentError, RejectedError, ShotRequest, TransientError, is_refusal
from stages.core.trust import join_url

DATA_URL_LIMIT = 256 * 1024  # the spec: data URLs for files up to 256 KB, else an uploaded file's URL
_LOOKUP_PAGES = 5


class ReplicateOptions(hosted.ModelOptions):
    """`backends.replicate`: one of `model` (an official model, `owner/name`), `version` (a version id, or
    `owner/name:id`) or `deployment` (`owner/name`)."""

    model: str | None = Field(None, pattern=r"^[\w.-]+/[\w.-]+$")
    version: str | None = Field(None, pattern=r"^([\w.-]+/[\w.-]+:)?[0-9a-f]{64}$")
    deployment: str | None = Field(None, pattern=r"^[\w.-]+/[\w.-]+$")
    base_url: str = "https://api.replicate.com/v1"
    api_key_env: str = "REPLICATE_API_TOKEN"

    @model_validator(mode="after")
    def _one_target(self) -> "ReplicateOptions":
        if sum(v is not None for v in (self.model, self.version, self.deployment)) > 1:
            raise ValueError("replicate: give one of model, version or deployment")
        return self


class ReplicateBackend(hosted.GatewayBackend):
    """VideoBackend (resumable, billed) on Replicate's predictions."""

    name = "replicate"
    section = "replicate"
    Options = ReplicateOptions
    lookup_hint = "https://replicate.com/predictions"
    lookup_complete = True  # the spec: the list holds every prediction of the account, API and web
    label, auth, keys_at = "Replicate", "Bearer", "https://replicate.com/account/api-tokens"
    target_hint = "set model (owner/name), version or deployment"

    def __init__(self, options: ReplicateOptions):
        super().__init__(options)
        self._uploads: dict[str, str] = {}  # image digest -> its uploaded URL (good for 24 h)

    def target(self) -> str | None:
        o = self.options
        return o.model or o.version or (f"deployment {o.deployment}" if o.deployment else None)

    def _url(self, path: str) -> str:
        return join_url(self.options.base_url, path)

    def image_url(self, path: Path) -> str:
        """A `data:` URL up to 256 KB, else the URL of the file uploaded to Replicate."""
        url = data_url(path)
        if len(url) <= DATA_URL_LIMIT:
            return url
        import hashlib

        digest = hashlib.sha256(url.encode()).hexdigest()
        if digest not in self._uploads:  # an upload is free and safe to repeat; the prediction is not
            raw = base64.b64decode(url.split(",", 1)[1])
            answer = self.http().upload(self._url("files"), f"{digest[:16]}.jpg", raw, "image/jpeg",
                                        "uploading a reference image")
            got = (answer.get("urls") or {}).get("get")
            if not got:
                raise TransientError(f"{self.what}: the file upload answered no URL ({str(answer)[:120]})")
            self._uploads[digest] = got
        return self._uploads[digest]

    # --- the job protocol -------------------------------------------------------------------------

    def submit(self, request: ShotRequest, client_key: str) -> str:
        o = self.options
        body = {"input": self.model_input(request)}
        if o.deployment:
            url = self._url(f"deployments/{o.deployment}/predictions")
        elif o.version:
            url, body["version"] = self._url("predictions"), o.version
        else:
            url = self._url(f"models/{o.model}/predictions")
        answer = self.http().call("POST", url, "creating a prediction", body=body)
        job_id = answer.get("id")
        if not isinstance(job_id, str) or not job_id:
            raise AnswerLost(f"{self.what} creating a prediction: the answer names no id ({str(answer)[:120]})")
        return job_id

    def poll(self, job_id: str) -> Poll:
        p = self.http().call("GET", self._url(f"predictions/{job_id}"), f"polling prediction {job_id}")
        status = p.get("status")
        if status == "starting":
            return Poll("queued")
        if status == "processing":
            return Poll("running")
        if status == "succeeded":
            url = _first_url(p.get("output"))
            if url is None:
                why = "its output was removed (Replicate keeps it an hour)" if p.get("data_removed") else \
                    f"it has no video URL in its output ({str(p.get('output'))[:120]})"
                return Poll("gone" if p.get("data_removed") else "failed", detail=why,
                            error=None if p.get("data_removed") else PermanentError(f"{self.what}: {why}"))
            return Poll("done", result=url)
        if status == "failed":
            return Poll("failed", error=self._failure(job_id, p.get("error")))
        if status in ("canceled", "aborted"):
            return Poll("gone", detail=f"prediction {status}")
        raise TransientError(f"{self.what}: prediction {job_id} has a status this backend does not know: {status!r}")

    def _failure(self, job_id: str, error) -> BackendError:
        text = f"{self.what}: prediction {job_id} failed: {error or 'no reason given'}"
        if is_refusal(None, str(error or "")):
            return RejectedError(text)
        # Replicate's `error` is free text: the model's own failure, usually not the input's (input errors
        # are refused at create with 422), so it counts as the provider's (limits.recreate_failed_jobs)
        return TransientError(text)

    def fetch(self, job_id: str, poll: Poll, out: Path) -> None:
        self.http().download(poll.result, out, f"downloading the video of prediction {job_id}")

    def cancel(self, job_id: str) -> None:
        self.http().call("POST", self._url(f"predictions/{job_id}/cancel"), f"cancelling prediction {job_id}")

    def lookup(self, client_key: str, request: ShotRequest, sent_at: float) -> str | None:
        """The prediction made since just before the request with exactly its input."""
        ours = self.model_input(request)
        after = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sent_at - 120))
        url = self._url("predictions?" + urllib.parse.urlencode({"created_after": after}))
        for _ in range(_LOOKUP_PAGES):
            page = self.http().call("GET", url, "listing recent predictions")
            for p in page.get("results") or []:
                if isinstance(p, dict) and hosted.same_input(self.options, ours, p.get("input")) and p.get("id"):
                    return str(p["id"])
            url = page.get("next")
            if not url:
                return None
        return None


def _first_url(output) -> str | None:
    """A video model's output: a URL, a list of them, or an object with one."""
    if isinstance(output, str) and output.startswith(("http://", "https://", "data:")):
        return output
    if isinstance(output, list) and output:
        return _first_url(output[0])
    if isinstance(output, dict):
        for k in ("video", "url", "output"):
            if k in output:
                return _first_url(output[k])
    return None

