"""MiniMax's video API (v1) as its docs describe it (api.minimax.io): Bearer key, `POST /v1/video_generation`,
`GET /v1/query/video_generation?task_id=`, `GET /v1/files/retrieve?file_id=` (the download_url), errors as
HTTP 200 with `base_resp.status_code` != 0; no task list, no cancel."""

from __future__ import annotations

import json
import re

from fake_hosted import _json

PREFIX = "/minimax"
KEY_ENV, KEY = "DRAMAFORGE_TEST_MINIMAX_API_KEY", "mm-test-0001"
ENV = {KEY_ENV: KEY}
CANCELS = False
ERRORS = {"fail-model": "JobFailed"}  # a Fail carries no reason the docs name: counted as MiniMax's own failure
MODELS = {"MiniMax-Hailuo-2.3": {"text", "image"}, "MiniMax-Hailuo-2.3-Fast": {"image"},
          "MiniMax-Hailuo-02": {"text", "image"}, "T2V-01-Director": {"text"}, "T2V-01": {"text"},
          "I2V-01-Director": {"image"}, "I2V-01-live": {"image"}, "I2V-01": {"image"}, "S2V-01": {"reference"}}
FIELDS = {"model", "prompt", "prompt_optimizer", "fast_pretreatment", "duration", "resolution", "first_frame_image",
          "last_frame_image", "subject_reference", "callback_url", "aigc_watermark"}
_FAILED = {"refuse": (1027, "output new_sensitive")}  # fail-infra, fail-model, cancel: a bare Fail


def options(server) -> dict:
    # the shared tests' shot has no keyframe and no characters: the text model (16:9, MiniMax has no ratio)
    return {"base_url": server.base + PREFIX, "api_key_env": KEY_ENV, "mode": "text", "aspect_ratio": "16:9"}


def _base(h, code: int, message: str, **data) -> None:
    _json(h, 200, {**data, "base_resp": {"status_code": code, "status_msg": message}})


def _image(value) -> bool:
    return isinstance(value, str) and bool(value.startswith(("http://", "https://")) or re.match(
        r"data:image/(jpeg|jpg|png|webp);base64,[A-Za-z0-9+/=]+$", value))


def _invalid(body: dict) -> str | None:
    """What MiniMax's validation would refuse in this create body (2013), or None."""
    model = body.get("model")
    if model not in MODELS:
        return f"model {model!r} is not supported"
    if set(body) - FIELDS:
        return f"unknown fields {sorted(set(body) - FIELDS)}"
    prompt = body.get("prompt", "")
    if not isinstance(prompt, str) or len(prompt) > 2000:
        return "prompt is a string of at most 2000 characters"
    if not isinstance(body.get("prompt_optimizer", True), bool):
        return "prompt_optimizer is a boolean"
    hailuo = model.startswith("MiniMax-Hailuo")
    duration, resolution = body.get("duration", 6), body.get("resolution", "768P" if hailuo else None)
    if duration not in ((6, 10) if hailuo else (6,)) or type(duration) is not int:
        return f"duration {duration!r} is not supported by {model}"
    if hailuo and resolution not in ("768P", "1080P", "512P"):
        return f"resolution {resolution!r} is not supported by {model}"
    if not hailuo and "resolution" in body:
        return f"{model} takes no resolution"
    if resolution == "1080P" and duration != 6:
        return "1080P supports only 6s"
    modes = MODELS[model]
    if "image" in modes and "text" not in modes and "first_frame_image" not in body:
        return f"{model} needs first_frame_image"
    if "first_frame_image" in body and ("image" not in modes or not _image(body["first_frame_image"])):
        return "first_frame_image is a URL or a data:image/...;base64 URL, for an image-to-video model"
    subjects = body.get("subject_reference")
    if model == "S2V-01":
        if not (isinstance(subjects, list) and len(subjects) == 1 and isinstance(subjects[0], dict)
                and set(subjects[0]) == {"type", "image"} and subjects[0]["type"] == "character"):
            return "subject_reference is one subject: [{type: character, image: [...]}]"
        images = subjects[0]["image"]
        if not (isinstance(images, list) and len(images) == 1 and all(_image(i) for i in images)):
            return "subject_reference[0].image is a list of one image URL"
    elif subjects is not None:
        return "subject_reference is only for S2V-01"
    return None


def route(server, h, method: str, path: str, query: dict, raw: bytes) -> None:
    if h.headers.get("Authorization") != f"Bearer {KEY}":
        return _base(h, 1004, "login fail: Please carry the API secret key in the 'Authorization' field of the "
                              "request header")
    if method == "POST" and path == "/v1/video_generation":
        if h.headers.get("Content-Type") != "application/json":
            return _base(h, 2013, "invalid params, Content-Type must be application/json")
        body = json.loads(raw or b"{}")
        server.calls.append(("submit", body.get("model", "")))
        problem = _invalid(body)
        if problem:
            return _base(h, 2013, f"invalid params, {problem}", task_id="")
        normal = {"prompt": body.get("prompt", ""), "duration": body.get("duration", 6)}

        def make():
            return server.create(body["model"], normal, "10691611221", raw=body, headers=dict(h.headers))

        if server.fault(h, server.faults.next("submit"), after=make):
            return
        job = make()
        return _base(h, 0, "success", task_id=job.id)
    if method == "GET" and path == "/v1/query/video_generation":
        task = query.get("task_id", [""])[0]
        server.calls.append(("status", task))
        if server.fault(h, server.faults.next("status")):
            return
        job = server.jobs.get(task)
        if job is None or job.state == "vanished":
            return _base(h, 2013, "invalid params, task not found")
        server.advance(job)
        if job.state == "vanished":
            return _base(h, 2013, "invalid params, task not found")
        status = {"queued": "Queueing" if job.polls > 1 else "Preparing", "running": "Processing", "done": "Success",
                  "failed": "Fail", "cancelled": "Fail"}[job.state]
        if status == "Fail" and job.outcome in _FAILED:
            return _base(h, *_FAILED[job.outcome], task_id=job.id, status=status)
        extra = {"file_id": f"9{job.id}", "video_width": 1366, "video_height": 768} if status == "Success" else {}
        return _base(h, 0, "success", task_id=job.id, status=status, **extra)
    if method == "GET" and path == "/v1/files/retrieve":
        file_id = query.get("file_id", [""])[0]
        server.calls.append(("retrieve", file_id))
        if server.fault(h, server.faults.next("result")):
            return
        job = server.jobs.get(file_id[1:])
        if job is None or job.state != "done":
            return _base(h, 2013, "invalid params, file not found")
        # the download itself is the shared route: it counts ("download", id) and takes the download faults
        return _base(h, 0, "success", file={"file_id": int(file_id), "bytes": len(server.mp4), "created_at":
                                            int(job.created_at), "filename": "output_aigc.mp4",
                                            "purpose": "video_generation",
                                            "download_url": f"{server.base}/files/{job.id}.mp4"})
    _json(h, 404, {"base_resp": {"status_code": 404, "status_msg": f"no such method {method} {path}"}})


def references(server, job) -> int:
    """Images of the subject reference the create carried."""
    return sum(len(s.get("image") or []) for s in job.body.get("subject_reference") or [])


REFERENCE_OPTIONS = {"aspect_ratio": "16:9"}  # S2V-01 makes 16:9 only (no ratio field)
