"""Runway's developer API (api.dev.runwayml.com): text, image (start frame) and reference to video.

Protocol (Runway's API reference as its SDK `runwayml` 5.13 is generated from it, and Runway's docs):
- auth: `Authorization: Bearer <key>` (key_...) and `X-Runway-Version: 2024-11-06` on every request.
- create: `POST /v1/text_to_video` (gen4.5: promptText, ratio 1280:720 or 720:1280, duration 2-10),
  `POST /v1/image_to_video` (gen4.5 or gen4_turbo: promptImage, a URL / runway:// URI / data URI under
  5 MB; promptText; ratio 1280:720, 720:1280, 1104:832, 832:1104, 960:960, 1584:672; duration, an
  integer: gen4.5 2-10, gen4_turbo 5 or 10), `POST /v1/text_to_image` (gen4_image: promptText,
  ratio, up to 3 `referenceImages` of {uri, tag}; a tag is 3-16 characters, a letter first, then
  letters, digits or underscores, and the prompt names it `@tag`); each answers `{id}` (a UUID).
  Every body takes `seed` (0..4294967295). Each create is a paid task.
- poll: `GET /v1/tasks/{id}`: status PENDING, THROTTLED (over the concurrency limit, queued),
  RUNNING (`progress`), SUCCEEDED (`output`: URLs, expiring in 24-48 h: a new GET gives fresh
  ones), FAILED (`failure`, `failureCode`), CANCELLED. `failureCode`: SAFETY.* (moderation:
  refused), INPUT_PREPROCESSING.* and ASSET.INVALID (the input: permanent), INTERNAL.* (Runway's
  own: may be retried). A code with SAFETY anywhere (INPUT_PREPROCESSING.SAFETY.TEXT) is a refusal.
- cancel: `DELETE /v1/tasks/{id}` (204; a running task is cancelled, a finished one deleted; then
  404 `{"error": "Could not find Task"}`). There is no task list: a lost create cannot be looked up.
- errors: `{"error": "..."}` (400 may add Zod `issues`), 401 bad key, 429 daily limit, 5xx.

Why not the `runwayml` SDK: it retries a create by default (2 retries on timeouts, connection
errors, 408/409/429/5xx) and Runway takes no idempotency key (the SDK sends none), so a retried
create is a second paid task; here a create is sent once (`Http`) and `run_job` decides.

Reference mode is two paid steps, as Runway's own reference workflow is: a still made by gen4_image
from the characters' reference images (tagged from the character ids, see `tags`), then
image_to_video from that still (promptText: the shot's motion). Each step is made at most once per
intent:
- the still is a content-addressed artifact: keyed by what determines it (the text_to_image body:
  model, prompt, ratio, seed, the references and their tags), recorded in the ledger's `uploads`
  table *before* its create is sent (`sent`), then with its task id. `submit` makes (or reuses) the
  still and returns the job id `<still task>~<client key>`; the journal holds it as the shot's job,
  so a crash while the still is made resumes polling it.
- `poll` on that job waits for the still, then asks for the video once for the intent: the video
  request (planned at submit, in the ledger by client key) is marked `sent` in the ledger before it
  goes out, then recorded with its task id. A video create whose answer was lost (or a crash while
  it was out) is `UnknownJob`: the shot stops as `unknown-job`; `rerun --new-job` makes a new intent
  that reuses the recorded still (only the video is paid again).
- a still create whose answer was lost is the intent's lost answer (`AnswerLost` from `submit`):
  `unknown-job` as for any provider without a list; a later intent the user chose (`--new-job`)
  makes a new still. A still that failed, was cancelled or is gone (404) is made anew by the next
  intent. Nothing else ever sends a second text_to_image for the same content.
A reference shot with no references (nobody on screen) goes straight to text_to_video where the
model and ratio allow it; otherwise the still is made from the prompt alone. Saved assets
(`cast[].assets.runway`) are image URIs Runway can read (https:// or runway://).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from stages.backends._direct import DirectBackend, DirectOptions, Limits
from stages.backends._http import AnswerLost, NotFound
from stages.backends._jobs import Poll, UnknownJob
from stages.backends.base import (
    BackendError,
    Fitted,
    PermanentError,
    Ref,
    RejectedError,
    ShotRequest,
    TransientError,
    is_refusal,
)

log = logging.getLogger(__name__)

VERSION = "2024-11-06"
MAX_REFERENCES = 3  # gen4_image referenceImages
MAX_DATA_URI = 5 * 1024 * 1024  # an encoded data URI must stay under 5 MB
MAX_PROMPT = 1000  # UTF-16 code units
SEED_RANGE = 2 ** 32
SEP = "~"  # the two-step job id: <still task id>~<client key>
# `aspect_ratio` -> Runway's ratio, per endpoint family (the documented values)
VIDEO_RATIOS = {"9:16": "720:1280", "16:9": "1280:720", "1:1": "960:960", "4:3": "1104:832", "3:4": "832:1104",
                "21:9": "1584:672"}
TEXT_RATIOS = {"9:16": "720:1280", "16:9": "1280:720"}  # text_to_video gen4.5
IMAGE_RATIOS = {"9:16": "720:1280", "16:9": "1280:720", "1:1": "720:720", "4:3": "960:720", "3:4": "720:960",
                "21:9": "1680:720"}
MODEL_DURATIONS = {"gen4.5": tuple(range(2, 11)), "gen4_turbo": (5, 10)}
TEXT_MODELS = ("gen4.5",)
TAG = re.compile(r"^[A-Za-z][A-Za-z0-9_]{2,15}$")


class RunwayOptions(DirectOptions):
    """`backends.runway`: a model on Runway's developer API (keys at dev.runwayml.com)."""

    LIMITS: ClassVar[Limits] = Limits(
        modes=frozenset({"text", "image", "reference"}), max_references=MAX_REFERENCES,
        durations_s=tuple(float(s) for s in range(2, 11)), aspect_ratios=tuple(VIDEO_RATIOS), audio=False,
        resolutions=(), default_durations_s=(5.0, 10.0))

    model: str = Field("gen4.5", min_length=1, description="the video model: gen4.5 (text and image to video) "
                                                           "or gen4_turbo (image to video only)")
    image_model: Literal["gen4_image", "gen4_image_turbo"] = Field(
        "gen4_image", description="reference mode: the model that makes the still from the references "
                                  "(gen4_image_turbo needs at least one reference)")
    base_url: str = Field("https://api.dev.runwayml.com", description="Runway's developer API")
    api_key_env: str = Field("RUNWAYML_API_SECRET", description="the API key (key_...)")

    @model_validator(mode="after")
    def _runway_model(self) -> RunwayOptions:
        lengths = MODEL_DURATIONS.get(self.model)
        if lengths is None:
            raise ValueError(f"model {self.model!r} is not one this backend speaks ({', '.join(MODEL_DURATIONS)})")
        bad = [d for d in self.durations or () if d not in lengths]
        if bad:
            raise ValueError(f"durations {bad} are not offered by {self.model} (seconds: "
                             f"{', '.join(str(s) for s in lengths)})")
        if self.mode == "text" and self.model not in TEXT_MODELS:
            raise ValueError(f"mode 'text': {self.model} makes video only from an image (text_to_video takes "
                             f"{', '.join(TEXT_MODELS)})")
        if self.mode == "text" and self.aspect_ratio not in TEXT_RATIOS:
            raise ValueError(f"mode 'text': aspect_ratio {self.aspect_ratio!r} is not offered by text_to_video "
                             f"({', '.join(TEXT_RATIOS)})")
        if self.resolution is not None:
            raise ValueError("resolution: Runway takes none (the ratio sets the pixels, 720p)")
        return self


