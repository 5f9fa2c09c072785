"""Wan video on Alibaba Cloud Model Studio (DashScope): text, image (start frame) and reference to video.

Protocol (Model Studio docs: text-to-video / image-to-video / reference-to-video API references,
"manage asynchronous tasks", "upload local files to get temporary URLs", error codes):
- hosts: `https://dashscope-intl.aliyuncs.com/api/v1` (Singapore), `dashscope.aliyuncs.com` (Beijing),
  `dashscope-us.aliyuncs.com` (Virginia), or a workspace's own host
  `https://{workspace}.{cn-beijing|ap-southeast-1|eu-central-1}.maas.aliyuncs.com/api/v1`. Keys are per
  region. `Authorization: Bearer <key>`; `X-DashScope-WorkSpace: <id>` where a workspace is named.
- create: `POST /services/aigc/video-generation/video-synthesis` with `X-DashScope-Async: enable` (video is
  async only): `{model, input: {prompt, negative_prompt?, img_url? | reference_urls? | media?},
  parameters: {size "W*H" (t2v, wan2.6-r2v) | resolution "720P" (i2v, wan2.7), duration (int s), audio,
  seed}}` -> `{output: {task_id, task_status: PENDING}, request_id}`. wan2.6-r2v takes `reference_urls`,
  named `character1`, `character2`... in array order in the prompt (that convention is confirmed on
  mirrors of the docs, not on the official page); wan2.7 (and later) takes `media: [{type:
  reference_image | reference_video, url}]`, named "Image 1", "Video 1" (counted apart). Which one goes
  by the model's name. wan2.5+ make sound by default: `audio` is always sent (false unless asked for).
- images: DashScope takes URLs. An image is uploaded to its free temporary storage first (documented):
  `GET /uploads?action=getPolicy&model=<model>` -> `{data: {policy, signature, upload_dir, upload_host,
  oss_access_key_id, x_oss_object_acl, x_oss_forbid_overwrite, ...}}`, then an OSS form POST to
  `upload_host` (no Authorization; the policy signs it) -> `oss://<upload_dir>/<name>`, valid 48 h and
  bound to the account and the model; a create carrying one needs `X-DashScope-OssResourceResolve:
  enable`. Uploads are made once per file, account and model (`uploaded`). The docs name the Singapore
  and Beijing hosts for the upload service; a workspace host is assumed to serve it too (unconfirmed).
- poll: `GET /tasks/{task_id}`: task_status PENDING, RUNNING, SUSPENDED (SDK), SUCCEEDED (`output.
  video_url`, a signed link kept 24 h; `orig_prompt` echoed), FAILED (`output.code`, `output.message`),
  CANCELED, UNKNOWN (the task is missing or expired, answered 200).
- cancel: `POST /tasks/{task_id}/cancel`, PENDING tasks only; any other answers 400 UnsupportedOperation.
- lookup: DashScope has no idempotency key (its docs: "do not create duplicate tasks"). A request whose
  answer was lost is looked for in the task list (`GET /tasks?start_time&end_time&model_name&page_no&
  page_size`), each task of the model made about then read (`GET /tasks/{id}`) for the `orig_prompt` it
  echoes. Only a SUCCEEDED task echoes its prompt, so a job still running or one that failed cannot be
  told from another's: that lookup finds nothing and the shot stops as `unknown-job` (`rerun --failed`
  looks again, and finds a job that has since succeeded). The list's time format is `YYYYMMDDhhmmss` in an undocumented time zone: the window asked for is
  wide and narrowed by each task's `gmt_create` (epoch ms).
- errors: `{request_id, code, message}` with the HTTP status: 400 InvalidParameter / InvalidURL /
  DataInspectionFailed (content refused) / Arrearage, 401 InvalidApiKey, 429 Throttling.
Why not the `dashscope` SDK: it makes one create per call (no retry), but it hides the HTTP status that
tells "no job" from "maybe a job", uploads through its own temp files, and pulls in its own stack.
"""

from __future__ import annotations

