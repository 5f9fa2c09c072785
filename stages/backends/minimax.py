"""MiniMax Hailuo on MiniMax's own API (v1): text, image (first frame) and subject reference to video.

Protocol (platform.minimax.io API reference and its OpenAPI; the official `MiniMax-AI/cli`,
`MiniMax-AI/skills` and `MiniMax-AI/MiniMax-MCP` clients; see the research notes for each field):
- base: `https://api.minimax.io` (global) or `https://api.minimaxi.com` (China; the keys differ).
  Auth: `Authorization: Bearer <key>`, `Content-Type: application/json`.
- create: `POST /v1/video_generation` `{model, prompt, prompt_optimizer, duration, resolution,
  first_frame_image | subject_reference}` -> `{task_id, base_resp: {status_code: 0, status_msg}}`.
  Models: MiniMax-Hailuo-2.3 and -02 (text, image), -2.3-Fast (image only), T2V-01(-Director),
  I2V-01(-Director, -live), S2V-01 (subject reference only). `duration` 6 or 10 (10 s only at 768P;
  the 01 series makes 6 s and is sent neither duration nor resolution), `resolution` "768P" (the
  default) or "1080P" (6 s only). `first_frame_image` (mode image) and the subject's image go inline
  as `data:image/jpeg;base64,...` (the cli sends data URLs). `subject_reference` is
  `[{type: character, image: [<one image>]}]`: one subject ("目前仅支持单个主体"), so a shot's second
  character is dropped (max_references 1) and named by `check`. There is no ratio field: a text or
  subject clip comes out landscape (16:9), an image clip follows its first frame's shape.
- poll: `GET /v1/query/video_generation?task_id=`: status Preparing, Queueing, Processing, Success
  (with `file_id`), Fail.
- download: `GET /v1/files/retrieve?file_id=` -> `file.download_url` (valid 1 h per the skills guide,
  9 h per older docs), fetched without the key; asked again for each attempt.
- errors: HTTP 200 with `base_resp.status_code` != 0: 1002 rate limit (retried), 1004 auth, 1008 no
  balance (both stop the render), 1026/1027 input/output sensitive content (refused; these two codes
  are widely cited but not in the official table's excerpt), 1000/1001/1024 unknown, timeout, internal
  (treated as a 5xx: the request may have made a job). A query's 2013 (invalid params: the task id we
  got from MiniMax) means MiniMax no longer knows the task. Whether a `Fail` carries a code is
  UNCONFIRMED: a failure without one is counted as MiniMax's own.
- no list of tasks and no cancel: a create whose answer was lost cannot be looked up (unknown-job).

Not an SDK: MiniMax ships none for Hailuo video (PyPI has unofficial clients only); the official
clients make one request per call, as this file does.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from stages.backends._direct import DirectBackend, DirectOptions, Limits
from stages.backends._http import AnswerLost, NotFound
from stages.backends._jobs import Poll
from stages.backends.base import PermanentError, RejectedError, ShotRequest, TransientError, is_refusal
from stages.core.trust import redact_url

# model -> the modes it takes (cli generate.ts, the MCP server's list, the S2V OpenAPI)
MODELS = {"MiniMax-Hailuo-2.3": {"text", "image"}, "MiniMax-Hailuo-2.3-Fast": {"image"},
          "MiniMax-Hailuo-02": {"text", "image"}, "T2V-01-Director": {"text"}, "T2V-01": {"text"},
          "I2V-01-Director": {"image"}, "I2V-01-live": {"image"}, "I2V-01": {"image"}, "S2V-01": {"reference"}}
PROMPT_MAX = 2000
REFUSED = {1026, 1027}  # input / output sensitive content
BUSY = {1002, 1039, 1041}  # rate limit, token limit, connection limit
UNKNOWN = {1000, 1001, 1024}  # unknown error, request timeout, internal error: as a 5xx
AUTH = {1004, 2049}  # not authorized / token does not match the group, invalid API key
INVALID = 2013  # invalid parameters


def hailuo(model: str) -> bool:
    """A Hailuo model (duration and resolution asked for), not the 01 series (6 s at one size)."""
    return model.split("-")[0] not in ("T2V", "I2V", "S2V")


class MinimaxOptions(DirectOptions):
    """`backends.minimax`: a Hailuo model on MiniMax's own API (keys from platform.minimax.io)."""

    LIMITS: ClassVar[Limits] = Limits(
        modes=frozenset({"text", "image", "reference"}), max_references=1, durations_s=(6.0, 10.0),
        aspect_ratios=("9:16", "16:9"), audio=False, resolutions=("768P", "1080P"), default_durations_s=(6.0, 10.0))

    model: str = Field("MiniMax-Hailuo-2.3", min_length=1,
                       description="MiniMax-Hailuo-2.3, MiniMax-Hailuo-2.3-Fast (image), MiniMax-Hailuo-02, "
                                   "S2V-01 (reference: one subject) ...; default: S2V-01 for mode reference, "
                                   "else MiniMax-Hailuo-2.3")
    mode: Literal["text", "image", "reference"] = Field("image", description="image (the default: the clip follows the keyframe's 9:16 shape), "
                                           "text, or reference (S2V-01: one character's face; 16:9)")
    base_url: str = Field("https://api.minimax.io", description="api.minimax.io; in China api.minimaxi.com "
                                                                "(its keys differ)")
    api_key_env: str = Field("MINIMAX_API_KEY", description="the API key (Bearer)")
    resolution: str | None = Field(None, description="768P (default for Hailuo) or 1080P (6 s clips only); the "
                                                     "01 series (S2V-01...) takes none")
    prompt_optimizer: bool = Field(False, description="let MiniMax rewrite the prompt (its default is on; "
                                                      "off keeps dramaforge's prompt as written)")
    text_model: str | None = Field("MiniMax-Hailuo-2.3", description="mode reference: the model for a shot "
                                                                     "that shows no character (S2V-01 needs a "
                                                                     "subject); none: such a shot fails")

    @model_validator(mode="before")
    @classmethod
    def _model_for_mode(cls, data):
        if isinstance(data, dict):
            data = dict(data)
            data.setdefault("model", "S2V-01" if data.get("mode") == "reference" else "MiniMax-Hailuo-2.3")
            if "resolution" not in data and hailuo(str(data["model"])):
                data["resolution"] = "768P"
        return data

    @model_validator(mode="after")
    def _documented(self) -> MinimaxOptions:
        modes = MODELS.get(self.model)
        if modes is not None and self.mode not in modes:
            raise ValueError(f"mode {self.mode}: {self.model} takes {' or '.join(sorted(modes))} (mode reference "
                             f"is S2V-01's)")
        if self.mode in ("text", "reference") and self.aspect_ratio != "16:9":
            raise ValueError(f"aspect_ratio {self.aspect_ratio}: MiniMax takes no ratio, and a mode {self.mode} "
                             f"clip comes out 16:9 (set aspect_ratio: 16:9, or mode image: the clip follows the "
                             f"keyframe's shape)")
        if hailuo(self.model):
            if self.resolution is None:
                raise ValueError(f"{self.model} needs a resolution: 768P or 1080P")
            if self.resolution == "1080P" and 10 in (self.durations or ()):
                raise ValueError("durations: 1080P makes only 6 s clips (10 s is 768P's)")
        else:
            if self.resolution is not None:
                raise ValueError(f"resolution: {self.model} makes one size and takes no resolution")
            if 10 in (self.durations or ()):
                raise ValueError(f"durations: {self.model} makes only 6 s clips")
        if self.text_model is not None and "text" not in MODELS.get(self.text_model, {"text"}):
            raise ValueError(f"text_model {self.text_model} makes no text-to-video")
        return self

    def clip_lengths(self) -> tuple[float, ...]:
        if not hailuo(self.model) or self.resolution == "1080P":
            return (6.0,)
        return super().clip_lengths()