def tags(ids: list[str]) -> list[str]:
    """A Runway reference tag for each reference, from its character's id (valid per Runway's rule:
    3-16 characters, a letter first, then letters, digits, underscores; unique in the request): the id
    with other characters as `_` (`li-wei` -> `li_wei`); one too short or not starting with a letter
    gets `char_` before it (`bo` -> `char_bo`); a character's second image `<tag>_2`."""
    out: list[str] = []
    seen: dict[str, int] = {}
    for slot, fid in enumerate(ids, 1):
        base = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_]", "_", fid)).strip("_")
        if len(base) < 3 or not base[0].isalpha():
            base = f"char_{base}" if base else f"char{slot}"
        seen[fid] = seen.get(fid, 0) + 1
        suffix = f"_{seen[fid]}" if seen[fid] > 1 else ""
        tag = base[:16 - len(suffix)] + suffix
        if tag in out or not TAG.match(tag):
            tag = f"ref_{slot}"
        out.append(tag)
    return out


def failure(code: str | None, text: str) -> BackendError:
    """A FAILED task's `failureCode` as the class a flow acts on."""
    code = code or ""
    if "SAFETY" in code.upper():
        return RejectedError(text)
    if code.startswith(("INPUT_PREPROCESSING", "ASSET")):
        return PermanentError(text)
    if code.startswith("INTERNAL"):
        return TransientError(text)
    return RejectedError(text) if is_refusal(code, text) else TransientError(text)


