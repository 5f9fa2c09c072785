"""Kling's legacy lip sync as its schemas describe it (api-singapore.klingai.com): the JWT of
`fakes/kling.py`, `POST /v1/videos/lip-sync` `{input: {video_url, mode, audio_type, audio_file}}` whose
video it downloads from `video_url` (2-10 s, sides 720-1920 px) as Kling does, `GET
/v1/videos/lip-sync/{task_id}`, and the `{code, message, request_id}` envelope.

It also plays the user's media host: `GET {PREFIX}/media/<file>` serves `server.media_dir` (a test sets
it to the folder the pieces are written in), without any key, as `media_base_url` in `options`."""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
import urllib.request
import uuid

from fake_hosted import _json, _raw
from fakes.kling import ENV, KEY, KEY_ENV, SECRET, SECRET_ENV, _error, check_token  # noqa: F401 (ENV, KEY, SECRET)
from fakes_lipsync._media import marked, video_info

PREFIX = "/kling-lipsync"
MEDIA = "/media/"
TASKS = "/v1/videos/lip-sync"
MAX_AUDIO_BYTES = 5_000_000
INPUT_FIELDS = {"video_id", "video_url", "mode", "audio_type", "audio_file", "audio_url", "text", "voice_id",
                "voice_language", "voice_speed"}
_FAILED = {"fail-infra": "Internal service error, please retry (5000)",
           "fail-model": "No face was detected in the video",
           "refuse": "Failure to pass the risk control system: content policy",
           "cancel": "Task cancelled by the system"}


def options(server) -> dict:
    return {"base_url": server.base + PREFIX, "api_key_env": KEY_ENV, "secret_key_env": SECRET_ENV,
            "media_base_url": server.base + PREFIX + MEDIA.rstrip("/")}


def _media(server, h, method: str, name: str) -> None:
    """The user's media host: the file from `server.media_dir`, as any static web server answers."""
    server.calls.append(("media", name))
    folder = getattr(server, "media_dir", None)
    path = folder / name if folder is not None and re.fullmatch(r"[\w.-]+", name) else None
    if method != "GET" or path is None or not path.is_file():
        return _raw(h, 404, b"Not Found", "text/plain")
    _raw(h, 200, path.read_bytes(), "video/mp4")


def _task(server, job) -> dict:
    status = {"queued": "submitted", "running": "processing", "done": "succeed", "failed": "failed",
              "cancelled": "failed"}[job.state]
    data = {"task_id": job.id, "task_status": status, "created_at": int(job.created_at * 1000),
            "updated_at": int(time.time() * 1000)}
    if status == "failed":
        data["task_status_msg"] = _FAILED["cancel" if job.state == "cancelled" else job.outcome]
    if status == "succeed":
        data["task_result"] = {"videos": [{"id": f"v{job.id}", "url": f"{server.base}/files/{job.id}.mp4",
                                           "duration": str(job.input["duration"])}]}
        data["final_unit_deduction"] = "1"
    return data


def _invalid(body: dict) -> str | None:
    """What Kling's validation would refuse in this body before fetching anything (code 1201), or None."""
    if set(body) - {"input", "callback_url"} or not isinstance(body.get("input"), dict):
        return "the body is {input, callback_url}"
    i = body["input"]
    if set(i) - INPUT_FIELDS:
        return f"unknown input fields: {', '.join(sorted(set(i) - INPUT_FIELDS))}"
    if ("video_id" in i) == ("video_url" in i):
        return "exactly one of video_id and video_url"
    if "video_url" in i and not str(i["video_url"]).startswith(("http://", "https://")):
        return "video_url must be an http(s) URL"
    if i.get("mode") != "audio2video":
        return "this fake takes mode audio2video"
    if i.get("audio_type") != "file" or "audio_url" in i:
        return "this fake takes audio_type file"
    audio = i.get("audio_file")
    if not isinstance(audio, str) or audio.startswith("data:"):
        return "audio_file is base64 without a data: prefix"
    try:
        data = base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        return "audio_file is not base64"
    if not data or len(data) > MAX_AUDIO_BYTES:
        return "audio_file must be 1 byte to 5 MB"
    return None


def _fetched(url: str) -> tuple[bytes | None, str]:
    """The video at `url` as Kling downloads it, and what is wrong with it ('' when nothing is)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            video = resp.read()
    except OSError as exc:
        return None, f"video_url cannot be downloaded ({exc})"
    info = video_info(video)
    if info is None:
        return None, "video_url is not a video"
    if not 2.0 - 0.05 <= info.duration_s <= 10.0 + 0.05:
        return None, f"the video is {info.duration_s:.2f} s; 2 to 10 s are taken"
    if not (720 <= info.width <= 1920 and 720 <= info.height <= 1920):
        return None, f"the video is {info.width}x{info.height}; sides of 720 to 1920 px are taken"
    return video, ""


def route(server, h, method: str, path: str, query: dict, raw: bytes) -> None:
    if path.startswith(MEDIA):
        return _media(server, h, method, path[len(MEDIA):])
    bad = check_token(h.headers.get("Authorization"))
    if bad is not None:
        return _error(h, 401, *bad)
    if method == "POST" and path == TASKS:
        body = json.loads(raw or b"{}")
        server.calls.append(("submit", "lip-sync"))
        problem = _invalid(body)
        video, problem = (None, problem) if problem else _fetched(body["input"]["video_url"])
        if problem:
            return _error(h, 400, 1201, problem)
        server.calls.append(("fetched", body["input"]["video_url"]))
        audio = base64.b64decode(body["input"]["audio_file"])
        normal = {"duration": round(video_info(video).duration_s, 3)}

        def make():
            return server.create("lip-sync", normal, "8673", raw=body, headers=dict(h.headers),
                                 result=marked(video, audio))

        if server.fault(h, server.faults.next("submit"), after=make):
            return
        job = make()
        return _json(h, 200, {"code": 0, "message": "SUCCEED", "request_id": str(uuid.uuid4()),
                              "data": {"task_id": job.id, "task_status": "submitted",
                                       "created_at": int(job.created_at * 1000),
                                       "updated_at": int(job.created_at * 1000)}})
    m = re.fullmatch(re.escape(TASKS) + r"/([\w-]+)", path)
    if method == "GET" and m:
        task = m.group(1)
        server.calls.append(("status", task))
        if server.fault(h, server.faults.next("status")):
            return
        job = server.jobs.get(task)
        if job is None or job.model != "lip-sync" or job.state == "vanished":
            return _error(h, 404, 1203, "task not found")
        server.advance(job)
        if job.state == "vanished":
            return _error(h, 404, 1203, "task not found")
        return _json(h, 200, {"code": 0, "message": "SUCCEED", "request_id": str(uuid.uuid4()),
                              "data": _task(server, job)})
    _error(h, 404, 1202, f"no such method {method} {path}")