class MinimaxBackend(DirectBackend):
    """VideoBackend (resumable, billed) on MiniMax's video generation API."""

    name = "minimax"
    section = "minimax"
    Options = MinimaxOptions
    label = "MiniMax"
    keys_at = "https://platform.minimax.io/user-center/basic-information/interface-key"
    lookup_hint = "your MiniMax platform account's usage records"

    def identity(self) -> dict:
        return {**super().identity(), "prompt_optimizer": self.options.prompt_optimizer,
                "text_model": self.options.text_model}

    # --- the request ------------------------------------------------------------------------------

    def body(self, request: ShotRequest) -> dict:
        o = self.options
        fitted = self.fitted(request)
        prompt = self.prompt(request, fitted)
        if len(prompt) > PROMPT_MAX:
            raise PermanentError(f"{self.what}: shot {request.shot_id}'s prompt is {len(prompt)} characters; MiniMax "
                                 f"takes at most {PROMPT_MAX}")
        model = o.model
        body: dict = {"model": model, "prompt": prompt, "prompt_optimizer": o.prompt_optimizer}
        if o.mode == "reference":
            subject = fitted.sent[0].figure.id if fitted.sent else None  # the speaker, else the first framed
            images = [self._subject_image(r) for r in fitted.sent if r.figure.id == subject]  # one subject only
            if images:
                body["subject_reference"] = [{"type": "character", "image": images}]
            elif o.text_model:  # a shot with no character: S2V-01 needs a subject
                body["model"] = model = o.text_model
            else:
                raise PermanentError(f"{self.what}: shot {request.shot_id} shows no character with a reference, "
                                     f"and S2V-01 needs one (set text_model for such shots)")
        start = self.start_frame(request)
        if start is not None:
            body["first_frame_image"] = self.image_data(start)
        if hailuo(model):
            body["duration"] = int(self.seconds(request))
            if model == o.model:  # the text fallback makes its default 768P
                body["resolution"] = o.resolution
        body.update(o.inputs)
        return body

    def _subject_image(self, ref) -> str:
        if ref.asset is None:
            return self.image_data(ref.path)
        if ref.asset.startswith(("https://", "http://")):  # MiniMax keeps no subjects: a saved one is a URL
            return ref.asset
        raise PermanentError(f"{self.what}: MiniMax keeps no saved subjects; cast {ref.figure.id}'s assets.minimax "
                             f"must be an image URL, not {ref.asset!r}")

    # --- answers ------------------------------------------------------------------------------------

    def error(self, answer: dict, doing: str) -> Exception | None:
        """The error class for a `base_resp` that is not success, else None."""
        code, said = base_resp(answer)
        if code == 0:
            return None
        text = f"{self.what} {doing}: MiniMax says {code} {said}".rstrip()
        if code in REFUSED or is_refusal(None, said):
            return RejectedError(text)
        if code in BUSY:
            return TransientError(text, retry_after_s=self.options.poll_s)
        if code in UNKNOWN:
            return AnswerLost(text)
        if code in AUTH:
            return PermanentError(f"{text} (check the key in ${self.options.api_key_env}; China and global keys "
                                  f"differ: base_url {redact_url(self.options.base_url)})")
        return PermanentError(text)

    # --- the job protocol -------------------------------------------------------------------------

    def submit(self, request: ShotRequest, client_key: str) -> str:
        # MiniMax takes no client key: nothing of ours is sent that a lookup could find
        answer = self.call("POST", "/v1/video_generation", "creating a task", body=self.body(request))
        err = self.error(answer, "creating a task")
        if err is not None:
            raise err
        task_id = answer.get("task_id")
        if not task_id:
            raise AnswerLost(f"{self.what} creating a task: the answer names no task_id ({str(answer)[:200]})")
        return str(task_id)

    def poll(self, job_id: str) -> Poll:
        doing = f"polling task {job_id}"
        answer = self.call("GET", f"/v1/query/video_generation?task_id={job_id}", doing)
        state, err = answer.get("status"), self.error(answer, doing)
        if state == "Fail" or (err is not None and isinstance(err, RejectedError)):
            base = answer.get("base_resp") or {}
            text = f"{self.what}: task {job_id} failed: {base.get('status_code')} {base.get('status_msg') or ''}"
            if isinstance(err, RejectedError):
                return Poll("failed", error=RejectedError(text))
            if base.get("status_code") == INVALID:  # MiniMax marks the request's parameters
                return Poll("failed", error=PermanentError(text))
            return Poll("failed", error=TransientError(text))  # MiniMax's own failure: re-created only as allowed
        if err is not None:
            if (answer.get("base_resp") or {}).get("status_code") == INVALID:  # the task id MiniMax gave us
                raise NotFound(f"{err} (MiniMax no longer knows task {job_id})")
            raise err
        if state in ("Preparing", "Queueing"):
            return Poll("queued")
        if state == "Processing":
            return Poll("running")
        if state != "Success":
            raise TransientError(f"{self.what}: task {job_id} has a status this backend does not know: {state!r}")
        file_id = answer.get("file_id")
        if file_id in (None, ""):
            return Poll("failed", error=PermanentError(f"{self.what}: task {job_id} succeeded without a file_id "
                                                       f"({str(answer)[:200]})"))
        return Poll("done", result=str(file_id))

    def fetch(self, job_id: str, poll: Poll, out: Path) -> None:
        """The file's download_url (asked for at each attempt: it expires), then the file."""
        doing = f"retrieving the file of task {job_id}"
        answer = self.call("GET", f"/v1/files/retrieve?file_id={poll.result}", doing)
        err = self.error(answer, doing)
        if err is not None:
            if (answer.get("base_resp") or {}).get("status_code") == INVALID:
                raise NotFound(str(err))
            raise err
        url = (answer.get("file") or {}).get("download_url") if isinstance(answer.get("file"), dict) else None
        if not url:
            raise TransientError(f"{self.what} {doing}: the answer has no download_url ({str(answer)[:200]})")
        self.http().download(url, out, f"downloading the video of task {job_id}")

    def cancel(self, job_id: str) -> None:
        raise PermanentError(f"{self.what}: MiniMax's API has no way to cancel task {job_id}")


def base_resp(answer: dict) -> tuple[int, str]:
    """(status code, message) of a MiniMax answer's `base_resp` (every MiniMax API reports errors there,
    in an HTTP 200); 0 is success, -1 a code that is not a number."""
    base = answer.get("base_resp") if isinstance(answer.get("base_resp"), dict) else {}
    try:
        code = int(base.get("status_code") or 0)
    except (TypeError, ValueError):
        code = -1
    return code, str(base.get("status_msg") or "").strip()