def _prompt_text(text: str, what: str) -> str:
    if not text.strip():
        raise PermanentError(f"Runway needs a promptText for {what}")
    if len(text.encode("utf-16-le")) // 2 > MAX_PROMPT:
        raise PermanentError(f"the promptText for {what} is over Runway's {MAX_PROMPT} characters: "
                             f"{text[:80]}...")
    return text


class RunwayBackend(DirectBackend):
    """VideoBackend (resumable, billed) on Runway's developer API."""

    name = "runway"
    section = "runway"
    Options = RunwayOptions
    label = "Runway"
    keys_at = "https://dev.runwayml.com (API keys)"
    lookup_hint = "your Runway developer portal's usage and task history (dev.runwayml.com)"

    def __init__(self, options: RunwayOptions):
        super().__init__(options)
        self._memory: dict[str, str] = {}  # the records when no ledger is given (a backend used alone)

    def identity(self) -> dict:
        return {**super().identity(), "image_model": self.options.image_model}

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key()}", "X-Runway-Version": VERSION}

    def template_context(self) -> dict:
        return {"tags_of": lambda slots: tags([s.id for s in slots])}

    # --- the ledger's records (the still by content, the video step by client key) --------------

    def _get(self, key: str) -> str | None:
        if self._uploads is None:
            return self._memory.get(key)
        return self._uploads.get(self.account(), key, margin_s=0)

    def _put(self, key: str, value: str) -> None:
        if self._uploads is None:
            self._memory[key] = value
        else:
            self._uploads.put(self.account(), key, value)

    # --- the requests ------------------------------------------------------------------------------

    def seed(self, request: ShotRequest) -> int:
        return request.seed % SEED_RANGE

    def data_uri(self, path: Path) -> str:
        uri = self.image_data(path)
        if len(uri) >= MAX_DATA_URI:
            raise PermanentError(f"the image {path} is over Runway's 5 MB data URI limit when encoded")
        return uri

    def reference_uri(self, ref: Ref) -> str:
        if ref.asset is not None:
            if not ref.asset.startswith(("https://", "runway://")):
                raise PermanentError(f"cast asset for runway {ref.asset!r} ({ref.figure.name}): Runway takes an "
                                     f"https:// URL or a runway:// upload URI")
            return ref.asset
        return self.data_uri(ref.path)

    def two_step(self, fitted: Fitted) -> bool:
        """Reference mode through a still: whenever there are references, or text_to_video cannot."""
        o = self.options
        return bool(fitted.sent) or o.model not in TEXT_MODELS or o.aspect_ratio not in TEXT_RATIOS

    def still_body(self, request: ShotRequest, fitted: Fitted) -> dict:
        o = self.options
        if o.image_model == "gen4_image_turbo" and not fitted.sent:
            raise PermanentError(f"shot {request.shot_id}: gen4_image_turbo needs at least one reference image")
        body = {"model": o.image_model, "promptText": _prompt_text(self.prompt(request, fitted), "the still"),
                "ratio": IMAGE_RATIOS[o.aspect_ratio], "seed": self.seed(request)}
        if fitted.sent:
            body["referenceImages"] = [{"uri": self.reference_uri(r), "tag": t}
                                       for r, t in zip(fitted.sent, tags([r.figure.id for r in fitted.sent]))]
        return body

    def video_body(self, request: ShotRequest, prompt_text: str) -> dict:
        """image_to_video's body less its promptImage (the keyframe, or the still once it is made)."""
        o = self.options
        return {"model": o.model, "promptText": _prompt_text(prompt_text, "the video"),
                "ratio": VIDEO_RATIOS[o.aspect_ratio], "duration": int(self.seconds(request)),
                "seed": self.seed(request), **o.inputs}

    def create(self, endpoint: str, body: dict, doing: str) -> str:
        answer = self.call("POST", f"/v1/{endpoint}", doing, body=body)
        task = answer.get("id")
        if not isinstance(task, str) or not task:
            raise AnswerLost(f"{self.what} {doing}: the answer names no task id ({str(answer)[:200]})")
        return task

    # --- the job protocol -------------------------------------------------------------------------

    def submit(self, request: ShotRequest, client_key: str) -> str:
        o = self.options
        if o.mode == "image":
            start = self.start_frame(request)
            if start is None:
                raise PermanentError(f"shot {request.shot_id}: mode 'image' needs the shot's keyframe")
            body = {**self.video_body(request, self.prompt(request)), "promptImage": self.data_uri(start)}
            return self.create("image_to_video", body, "creating an image_to_video task")
        fitted = self.fitted(request)
        if o.mode == "text" or not self.two_step(fitted):
            body = {"model": o.model, "promptText": _prompt_text(self.prompt(request, fitted), "the video"),
                    "ratio": TEXT_RATIOS[o.aspect_ratio], "duration": int(self.seconds(request)),
                    "seed": self.seed(request), **o.inputs}
            return self.create("text_to_video", body, "creating a text_to_video task")
        plan = {"shot": request.shot_id, "body": self.video_body(request, request.motion_prompt or request.prompt)}
        self._put(f"runway:plan:{client_key}", json.dumps(plan))
        return f"{self.still(request, fitted, client_key)}{SEP}{client_key}"

    def still(self, request: ShotRequest, fitted: Fitted, client_key: str) -> str:
        """The still's task id: the recorded one for this content while Runway still has it, else a
        new one (its record committed before the create goes out)."""
        body = self.still_body(request, fitted)
        key = "runway:still:" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        record = self._get(key) or ""
        if record.startswith("task:"):
            still_id = record[len("task:"):]
            if self._still_alive(still_id):
                log.info("%s: shot %s reuses still %s", self.what, request.shot_id, still_id)
                return still_id
        elif record.startswith("sent:"):  # an earlier intent's create got no answer; the user chose a new job
            log.warning("%s: shot %s: the still asked for by %s got no answer; a new intent makes another",
                        self.what, request.shot_id, record[len("sent:"):])
        self._put(key, f"sent:{client_key}")
        try:
            still_id = self.create("text_to_image", body, "creating the still (text_to_image)")
        except AnswerLost as exc:  # it may exist: the record stays `sent`, the intent ends unknown
            raise AnswerLost(f"{exc} (the still may have been made and billed)",
                             retry_after_s=exc.retry_after_s) from None
        except BackendError:  # answered with an error, or never reached: nothing was made
            self._put(key, "none")
            raise
        self._put(key, f"task:{still_id}")
        return still_id

    def _still_alive(self, still_id: str) -> bool:
        """Whether a recorded still can still be used (made or being made)."""
        try:
            task = self.call("GET", f"/v1/tasks/{still_id}", f"checking still {still_id}")
        except NotFound:
            return False
        except TransientError as exc:  # no video job was asked for: a plain retry (never a lost answer)
            raise TransientError(f"{exc}", retry_after_s=exc.retry_after_s) from None
        return task.get("status") in ("PENDING", "THROTTLED", "RUNNING", "SUCCEEDED")

    def poll(self, job_id: str) -> Poll:
        if SEP not in job_id:
            return self.poll_task(job_id)
        still_id, client_key = job_id.split(SEP, 1)
        mark = f"runway:video:{client_key}"
        record = self._get(mark) or ""
        if record.startswith("task:"):
            return self.poll_task(record[len("task:"):])
        plan = json.loads(self._get(f"runway:plan:{client_key}") or "null")
        if record.startswith("sent"):
            raise self._lost(still_id, client_key, plan, record[len("sent:"):] or
                             "the render stopped while the request was out")
        if record.startswith("refused:"):
            return Poll("failed", error=PermanentError(record[len("refused:"):]))
        still = self.poll_task(still_id, "still")
        if still.state != "done":
            return Poll(still.state, progress=still.progress, error=still.error,
                        detail=f"the still {still_id}: {still.detail or still.state}")
        if plan is None:
            raise PermanentError(f"{self.what}: the video request planned for still {still_id} (client key "
                                 f"{client_key}) is not in this project's ledger")
        self._put(mark, "sent:")  # committed before the paid request goes out
        try:
            video_id = self.create("image_to_video", {**plan["body"], "promptImage": still.result},
                                   f"creating the video from still {still_id}")
        except AnswerLost as exc:
            self._put(mark, f"sent:{exc}")
            raise self._lost(still_id, client_key, plan, str(exc)) from None
        except TransientError:  # refused before anything was made (429, no connection): asked again
            self._put(mark, "none")
            raise
        except BackendError as exc:
            self._put(mark, f"refused:{exc}")
            return Poll("failed", error=exc)
        self._put(mark, f"task:{video_id}")
        return Poll("queued", detail=f"video task {video_id} from still {still_id}")

    def _lost(self, still_id: str, client_key: str, plan: dict | None, why: str) -> UnknownJob:
        shot = (plan or {}).get("shot", "SHOT")
        return UnknownJob(f"{self.what}: the video request for shot {shot} made from still {still_id} (client key "
                          f"{client_key}) got no answer ({why}); Runway may have made, and will bill, a video "
                          f"task. Check {self.lookup_hint}; nothing is paid again unless you choose to: "
                          f"`dramaforge rerun PROJECT --shot {shot} --new-job` (the still is reused)")

    def poll_task(self, task_id: str, what: str = "task") -> Poll:
        task = self.call("GET", f"/v1/tasks/{task_id}", f"polling {what} {task_id}")
        status = task.get("status")
        if status in ("PENDING", "THROTTLED"):
            return Poll("queued", detail=status.lower())
        if status == "RUNNING":
            progress = task.get("progress")
            return Poll("running", progress=float(progress) if isinstance(progress, (int, float)) else None)
        if status == "CANCELLED":
            return Poll("gone", detail=f"Runway says {what} {task_id} was cancelled")
        if status == "FAILED":
            code = task.get("failureCode")
            text = f"{self.what}: {what} {task_id} failed: {task.get('failure') or 'no reason given'}" + \
                (f" ({code})" if code else "")
            return Poll("failed", error=failure(code, text))
        if status != "SUCCEEDED":
            raise TransientError(f"{self.what}: {what} {task_id} has a status this backend does not know: {status!r}")
        output = task.get("output") or []
        url = output[0] if output and isinstance(output[0], str) else None
        if not url:
            return Poll("failed", error=PermanentError(f"{self.what}: {what} {task_id} succeeded without an output "
                                                       f"({str(task)[:200]})"))
        return Poll("done", result=url)

    def cancel(self, job_id: str) -> None:
        task_id = job_id
        if SEP in job_id:
            still_id, client_key = job_id.split(SEP, 1)
            record = self._get(f"runway:video:{client_key}") or ""
            if record.startswith("task:"):
                task_id = record[len("task:"):]
            else:  # only the still is out: stop it, unless it is made (deleting it would lose it)
                if self.poll_task(still_id, "still").state not in ("queued", "running"):
                    return
                task_id = still_id
        self.call("DELETE", f"/v1/tasks/{task_id}", f"cancelling task {task_id}", headers={"Accept": "*/*"})
