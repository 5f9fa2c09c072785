"""Kling's own API (Kuaishou): text, image (start frame) and reference to video, with saved Elements.

Protocol (Kling's API docs, "common info", image2video, multi-image2video, omni-video):
- auth: a JWT (HS256) signed with the secret key, `iss` = the access key, `exp` 30 min on, `nbf` 5 s
  back, sent as `Authorization: Bearer <token>`; made fresh for each request (PyJWT signs it).
- create: `POST /v1/videos/{family}` -> `{code: 0, data: {task_id, task_status: submitted}}`; the
  family is `omni-video` for the omni models (kling-v3-omni, kling-video-o1), else `text2video`,
  `image2video` (start frame `image`, raw base64) or `multi-image2video` (kling-v1-6, `image_list`
  of `{image}`, at most 4). Omni takes `image_list` of `{image_url}` (a start frame has `type:
  first_frame`) and `element_list` of `{element_id}`, at most 7 together, named in the prompt as
  `<<<image_1>>>` and `<<<element_1>>>` (templates/references/kling.j2). `duration` is a string
  ("5"; 3-15 for the 3.0 and omni models), `mode` std (720p) or pro (1080p), `sound` "on"/"off".
- poll: `GET /v1/videos/{family}/{task_id}`: task_status submitted, processing, succeed (the clip at
  `task_result.videos[0].url`, kept 30 days), failed (`task_status_msg`).
- our client key goes as `external_task_id`; a request whose answer was lost is looked up in the
  family's task list (`GET /v1/videos/{family}?pageNum&pageSize`) by that id.
- errors: `{code, message, request_id}`; 1301 content refused, 1302/1303 rate and concurrency
  (429), 1102 no balance, 1000-1004 auth. Kling documents no cancel.
"""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from stages.backends._direct import DirectBackend, DirectOptions, Limits
from stages.backends._http import AnswerLost
from stages.backends._jobs import Poll
from stages.backends.base import PermanentError, RejectedError, ShotRequest, TransientError, is_refusal

OMNI_MAX = 7  # images and elements together, without a reference video
MULTI_MAX = 4  # multi-image2video


class KlingOptions(DirectOptions):
    """`backends.kling`: a model on Kling's own API (keys from app.klingai.com/global/dev)."""

    LIMITS: ClassVar[Limits] = Limits(
        modes=frozenset({"text", "image", "reference"}), max_references=OMNI_MAX,
        durations_s=tuple(float(s) for s in range(3, 16)), aspect_ratios=("9:16", "16:9", "1:1"), audio=True,
        resolutions=("720p", "1080p"), default_durations_s=(5.0, 10.0))

    model: str = Field("kling-v3-omni", min_length=1, description="model_name: kling-v3-omni, kling-video-o1 "
                                                                  "(omni), kling-v2-6, kling-v1-6 ...")
    base_url: str = Field("https://api-singapore.klingai.com", description="api-singapore.klingai.com; in China "
                                                                           "api-beijing.klingai.com")
    api_key_env: str = Field("KLING_ACCESS_KEY", description="the access key (the token's issuer)")
    secret_key_env: str = Field("KLING_SECRET_KEY", description="the secret key that signs the token")
    resolution: str | None = Field("720p", description="720p (mode std) or 1080p (mode pro)")


class KlingAuth:
    """Kling's two keys (the access key in `api_key_env`, the secret in `secret_key_env`) and the token
    they make: mixed into each backend on Kling's API, before its base class."""

    def missing(self, *, keys: bool = True) -> list[tuple[str, str]]:
        out = super().missing(keys=keys)
        env = self.options.secret_key_env
        if keys and not os.environ.get(env):
            out.append((f"Kling needs its secret key in ${env}", f"export {env}=... ({self.keys_at})"))
        return out

    def auth_headers(self) -> dict[str, str]:
        import jwt

        now = int(time.time())
        token = jwt.encode({"iss": self.key(), "exp": now + 1800, "nbf": now - 5},
                           os.environ.get(self.options.secret_key_env, ""), algorithm="HS256",
                           headers={"alg": "HS256", "typ": "JWT"})
        return {"Authorization": f"Bearer {token}"}


def created_task(what: str, answer: dict) -> str:
    """The task id of a create's `{code, data: {task_id}}` answer; a 2xx without one may have made a task."""
    task_id = (answer.get("data") or {}).get("task_id") if isinstance(answer.get("data"), dict) else None
    if answer.get("code") not in (0, None) or not task_id:
        raise AnswerLost(f"{what} creating a task: the answer names no task_id ({str(answer)[:200]})")
    return str(task_id)


