"""Vidu's enterprise API as its docs describe it (api.vidu.com/ent/v2): `Authorization: Token <key>`,
`POST /text2video`, `/img2video`, `/reference2video` (subject mode: `subjects` of {id|name, images,
voice_id?}, named `@id` in the prompt) answering a flat `{task_id, state: created, ...}`,
`GET /tasks/{id}/creations` (created, queueing, processing, success with `creations[0].url`, failed
with `err_code`), `POST /tasks/{id}/cancel`, and `{code, reason, message, metadata}` errors."""

from __future__ import annotations

import base64
import io
import json
import re
import uuid

from fake_hosted import _json, _stamp

PREFIX = "/vidu"
KEY_ENV, KEY = "DRAMAFORGE_TEST_VIDU_KEY", "vda_test_0001"
ENV = {KEY_ENV: KEY}
CANCELS = True
ENDPOINTS = {"text2video": {"viduq2", "viduq1"},
             "img2video": {"viduq2-pro", "viduq2-pro-fast", "viduq2-turbo", "viduq1", "viduq1-classic", "vidu2.0"},
             "reference2video": {"viduq2", "viduq1", "vidu2.0"}}
COMMON = {"model", "prompt", "duration", "seed", "resolution", "movement_amplitude", "bgm", "payload", "off_peak",
          "callback_url", "watermark", "wm_position", "wm_url", "meta_data", "is_rec"}
ALLOWED = {"text2video": COMMON | {"aspect_ratio", "style"},
           "img2video": COMMON | {"images", "audio", "voice_id"},
           "reference2video": COMMON | {"images", "subjects", "aspect_ratio", "audio", "videos"}}
_FAILED = {"fail-infra": "InternalServiceFailure", "fail-model": "ImageDownloadFailure",
           "refuse": "CreationPolicyViolation"}
# create errors a test asks for: the next create answers this reason (and makes nothing)
REFUSALS: list[tuple[int, str, str]] = []


def options(server) -> dict:
    return {"base_url": server.base + PREFIX, "api_key_env": KEY_ENV}


def references(server, job) -> int:
    """Reference images the create carried (img2video's one image is a start frame, not one)."""
    return sum(len(s.get("images") or []) for s in job.body.get("subjects") or [])


def _error(h, status: int, reason: str, message: str) -> None:
    _json(h, status, {"code": status, "reason": reason, "message": message,
                      "metadata": {"trace_id": uuid.uuid4().hex}})


def _image_ok(item) -> str | None:
    if not isinstance(item, str):
        return "images are strings"
    if item.startswith(("http://", "https://")):
        return None
    m = re.fullmatch(r"data:image/(png|jpeg|jpg|webp);base64,([A-Za-z0-9+/=]+)", item)
    if not m:
        return "an image is a URL or base64 with its data:image/...;base64, prefix"
    from PIL import Image

    try:
        w, h = Image.open(io.BytesIO(base64.b64decode(m.group(2)))).size
    except Exception:  # noqa: BLE001 -- any decoder's complaint
        return "the image cannot be decoded"
    if min(w, h) < 128 or max(w, h) > 4 * min(w, h):
        return f"the image is {w}x{h}: at least 128 px a side, ratio within 1:4 to 4:1"
    return None


def _invalid(endpoint: str, body: dict) -> tuple[str, str] | None:
    """(reason, message) Vidu's validation would answer 400 with, or None."""
    extra = sorted(set(body) - ALLOWED[endpoint])
    if extra:
        return "FieldUnwanted", f"field is unwanted: {', '.join(extra)}"
    if body.get("model") not in ENDPOINTS[endpoint]:
        return "FieldInvalid", f"model {body.get('model')!r} is not supported by {endpoint}"
    if not isinstance(body.get("prompt"), str) or (endpoint == "text2video" and not body["prompt"]):
        return "FieldLacking", "field is missing or empty: prompt"
    if len(body["prompt"]) > 2000:
        return "FieldInvalid", "prompt is over 2000 characters"
    d = body.get("duration")
    if d is not None and (not isinstance(d, int) or isinstance(d, bool) or not 1 <= d <= 10):
        return "FieldInvalid", "duration must be an integer of seconds"
    if "seed" in body and (not isinstance(body["seed"], int) or body["seed"] < 0):
        return "FieldInvalid", "seed must be a non-negative integer"
    if "resolution" in body and body["resolution"] not in ("360p", "540p", "720p", "1080p"):
        return "FieldInvalid", "resolution"
    if "aspect_ratio" in body and body["aspect_ratio"] not in ("16:9", "9:16", "1:1", "4:3", "3:4"):
        return "FieldInvalid", "aspect_ratio"
    if "audio" in body and not isinstance(body["audio"], bool):
        return "FieldInvalid", "audio is a boolean"
    if endpoint == "img2video":
        images = body.get("images")
        if not isinstance(images, list) or len(images) != 1:
            return "FieldItemCountOutOfRange", "images takes exactly 1 image"
        return ("ImageFormatInvalid", _image_ok(images[0])) if _image_ok(images[0]) else None
    if endpoint == "reference2video":
        subjects = body.get("subjects")
        if subjects is None:
            return "FieldLacking", "field is missing or empty: subjects (this fake speaks subject mode)"
        if not isinstance(subjects, list) or not 1 <= len(subjects) <= 7:
            return "FieldItemCountOutOfRange", "subjects takes 1 to 7 subjects"
        names, total = [], 0
        for s in subjects:
            key = s.get("id", s.get("name")) if isinstance(s, dict) else None
            if not isinstance(key, str) or not key or set(s) - {"id", "name", "images", "voice_id"}:
                return "FieldInvalid", "a subject is {id or name, images, voice_id?}"
            images = s.get("images") or []
            if not 1 <= len(images) <= 3:
                return "FieldItemCountOutOfRange", f"subject {key} takes 1 to 3 images"
            for item in images:
                if _image_ok(item):
                    return "ImageFormatInvalid", _image_ok(item)
            names.append(key)
            total += len(images)
        if len(set(names)) != len(names):
            return "FieldInvalid", "subject ids must be unique"
        if total > (3 if body["model"] == "vidu2.0" else 7):
            return "FieldItemCountOutOfRange", f"{total} images in all is over the limit"
        for named in re.findall(r"@(\w+)", body["prompt"]):
            if named not in names:
                return "FieldInvalid", f"the prompt names @{named} but the subjects are {names}"
    return None