import mimetypes
import re
import time
import urllib.parse
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from stages.backends._direct import DirectBackend, DirectOptions, Limits
from stages.backends._http import AnswerLost, provider_detail
from stages.backends._jobs import Poll
from stages.backends.base import (
    PermanentError,
    RejectedError,
    ShotRequest,
    TransientError,
    is_refusal,
)

HOSTS = {"singapore": "https://dashscope-intl.aliyuncs.com/api/v1", "beijing": "https://dashscope.aliyuncs.com/api/v1",
         "us": "https://dashscope-us.aliyuncs.com/api/v1"}
WORKSPACE_REGIONS = {"singapore": "ap-southeast-1", "beijing": "cn-beijing", "frankfurt": "eu-central-1"}
SIZES = {  # parameters.size for t2v and wan2.6-r2v, by resolution and ratio (W*H)
    "480p": {"9:16": "480*832", "16:9": "832*480", "1:1": "624*624"},
    "720p": {"9:16": "720*1280", "16:9": "1280*720", "1:1": "960*960"},
    "1080p": {"9:16": "1080*1920", "16:9": "1920*1080", "1:1": "1440*1440"},
}
UPLOAD_TTL_S = 48 * 3600  # the docs: a temporary file is kept 48 hours
R2V26_MAX = 3  # wan2.6-r2v: character1..3 (mirrors of the docs)
MEDIA_MAX = 5  # wan2.7-r2v: images and videos together (mirrors of the docs)
VIDEO_EXT = (".mp4", ".mov", ".webm", ".avi", ".mkv")
_REFUSED_CODES = ("DataInspectionFailed", "DataInspection", "IPInfringementSuspect")
_BAD_REQUEST_CODES = ("InvalidParameter", "InvalidURL", "BadRequest", "InvalidFile", "InvalidImage")


class WanDashscopeOptions(DirectOptions):
    """`backends.wan_dashscope`: a Wan model on Alibaba Cloud Model Studio (DashScope)."""

    LIMITS: ClassVar[Limits] = Limits(
        modes=frozenset({"text", "image", "reference"}), max_references=MEDIA_MAX,
        durations_s=tuple(float(s) for s in range(2, 16)), aspect_ratios=("9:16", "16:9", "1:1"), audio=True,
        resolutions=("480p", "720p", "1080p"), default_durations_s=(5.0, 10.0))

    model: str = Field("wan2.6-r2v", min_length=1, description="wan2.6-r2v / wan2.7-r2v (reference), wan2.6-i2v "
                                                               "(image), wan2.6-t2v (text) ...")
    text_model: str = Field("wan2.6-t2v", min_length=1, description="reference mode: the model for a shot with no "
                                                                     "character to show (r2v needs a reference)")
    region: Literal["singapore", "beijing", "us", "frankfurt"] = Field(
        "singapore", description="whose host and keys: singapore (dashscope-intl), beijing, us (Virginia), or "
                                 "frankfurt (with a workspace only)")
    workspace: str | None = Field(None, pattern=r"^[A-Za-z0-9-]+$", description="a workspace id: its own host "
                                  "({id}.<region>.maas.aliyuncs.com) and the X-DashScope-WorkSpace header")
    base_url: str | None = Field(None, description="the API's address (default: the region's or workspace's host)")
    api_key_env: str = Field("DASHSCOPE_API_KEY", description="the environment variable holding the key")
    resolution: str | None = Field("720p", description="480p, 720p or 1080p")

    @model_validator(mode="after")
    def _host(self) -> WanDashscopeOptions:
        if self.base_url is None:
            if self.workspace:
                if self.region not in WORKSPACE_REGIONS:
                    raise ValueError(f"region {self.region!r} has no documented workspace host (workspaces: "
                                     f"{', '.join(WORKSPACE_REGIONS)})")
                self.base_url = f"https://{self.workspace}.{WORKSPACE_REGIONS[self.region]}.maas.aliyuncs.com/api/v1"
            elif self.region in HOSTS:
                self.base_url = HOSTS[self.region]
            else:
                raise ValueError(f"region {self.region!r} is reached through a workspace: set workspace")
        longest = 10 if _r26(self.model) and self.mode == "reference" else 15
        bad = [d for d in self.durations or () if d > longest]
        if bad:
            raise ValueError(f"durations {bad}: {self.model} makes 2 to {longest} s")
        if self.resolution is None:
            self.resolution = "720p"
        return self


