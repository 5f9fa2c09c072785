"""Seedance on Volcengine Ark as its SDK and docs describe it (ark.cn-beijing.volces.com/api/v3): Bearer
key, `POST /contents/generations/tasks` with `content[]` items, `GET .../tasks/{id}`, the task list,
`DELETE .../tasks/{id}` (cancels a queued task, refuses a running one, erases a finished one), and
`{error: {code, message, param, type}}` errors.

Reference audio as doc 82379/1520757 describes it: `{type: audio_url, audio_url: {url}, role:
reference_audio}`, the url a public URL, `asset://<id>` or `data:audio/<wav|mp3>;base64,...` (lower
case); wav or mp3, 2-15 s a clip, at most 3 clips and 15 s in all, 15 MB a clip; never without a
reference image or video, never with a first or last frame; the prompt's "Audio N" must name one."""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import time
import uuid

from fake_hosted import _json

PREFIX = "/seedance"
KEY_ENV, KEY = "DRAMAFORGE_TEST_ARK_API_KEY", "ark-test-0001"
ENV = {KEY_ENV: KEY}
CANCELS = False  # Ark cancels only a queued task; the shared test cancels a running one: refused, as Ark does
TASKS = "/api/v3/contents/generations/tasks"
RATIOS = ("16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "adaptive")
RESOLUTIONS = ("480p", "720p", "1080p")
ROLES = ("first_frame", "last_frame", "reference_image")
AUDIO_FORMATS = ("wav", "mp3")
_FAILED = {"fail-infra": ("InternalServiceError", "The service encountered an unexpected internal error."),
           "fail-model": ("InvalidParameter",
                          "The parameter `content` specified in the request is not valid: the image could not be used."),
           "refuse": ("OutputVideoSensitiveContentDetected",
                      "The request failed because the output video may contain sensitive information.")}


def options(server) -> dict:
    return {"base_url": f"{server.base}{PREFIX}/api/v3", "api_key_env": KEY_ENV}


def _error(h, status: int, code: str, message: str, kind: str, param: str = "") -> None:
    request_id = uuid.uuid4().hex
    _json(h, status, {"error": {"code": code, "message": f"{message} Request id: {request_id}", "param": param,
                                "type": kind}}, {"X-Request-Id": request_id})


def _bad(h, message: str, param: str = "") -> None:
    _error(h, 400, "InvalidParameter", f"The parameter `{param}` specified in the request is not valid: {message}.",
           "BadRequest", param)


def _task(server, job) -> dict:
    status = {"queued": "queued", "running": "running", "done": "succeeded", "failed": "failed",
              "cancelled": "cancelled"}[job.state]
    body = job.body
    task = {"id": job.id, "model": body["model"], "status": status, "created_at": int(job.created_at),
            "updated_at": int(time.time()), "seed": body.get("seed", 1), "resolution": body.get("resolution", "720p"),
            "ratio": body.get("ratio", "adaptive"), "duration": body.get("duration", 5), "framespersecond": 24,
            "service_tier": "default", "execution_expires_after": 172800,
            "generate_audio": body.get("generate_audio", True), "draft": False, "error": None}
    if status == "failed":
        code, message = _FAILED.get(job.outcome, _FAILED["fail-infra"])
        task["error"] = {"code": code, "message": message}
    if status == "succeeded":
        task["content"] = {"video_url": f"{server.base}/files/{job.id}.mp4"}
        task["usage"] = {"completion_tokens": 108900, "total_tokens": 108900}
    return task


def _invalid(body: dict) -> tuple[str, str] | None:
    """What Ark's validation would refuse in this create body: (param, why), or None."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model", "model is required"
    content = body.get("content")
    if not isinstance(content, list) or not content:
        return "content", "content is required"
    texts, images, audios = [], [], []
    for item in content:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text" and isinstance(item.get("text"), str) and set(item) == {"type", "text"}:
            texts.append(item["text"])
        elif kind == "audio_url" and set(item) <= {"type", "audio_url", "role"}:
            problem = _bad_audio(item)
            if problem:
                return "content", problem
            audios.append(item)
        elif kind == "image_url" and set(item) <= {"type", "image_url", "role"}:
            url = (item.get("image_url") or {}).get("url")
            if set(item["image_url"]) != {"url"} or not isinstance(url, str) or not (
                    url.startswith(("http://", "https://", "asset://"))
                    or re.match(r"data:image/(jpeg|png|webp|bmp|tiff|gif);base64,[A-Za-z0-9+/=]+$", url)):
                return "content", "image_url.url must be a URL, data:image/<fmt>;base64,... or asset://<id>"
            if item.get("role", "first_frame") not in ROLES:
                return "content", f"role {item.get('role')!r} is not one of {', '.join(ROLES)}"
            images.append(item.get("role", "first_frame"))
        else:
            return "content", (f"content item {str(item)[:80]} is not {{type: text, text}}, {{type: image_url, ...}} "
                               f"or {{type: audio_url, ...}}")
    if len(texts) > 1:
        return "content", "at most one text item"
    if images.count("first_frame") > 1 or images.count("last_frame") > 1:
        return "content", "at most one first_frame and one last_frame"
    if images.count("reference_image") > 9:
        return "content", "at most 9 reference images"
    for n in re.findall(r"\bImage (\d+)\b|图片(\d+)", texts[0] if texts else ""):
        n = int(n[0] or n[1])
        if not 1 <= n <= len(images):
            return "content", f"the prompt names Image {n} but the request has {len(images)} images"
    if audios:
        if "2-0" not in body["model"]:
            return "content", "audio input is supported only by Seedance 2.0 models"
        if images.count("reference_image") == 0:
            return "content", "audio cannot be the only reference: add at least one reference image or video"
        if "first_frame" in images or "last_frame" in images:
            return "content", "first frame, first and last frame and multimodal reference cannot be mixed"
        if len(audios) > 3:
            return "content", "at most 3 reference audios"
        lengths = [_seconds(a) for a in audios]
        if any(s is not None and not 2.0 <= s <= 15.0 for s in lengths):
            return "content", f"each reference audio must be 2 to 15 s (got {lengths})"
        if sum(s or 0.0 for s in lengths) > 15.0:
            return "content", f"the reference audios add up to {sum(s or 0.0 for s in lengths):.2f} s, over 15 s"
    for n in re.findall(r"\bAudio (\d+)\b|音频(\d+)", texts[0] if texts else ""):
        n = int(n[0] or n[1])
        if not 1 <= n <= len(audios):
            return "content", f"the prompt names Audio {n} but the request has {len(audios)} audios"
    checks = [("ratio", lambda v: v in RATIOS), ("resolution", lambda v: v in RESOLUTIONS),
              ("duration", lambda v: type(v) is int and (v == -1 or 4 <= v <= 15)),
              ("seed", lambda v: type(v) is int and -1 <= v <= 2 ** 32 - 1),
              ("watermark", lambda v: type(v) is bool), ("generate_audio", lambda v: type(v) is bool),
              ("camera_fixed", lambda v: type(v) is bool)]
    for name, ok in checks:
        if body.get(name) is not None and not ok(body[name]):
            return name, f"{body[name]!r} is not allowed"
    return None


def _bad_audio(item: dict) -> str | None:
    """Why Ark would refuse this audio item, or None."""
    ref = item.get("audio_url")
    url = ref.get("url") if isinstance(ref, dict) else None
    if not isinstance(ref, dict) or set(ref) != {"url"} or not isinstance(url, str):
        return "audio_url must be {url}"
    if item.get("role", "reference_audio") != "reference_audio":
        return f"audio role {item.get('role')!r} is not reference_audio"
    if url.startswith(("http://", "https://", "asset://")):
        return None
    m = re.fullmatch(r"data:audio/([a-z0-9]+);base64,([A-Za-z0-9+/=]+)", url)
    if not m or m.group(1) not in AUDIO_FORMATS:
        return "audio_url.url must be a URL, data:audio/<wav|mp3>;base64,... (lower case) or asset://<id>"
    try:
        data = base64.b64decode(m.group(2), validate=True)
    except binascii.Error:
        return "audio_url.url is not valid base64"
    if len(data) > 15 * 1000 * 1000:
        return "a reference audio must be at most 15 MB"
    if _seconds(item) is None:
        return f"the reference audio cannot be decoded as {m.group(1)}"
    return None


def _seconds(item: dict) -> float | None:
    """A data-URL audio item's length in seconds (None: a URL not fetched here, or not decodable)."""
    m = re.fullmatch(r"data:audio/([a-z0-9]+);base64,(.+)", item["audio_url"]["url"], re.DOTALL)
    if not m:
        return None
    data = base64.b64decode(m.group(2))
    if m.group(1) == "wav":
        import wave

        try:
            with wave.open(io.BytesIO(data)) as w:
                return w.getnframes() / w.getframerate()
        except (wave.Error, EOFError):
            return None
    try:
        import av

        with av.open(io.BytesIO(data), format="mp3") as c:
            return c.duration / 1_000_000 if c.duration else None
    except Exception:  # noqa: BLE001 -- not an MP3 the decoder reads
        return None


def audios(job) -> list[bytes]:
    """The reference audio a create carried, decoded from its data URLs, in order."""
    return [base64.b64decode(c["audio_url"]["url"].split(",", 1)[1]) for c in job.body.get("content") or []
            if c.get("type") == "audio_url"]


def route(server, h, method: str, path: str, query: dict, raw: bytes) -> None:
    if h.headers.get("Authorization") != f"Bearer {KEY}":
        return _error(h, 401, "AuthenticationError", "The API key or AK/SK in the request is missing or invalid.",
                      "Unauthorized")
    m = re.fullmatch(re.escape(TASKS) + r"(?:/([\w-]+))?", path)
    if not m:
        return _error(h, 404, "NotFound", f"no such method {method} {path}", "NotFound")
    task = m.group(1)
    if method == "POST" and task is None:
        if h.headers.get("Content-Type") != "application/json":
            return _bad(h, "Content-Type must be application/json", "Content-Type")
        body = json.loads(raw or b"{}")
        server.calls.append(("submit", body.get("model", "")))
        problem = _invalid(body)
        if problem:
            return _bad(h, problem[1], problem[0])
        text = next(i["text"] for i in body["content"] if i["type"] == "text")
        normal = {"prompt": text, "duration": body.get("duration", 5)}

        def make():
            return server.create(body["model"], normal, "cgt-20260101000000-", raw=body, headers=dict(h.headers))

        if server.fault(h, server.faults.next("submit"), after=make):
            return
        job = make()
        return _json(h, 200, {"id": job.id})
    job = server.jobs.get(task) if task else None
    if method == "GET" and task is not None:
        server.calls.append(("status", task))
        if server.fault(h, server.faults.next("status")):
            return
        if job is None or job.state == "vanished":
            return _error(h, 404, "ResourceNotFound", f"The specified task {task} is not found.", "NotFound")
        server.advance(job)
        if job.state == "vanished":
            return _error(h, 404, "ResourceNotFound", f"The specified task {task} is not found.", "NotFound")
        return _json(h, 200, _task(server, job))
    if method == "DELETE" and task is not None:
        server.calls.append(("cancel", task))
        if job is None or job.state == "vanished":
            return _error(h, 404, "ResourceNotFound", f"The specified task {task} is not found.", "NotFound")
        if job.state == "queued":
            job.cancelled, job.state = True, "cancelled"
            return _json(h, 200, {})
        if job.state in ("done", "failed"):  # a finished task's record is erased
            job.state = "vanished"
            return _json(h, 200, {})
        return _bad(h, f"task {task} in status {'running' if job.state == 'running' else job.state} cannot be "
                       f"cancelled or deleted", "id")
    if method == "GET":
        server.calls.append(("list", ",".join(query.get("filter.task_ids", []))))
        if server.fault(h, server.faults.next("listing")):
            return
        page, size = int(query.get("page_num", ["1"])[0]), int(query.get("page_size", ["10"])[0])
        if not (1 <= page <= 500 and 1 <= size <= 500):
            return _bad(h, "page_num and page_size are 1 to 500", "page_size")
        ids, status = query.get("filter.task_ids"), query.get("filter.status", [None])[0]
        tasks = [_task(server, j) for j in reversed(server.created())
                 if j.id.startswith("cgt-") and j.state != "vanished" and (not ids or j.id in ids)]
        tasks = [t for t in tasks if status is None or t["status"] == status]
        return _json(h, 200, {"total": len(tasks), "items": tasks[(page - 1) * size:page * size]})
    _error(h, 404, "NotFound", f"no such method {method} {path}", "NotFound")


def references(server, job) -> int:
    """Reference images (and saved assets) the create carried: content items in the reference role."""
    return sum(1 for c in job.body.get("content") or [] if c.get("role") == "reference_image")