def _creations(server, job) -> dict:
    state = {"queued": "created" if job.polls <= 1 else "queueing", "running": "processing", "done": "success",
             "failed": "failed", "cancelled": "failed"}[job.state]
    out = {"id": job.id, "state": state, "err_code": "", "credits": int(job.input["duration"]) * 10,
           "payload": job.body.get("payload", ""), "bgm": False, "off_peak": False, "creations": []}
    if state == "failed":
        out["err_code"] = "UserCancelled" if job.state == "cancelled" else _FAILED[job.outcome]
    if state == "success":
        out["creations"] = [{"id": f"c{job.id}", "url": f"{server.base}/files/{job.id}.mp4",
                             "cover_url": f"{server.base}/files/{job.id}.jpg",
                             "watermarked_url": f"{server.base}/files/{job.id}.mp4"}]
    return out


def route(server, h, method: str, path: str, query: dict, raw: bytes) -> None:
    if h.headers.get("Authorization") != f"Token {KEY}":
        return _error(h, 401, "Unauthorized", "invalid api key")
    m = re.fullmatch(r"/(text2video|img2video|reference2video)", path)
    if m and method == "POST":
        endpoint = m.group(1)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return _error(h, 400, "BadRequest", "the body is not JSON")
        server.calls.append(("submit", f"{endpoint}:{body.get('model')}"))
        problem = _invalid(endpoint, body)
        if problem:
            return _error(h, 400, *problem)
        if REFUSALS:
            return _error(h, *REFUSALS.pop(0))
        normal = {"prompt": body["prompt"], "duration": body.get("duration", 5)}

        def make():
            return server.create(f"{endpoint}:{body['model']}", normal, "8123456", raw=body, headers=dict(h.headers))

        if server.fault(h, server.faults.next("submit"), after=make):
            return
        job = make()
        answer = {k: v for k, v in body.items() if k not in ("images", "subjects")}
        return _json(h, 200, {**answer, "task_id": job.id, "state": "created", "credits": int(normal["duration"]) * 10,
                              "watermark": False, "created_at": _stamp(job.created_at)})
    m = re.fullmatch(r"/tasks/([\w-]+)/(creations|cancel)", path)
    if m and m.group(2) == "creations" and method == "GET":
        server.calls.append(("status", m.group(1)))
        if server.fault(h, server.faults.next("status")):
            return
        job = server.jobs.get(m.group(1))
        if job is None or job.state == "vanished":
            return _error(h, 404, "TaskNotFound", "task not found")
        server.advance(job)
        if job.state == "vanished":
            return _error(h, 404, "TaskNotFound", "task not found")
        return _json(h, 200, _creations(server, job))
    if m and m.group(2) == "cancel" and method == "POST":
        server.calls.append(("cancel", m.group(1)))
        job = server.jobs.get(m.group(1))
        body = json.loads(raw or b"{}")
        if body.get("id") != m.group(1):
            return _error(h, 400, "FieldInvalid", "id must be the task's id")
        if job is None:
            return _error(h, 404, "TaskNotFound", "task not found")
        if job.state in ("done", "failed", "cancelled"):
            return _error(h, 400, "BadRequest", f"task state is {job.state}, can not cancel")
        job.cancelled, job.state = True, "cancelled"
        return _json(h, 200, {})
    _error(h, 404, "NotFound", f"no route {method} {path}")
