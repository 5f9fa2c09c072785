"""ByteDance Seedance on Volcengine Ark (火山方舟) or BytePlus ModelArk: text, image (first frame) and
reference to video, with saved face assets.

Protocol (the official SDK `volcengine-python-sdk` [ark] 5.0.42, `volcenginesdkarkruntime`, and the
BytePlus ModelArk pages 1520757 / 1366799; see the research notes for each field's standing):
- base: `https://ark.cn-beijing.volces.com/api/v3` (Volcengine, models `doubao-seedance-...`) or
  `https://ark.ap-southeast.bytepluses.com/api/v3` (BytePlus, models `dreamina-seedance-...` /
  `seedance-...`); a model id or an endpoint id (`ep-...`). Auth: `Authorization: Bearer $ARK_API_KEY`.
- create: `POST /contents/generations/tasks` `{model, content: [...], ratio, duration, resolution, seed,
  watermark, generate_audio}` -> `{id: "cgt-..."}`. `content` is the text item `{type: text, text}` then
  image items `{type: image_url, image_url: {url}, role}`: role `first_frame` for the shot's keyframe
  (mode image), `reference_image` for each character image (mode reference; Seedance 2.0 takes up to
  9). A saved face asset (project.yaml `cast[].assets.seedance`) goes as the url `asset://<id>` in a
  `reference_image` item, in the slot of an image. Images go inline as `data:image/jpeg;base64,...`
  (documented). Parameters go as top-level fields (the SDK's create signature), never as the old
  `--ratio 9:16` text suffix.
- the prompt names the images the way the official 2.0 multimodal example does, in words, by their
  order among the image items: "Image 1" (图片1 in the Chinese example); templates/references/
  seedance.j2. Resellers' `@Image1` is not Ark's documented form, so it is not used.
- poll: `GET /contents/generations/tasks/{id}`: status queued, running, succeeded (the clip at
  `content.video_url`, kept 24 h), failed (`error {code, message}`), cancelled, expired (ran past its
  `execution_expires_after`).
- cancel: `DELETE /contents/generations/tasks/{id}` cancels a task only while it is queued; a running
  task cannot be stopped (it finishes and is billed), and on a finished task DELETE erases its record
  (the clip's URL with it): so `cancel` looks first and deletes only a queued task.
- errors: `{error: {code, message, param, type}}` with 400 (InvalidParameter, MissingParameter,
  SensitiveContentDetected, Input*SensitiveContentDetected...), 401 AuthenticationError, 403
  AccountOverdueError / AccessDenied, 404 InvalidEndpointOrModel.NotFound, 429, 500.

Fields and their evidence: `content`, the roles, `ratio`, `duration`, `resolution`, `seed`,
`watermark`, `generate_audio` are the SDK's create fields (CONFIRMED); the allowed values (ratio
16:9/4:3/1:1/3:4/9:16/21:9, duration 4-15 s on 2.0, 480p/720p/1080p, seed -1..2^32-1) and that
`generate_audio` defaults to on for 1.5 pro and 2.0 (so `false` is always sent: sound is billed) come
from mirrors of the official docs (UNCONFIRMED); `asset://` face assets are documented only by
resellers that copy Volcengine (UNCONFIRMED). Billing is by tokens (width x height x fps x seconds /
1024), not by the second.

No lookup: a task list (`GET /contents/generations/tasks?filter.status&filter.model&filter.task_ids`)
exists, but its items carry only the task's own fields (id, model, status, seed, ratio, duration...),
nothing of the request (no prompt, no images, no client key), so a job whose create answer was lost
cannot be told from another made with the same settings: it stops as unknown-job.

Not the SDK: its client retries every request twice by default (`DEFAULT_MAX_RETRIES = 2`, on
timeouts, connection errors, 408/409/429/5xx), create included, and Ark has no idempotency key: a
retried create is a second paid task.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from stages.backends._direct import DirectBackend, DirectOptions, Limits
from stages.backends._http import AnswerLost, NotFound
from stages.backends._jobs import Poll
from stages.backends.base import PermanentError, RejectedError, ShotRequest, TransientError, is_refusal

MAX_IMAGES = 9  # Seedance 2.0: reference images per request (saved assets share the slots)
LITE_I2V_MAX = 4  # seedance-1-0-lite-i2v: 1-4 reference images
SEED_MAX = 2 ** 32 - 1
# Failed-task codes the provider marks as the request's fault (the 400 codes of Ark's error table)
BAD_REQUEST = ("InvalidParameter", "MissingParameter")


def _generation(model: str) -> str:
    """The model's family, by its id: "2.0", "1.5", "1.0-lite-i2v", "1.0-lite-t2v", "1.0" or "" (an
    endpoint id `ep-...` or a model this file does not know: not checked)."""
    m = model.lower()
    if "seedance-2-0" in m:
        return "2.0"
    if "seedance-1-5" in m:
        return "1.5"
    if "seedance-1-0-lite-i2v" in m:
        return "1.0-lite-i2v"
    if "seedance-1-0-lite-t2v" in m:
        return "1.0-lite-t2v"
    if "seedance-1-0" in m:
        return "1.0"
    return ""


class SeedanceOptions(DirectOptions):
    """`backends.seedance`: a Seedance model on Volcengine Ark or BytePlus ModelArk (key: ARK_API_KEY)."""

    LIMITS: ClassVar[Limits] = Limits(
        modes=frozenset({"text", "image", "reference"}), max_references=MAX_IMAGES,
        durations_s=tuple(float(s) for s in range(4, 16)),
        aspect_ratios=("9:16", "16:9", "4:3", "1:1", "3:4", "21:9"), audio=True,
        resolutions=("480p", "720p", "1080p"), default_durations_s=(5.0, 10.0))

    model: str = Field("doubao-seedance-2-0-260128", min_length=1,
                       description="model id or endpoint id (ep-...): doubao-seedance-2-0-260128, "
                                   "doubao-seedance-2-0-fast-260128 on Volcengine; dreamina-seedance-2-0-260128 "
                                   "on BytePlus; the 1.x models take no reference images")
    base_url: str = Field("https://ark.cn-beijing.volces.com/api/v3",
                          description="Volcengine ark.cn-beijing.volces.com/api/v3; BytePlus "
                                      "ark.ap-southeast.bytepluses.com/api/v3")
    api_key_env: str = Field("ARK_API_KEY", description="the Ark API key (Bearer)")
    resolution: str | None = Field("720p", description="480p, 720p or 1080p (the 2.0 models' default is 720p)")

    @model_validator(mode="after")
    def _model_fits(self) -> SeedanceOptions:
        gen = _generation(self.model)
        if self.mode == "reference" and gen in ("1.0", "1.0-lite-t2v", "1.5"):
            raise ValueError(f"mode reference: {self.model} takes no reference images (Seedance 2.0 or "
                             f"seedance-1-0-lite-i2v do)")
        if self.mode == "image" and gen == "1.0-lite-t2v":
            raise ValueError(f"mode image: {self.model} is text-to-video only")
        if self.audio and gen not in ("", "2.0", "1.5"):
            raise ValueError(f"audio: {self.model} makes no sound (Seedance 1.5 pro and 2.0 do)")
        if self.max_references is not None and gen == "1.0-lite-i2v" and self.max_references > LITE_I2V_MAX:
            raise ValueError(f"max_references {self.max_references} is over {self.model}'s {LITE_I2V_MAX}")
        return self


class SeedanceBackend(DirectBackend):
    """VideoBackend (resumable, billed) on Volcengine Ark / BytePlus ModelArk's content generation tasks."""

    name = "seedance"
    section = "seedance"
    Options = SeedanceOptions
    label = "Volcengine Ark (Seedance)"
    keys_at = "https://console.volcengine.com/ark (API Key management); BytePlus: console.byteplus.com/ark"
    lookup_hint = "the Ark console's task history (or GET /contents/generations/tasks)"

    def __init__(self, options: SeedanceOptions):
        super().__init__(options)
        if _generation(options.model) == "1.0-lite-i2v":
            from dataclasses import replace

            self.capabilities = replace(self.capabilities, max_references=min(self.capabilities.max_references,
                                                                              LITE_I2V_MAX))

    # --- the request ------------------------------------------------------------------------------

    def body(self, request: ShotRequest) -> dict:
        o = self.options
        fitted = self.fitted(request)
        content: list[dict] = [{"type": "text", "text": self.prompt(request, fitted)}]
        start = self.start_frame(request)
        if start is not None:
            content.append({"type": "image_url", "image_url": {"url": self.image_data(start)}, "role": "first_frame"})
        for r in fitted.sent:
            url = _asset_url(r.asset) if r.asset is not None else self.image_data(r.path)
            content.append({"type": "image_url", "image_url": {"url": url}, "role": "reference_image"})
        body = {"model": o.model, "content": content, "ratio": o.aspect_ratio, "duration": int(self.seconds(request)),
                "seed": request.seed % (SEED_MAX + 1), "watermark": False,
                "generate_audio": bool(o.audio)}  # sent either way: on by default for 1.5 pro and 2.0, and billed
        if o.resolution:
            body["resolution"] = o.resolution
        body.update(o.inputs)
        return body

    # --- the job protocol -------------------------------------------------------------------------

    def task_path(self, job_id: str = "") -> str:
        return "/contents/generations/tasks" + (f"/{job_id}" if job_id else "")

    def submit(self, request: ShotRequest, client_key: str) -> str:
        # Ark takes no client key (X-Client-Request-Id is a trace header, never echoed in a task): none is sent
        answer = self.call("POST", self.task_path(), "creating a task", body=self.body(request))
        task_id = answer.get("id")
        if not task_id or not isinstance(task_id, str):
            raise AnswerLost(f"{self.what} creating a task: the answer names no id ({str(answer)[:200]})")
        return task_id

    def task(self, job_id: str) -> dict:
        return self.call("GET", self.task_path(job_id), f"polling task {job_id}")

    def poll(self, job_id: str) -> Poll:
        return self.read(job_id, self.task(job_id))

    def read(self, job_id: str, task: dict) -> Poll:
        """One task object as the job driver sees it."""
        state = task.get("status")
        if state == "queued":
            return Poll("queued")
        if state == "running":
            return Poll("running")
        if state in ("cancelled", "expired"):
            return Poll("gone", detail=f"Ark says the task is {state}")
        if state == "failed":
            error = task.get("error") if isinstance(task.get("error"), dict) else {}
            code, why = str(error.get("code") or ""), str(error.get("message") or "failed")
            text = f"{self.what}: task {job_id} failed: {code + ': ' if code else ''}{why}"
            if is_refusal(code, why):
                return Poll("failed", error=RejectedError(text))
            if code in BAD_REQUEST or code.startswith(tuple(c + "." for c in BAD_REQUEST)):
                return Poll("failed", error=PermanentError(text))
            return Poll("failed", error=TransientError(text))  # Ark's own failure: re-created only as allowed
        if state != "succeeded":
            raise TransientError(f"{self.what}: task {job_id} has a status this backend does not know: {state!r}")
        url = (task.get("content") or {}).get("video_url") if isinstance(task.get("content"), dict) else None
        if not url:
            return Poll("failed", error=PermanentError(f"{self.what}: task {job_id} succeeded without a video "
                                                       f"({str(task)[:200]})"))
        return Poll("done", result=url)

    def cancel(self, job_id: str) -> None:
        """Cancel a queued task (DELETE); a running one cannot be stopped, and a finished one is left
        alone (DELETE would erase its record and clip, and it is billed already)."""
        try:
            state = self.task(job_id).get("status")
        except NotFound as exc:
            raise PermanentError(f"{self.what}: there is no way to cancel task {job_id}: Ark does not know it "
                                 f"({exc})") from None
        if state == "running":
            raise PermanentError(f"{self.what}: Ark has no way to cancel task {job_id} once it is running (only a "
                                 f"queued task can be cancelled); it runs to the end and is billed")
        if state != "queued":  # succeeded, failed, cancelled, expired: nothing left to stop
            return
        try:
            self.call("DELETE", self.task_path(job_id), f"cancelling task {job_id}")
        except NotFound:
            return
        except PermanentError as exc:  # it started between the look and the DELETE
            raise PermanentError(f"{self.what}: Ark has no way to cancel task {job_id} now (only a queued task "
                                 f"can be cancelled): {exc}") from None


def _asset_url(asset: str) -> str:
    """A saved face asset as Ark takes it: `asset://<id>` (written with or without the scheme)."""
    return asset if asset.startswith("asset://") else f"asset://{asset}"