def read_task(what: str, job_id: str, data: dict) -> Poll:
    """A task's `data` (any Kling task family) as the job driver sees it."""
    state = data.get("task_status")
    if state == "submitted":
        return Poll("queued")
    if state == "processing":
        return Poll("running")
    if state == "failed":
        why = data.get("task_status_msg") or "failed"
        text = f"{what}: task {job_id} failed: {why}"
        # Kling says only why: a refusal is the content's; anything else is counted as Kling's own
        # failure (re-created only as limits.recreate_failed_jobs allows)
        return Poll("failed", error=RejectedError(text) if is_refusal(None, why) else TransientError(text))
    if state != "succeed":
        raise TransientError(f"{what}: task {job_id} has a status this backend does not know: {state!r}")
    videos = (data.get("task_result") or {}).get("videos") or []
    url = videos[0].get("url") if videos and isinstance(videos[0], dict) else None
    if not url:
        return Poll("failed", error=PermanentError(f"{what}: task {job_id} succeeded without a video "
                                                   f"({str(data)[:200]})"))
    return Poll("done", result=url)


class KlingBackend(KlingAuth, DirectBackend):
    """VideoBackend (resumable, billed) on Kling's own API."""

    name = "kling"
    section = "kling"
    Options = KlingOptions
    label = "Kling"
    keys_at = "https://app.klingai.com/global/dev/api-key"
    lookup_hint = "your Kling API console's task list"

    def __init__(self, options: KlingOptions):
        super().__init__(options)
        if self.family("reference") == "multi-image2video":
            from dataclasses import replace

            self.capabilities = replace(self.capabilities, max_references=min(self.capabilities.max_references,
                                                                              MULTI_MAX))

    def family(self, mode: str | None = None) -> str:
        """The endpoint family the model and mode go to."""
        model, mode = self.options.model, mode or self.options.mode
        if "omni" in model or model.startswith("kling-video-o"):
            return "omni-video"
        return {"text": "text2video", "image": "image2video", "reference": "multi-image2video"}[mode]

    def template_context(self) -> dict:
        return {"named": self.family() == "omni-video"}

    # --- the request ------------------------------------------------------------------------------

    def body(self, request: ShotRequest, client_key: str) -> dict:
        o, family = self.options, self.family()
        fitted = self.fitted(request)
        body = {"model_name": o.model, "prompt": self.prompt(request, fitted), "duration": str(self.seconds(request)),
                "mode": "pro" if o.resolution == "1080p" else "std", **o.inputs}
        if request.negative_prompt:
            body["negative_prompt"] = request.negative_prompt
        if o.audio:
            body["sound"] = "on"
        start = self.start_frame(request)
        if family == "image2video":
            body["image"] = _base64(start)  # it follows the image's shape: no aspect_ratio
        else:
            body["aspect_ratio"] = o.aspect_ratio
        if family == "multi-image2video":
            body["image_list"] = [{"image": _base64(r.path)} for r in fitted.sent if r.path is not None]
        if family == "omni-video":
            images = [{"image_url": _base64(start), "type": "first_frame"}] if start is not None else []
            images += [{"image_url": _base64(r.path)} for r in fitted.sent if r.path is not None]
            elements = [{"element_id": _element(r.asset)} for r in fitted.sent if r.asset is not None]
            if images:
                body["image_list"] = images
            if elements:
                body["element_list"] = elements
        body["external_task_id"] = client_key
        return body

    # --- the job protocol -------------------------------------------------------------------------

    def submit(self, request: ShotRequest, client_key: str) -> str:
        answer = self.call("POST", f"/v1/videos/{self.family()}", "creating a task",
                           body=self.body(request, client_key))
        return created_task(self.what, answer)

    def poll(self, job_id: str) -> Poll:
        data = self.call("GET", f"/v1/videos/{self.family()}/{job_id}", f"polling task {job_id}").get("data") or {}
        return read_task(self.what, job_id, data)

    def cancel(self, job_id: str) -> None:
        raise PermanentError(f"{self.what}: Kling's API has no way to cancel task {job_id}")

    def lookup(self, client_key: str, request: ShotRequest, sent_at: float) -> str | None:
        """The task whose `external_task_id` is our client key, in the family's recent tasks."""
        for page in range(1, 4):
            answer = self.call("GET", f"/v1/videos/{self.family()}?pageNum={page}&pageSize=100", "listing tasks")
            tasks = answer.get("data") or []
            for t in tasks:
                if isinstance(t, dict) and (t.get("task_info") or {}).get("external_task_id") == client_key:
                    return str(t.get("task_id"))
            older = [t for t in tasks if isinstance(t, dict) and (t.get("created_at") or 0) / 1000 < sent_at - 120]
            if len(tasks) < 100 or older:
                break
        return None


def _base64(path: Path) -> str:
    """An image as Kling takes it inline: raw base64, no `data:` prefix."""
    try:
        return base64.b64encode(path.read_bytes()).decode()
    except OSError as exc:
        raise PermanentError(f"the image {path} cannot be read: {exc}") from exc


def _element(asset: str) -> int | str:
    """A saved element's id: a number in Kling's API (kept as written if it is not one)."""
    return int(asset) if asset.isdigit() else asset