def _r26(model: str) -> bool:
    """A reference model that takes `reference_urls` (wan2.6-r2v), not `media` (wan2.7 and later)."""
    return "r2v" in model and not re.search(r"wan(2\.[7-9]|[3-9])", model)


def _video(url: str) -> bool:
    return urllib.parse.urlparse(url).path.lower().endswith(VIDEO_EXT)


class WanDashscopeBackend(DirectBackend):
    """VideoBackend (resumable, billed) on Alibaba Cloud Model Studio's DashScope API."""

    name = "wan-dashscope"
    section = "wan_dashscope"
    Options = WanDashscopeOptions
    label = "Alibaba Cloud Model Studio (DashScope)"
    keys_at = "https://modelstudio.console.alibabacloud.com/?tab=dashboard#/api-key"
    lookup_hint = "Model Studio's task list (GET /api/v1/tasks) or its console's usage page"
    sends_uploads = True

    def __init__(self, options: WanDashscopeOptions):
        super().__init__(options)
        if options.mode == "reference" and _r26(options.model):
            from dataclasses import replace

            self.capabilities = replace(self.capabilities, max_references=min(self.capabilities.max_references,
                                                                              R2V26_MAX))

    def account(self) -> str:
        """A temporary file is bound to the account and the model it was uploaded for."""
        import hashlib

        return hashlib.sha256(f"{self.options.base_url}\n{self.key()}\n{self.options.model}".encode()).hexdigest()[:20]

    def headers(self) -> dict[str, str]:
        return {"X-DashScope-WorkSpace": self.options.workspace} if self.options.workspace else {}

    def template_context(self) -> dict:
        return {"label_of": self.labels}

    def labels(self, refs) -> list[str]:
        """How the prompt names each reference: character1.. (wan2.6-r2v), else Image 1 / Video 1."""
        if _r26(self.options.model):
            return [f"character{r.slot}" for r in refs]
        out, counts = [], {}
        for r in refs:
            kind = "Video" if r.asset and _video(r.asset) else "Image"
            counts[kind] = counts.get(kind, 0) + 1
            out.append(f"{kind} {counts[kind]}")
        return out

    # --- the request ------------------------------------------------------------------------------

    def model_for(self, request: ShotRequest) -> tuple[str, str]:
        """(model, task kind: t2v, i2v, r2v) for this request: a reference shot with nothing to show
        goes to the text model; an image shot without its keyframe is refused."""
        o = self.options
        if o.mode == "image":
            if self.start_frame(request) is None:
                raise PermanentError(f"{self.what}: shot {request.shot_id} has no keyframe for image-to-video")
            return o.model, "i2v"
        if o.mode == "reference" and self.fitted(request).sent:
            return o.model, "r2v"
        return (o.text_model if o.mode == "reference" else o.model), "t2v"

    def body(self, request: ShotRequest, *, upload: bool = True) -> tuple[dict, bool]:
        """The create body, and whether it carries oss:// URLs. `upload`: False for the lookup (the
        prompt only)."""
        o = self.options
        model, kind = self.model_for(request)
        fitted = self.fitted(request) if kind == "r2v" else None
        prompt = self.prompt(request, fitted)
        inp: dict = {"prompt": prompt}
        if request.negative_prompt:
            inp["negative_prompt"] = request.negative_prompt
        params: dict = {"duration": int(self.billed_seconds(request)), "audio": o.audio, "seed": request.seed % 2**31}
        size = SIZES[o.resolution][o.aspect_ratio]
        if kind == "t2v":
            params["size"] = size
        elif kind == "i2v":
            params["resolution"] = o.resolution.upper()  # the picture follows the image's shape
            inp["img_url"] = self.url_of(self.start_frame(request)) if upload else ""
        elif _r26(model):
            params["size"] = size
            inp["reference_urls"] = [self.ref_url(r) if upload else "" for r in fitted.sent]
        else:
            params["resolution"] = o.resolution.upper()
            params["ratio"] = o.aspect_ratio
            inp["media"] = [{"type": "reference_video" if r.asset and _video(r.asset) else "reference_image",
                             "url": self.ref_url(r) if upload else ""} for r in fitted.sent]
        params.update(o.inputs)
        body = {"model": model, "input": inp, "parameters": params}
        urls = [inp.get("img_url", "")] + inp.get("reference_urls", []) + [m["url"] for m in inp.get("media", [])]
        return body, any(u.startswith("oss://") for u in urls)

    def ref_url(self, ref) -> str:
        if ref.asset is not None:
            if not re.match(r"^(https?|oss)://", ref.asset):
                raise PermanentError(f"{self.what}: {ref.figure.name}'s wan-dashscope asset {ref.asset!r} is not a "
                                     f"URL (DashScope takes images and videos by URL)")
            return ref.asset
        return self.url_of(ref.path)

    def url_of(self, path: Path) -> str:
        return self.uploaded(path, self._upload, ttl_s=UPLOAD_TTL_S)

    def _upload(self, path: Path) -> str:
        """DashScope's temporary storage: an upload policy for the model, an OSS form POST, an oss:// URL.
        Free and safe to repeat: any failure is transient or permanent, never a lost paid answer."""
        o = self.options
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise PermanentError(f"the image {path} cannot be read: {exc}") from exc
        try:
            answer = self.call("GET", f"/uploads?action=getPolicy&model={urllib.parse.quote(o.model)}",
                               f"getting an upload policy for {path.name}", headers=self.headers())
            policy = answer.get("data") or {}
            need = ("policy", "signature", "upload_dir", "upload_host", "oss_access_key_id")
            if not all(policy.get(k) for k in need):
                raise TransientError(f"{self.what}: the upload policy lacks {need} ({str(answer)[:200]})")
            key = f"{policy['upload_dir']}/{path.name}"
            ctype = mimetypes.guess_type(path.name)[0] or "image/png"
            form = {"OSSAccessKeyId": policy["oss_access_key_id"], "Signature": policy["signature"],
                    "policy": policy["policy"], "key": key,
                    "x-oss-object-acl": policy.get("x_oss_object_acl") or "private",
                    "x-oss-forbid-overwrite": policy.get("x_oss_forbid_overwrite") or "true",
                    "success_action_status": "200", "x-oss-content-type": ctype}
            import httpx2

            try:  # the storage host gets no key: the policy signs the form
                resp = self.http().client().post(policy["upload_host"], data=form,
                                                 files={"file": (path.name, data, ctype)})
            except httpx2.HTTPError as exc:
                raise TransientError(f"{self.what} uploading {path.name}: {type(exc).__name__}: {exc}") from exc
            if not 200 <= resp.status_code < 300:
                cls = TransientError if resp.status_code >= 500 or resp.status_code == 429 else PermanentError
                raise cls(f"{self.what} uploading {path.name} answered {resp.status_code}: "
                          f"{provider_detail(resp.text, resp.headers.get('content-type'))}")
        except AnswerLost as exc:  # an upload is free: lost means try again, never "a job may exist"
            raise TransientError(str(exc), retry_after_s=exc.retry_after_s) from None
        return f"oss://{key}"

    # --- the job protocol -------------------------------------------------------------------------

    def submit(self, request: ShotRequest, client_key: str) -> str:
        body, oss = self.body(request)
        headers = {"X-DashScope-Async": "enable", **self.headers()}
        if oss:
            headers["X-DashScope-OssResourceResolve"] = "enable"
        try:
            answer = self.call("POST", "/services/aigc/video-generation/video-synthesis", "creating a task",
                               body=body, headers=headers)
        except PermanentError as exc:
            raise _classified(exc) from None
        task_id = (answer.get("output") or {}).get("task_id") if isinstance(answer.get("output"), dict) else None
        if not task_id:
            raise AnswerLost(f"{self.what} creating a task: the answer names no task_id ({str(answer)[:200]})")
        return str(task_id)

    def poll(self, job_id: str) -> Poll:
        out = self.call("GET", f"/tasks/{job_id}", f"polling task {job_id}", headers=self.headers()).get("output")
        out = out if isinstance(out, dict) else {}
        state = out.get("task_status")
        if state == "PENDING":
            return Poll("queued")
        if state in ("RUNNING", "SUSPENDED"):
            return Poll("running")
        if state == "CANCELED":
            return Poll("gone", detail=f"task {job_id} was cancelled")
        if state == "UNKNOWN":
            return Poll("gone", detail=f"DashScope no longer knows task {job_id} (UNKNOWN: missing or past 24 h)")
        if state == "FAILED":
            code, message = str(out.get("code") or ""), str(out.get("message") or "failed")
            text = f"{self.what}: task {job_id} failed: {code}: {message}"
            if code.startswith(_REFUSED_CODES) or is_refusal(code, message):
                return Poll("failed", error=RejectedError(text))
            if code.startswith(_BAD_REQUEST_CODES):
                return Poll("failed", error=PermanentError(text))
            return Poll("failed", error=TransientError(text))  # DashScope's own failure
        if state != "SUCCEEDED":
            raise TransientError(f"{self.what}: task {job_id} has a status this backend does not know: {state!r}")
        url = out.get("video_url")
        if not url:
            return Poll("failed", error=PermanentError(f"{self.what}: task {job_id} succeeded without a video_url "
                                                       f"({str(out)[:200]})"))
        return Poll("done", result=url)

    def cancel(self, job_id: str) -> None:
        try:
            self.call("POST", f"/tasks/{job_id}/cancel", f"cancelling task {job_id}", headers=self.headers())
        except PermanentError as exc:
            if getattr(exc, "status", None) == 400:
                raise PermanentError(f"{self.what}: DashScope has no way to cancel task {job_id} once it has left the "
                                     f"queue (only a PENDING task can be cancelled): {exc}") from None
            raise

    def lookup(self, client_key: str, request: ShotRequest, sent_at: float) -> str | None:
        """The finished task of this model, sent about then, that echoes our prompt (see the module)."""
        body, _ = self.body(request, upload=False)
        model, prompt = body["model"], body["input"]["prompt"]
        query = {"model_name": model, "start_time": _stamp(sent_at - 86400),
                 "end_time": _stamp(time.time() + 86400), "page_size": 50}
        # created within a minute of the send (clocks may differ a little; a miss is an unknown job, never a
        # second one)
        early, late = sent_at - 60, sent_at + self.options.request_timeout_s + 60
        for page in range(1, 6):
            answer = self.call("GET", f"/tasks?{urllib.parse.urlencode({**query, 'page_no': page})}",
                               "listing tasks", headers=self.headers())
            tasks = [t for t in answer.get("data") or [] if isinstance(t, dict) and t.get("task_id")]
            for t in tasks:
                made = t.get("gmt_create")
                if isinstance(made, (int, float)) and not early <= made / 1000 <= late or \
                        t.get("status") not in (None, "SUCCEEDED"):
                    continue  # another time's, or not finished: only a succeeded task echoes its prompt
                out = self.call("GET", f"/tasks/{t['task_id']}", f"reading task {t['task_id']}",
                                headers=self.headers()).get("output") or {}
                if out.get("orig_prompt") == prompt:
                    return str(t["task_id"])
            if page >= int(answer.get("total_page") or 1) or not tasks:
                break
        return None


def _stamp(t: float) -> str:
    """The task list's time format (its zone is not documented: the window asked for is a day wider)."""
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(t))


def _classified(exc: PermanentError) -> PermanentError:
    """A create refused with 400: DataInspectionFailed is the content's (RejectedError)."""
    text = str(exc)
    if any(code in text for code in _REFUSED_CODES) or "inappropriate content" in text:
        err = RejectedError(text)
        err.status = getattr(exc, "status", None)
        return err
    return exc
