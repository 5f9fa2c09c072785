"""Seedance on Volcengine Ark as its SDK and docs describe it (ark.cn-beijing.volces.com/api/v3): Bearer
key, `POST /contents/generations/tasks` with `content[]` items, `GET .../tasks/{id}`, the task list,
`DELETE .../tasks/{id}` (cancels a queued task, refuses a running one, erases a finished one), and
`{error: {code, message, param, type}}` errors."""

from __future__ import annotations

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
    texts, images = [], []
    for item in content:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text" and isinstance(item.get("text"), str) and set(item) == {"type", "text"}:
            texts.append(item["text"])
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
            return "content", f"content item {str(item)[:80]} is not {{type: text, text}} or {{type: image_url, ...}}"
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
    checks = [("ratio", lambda v: v in RATIOS), ("resolution", lambda v: v in RESOLUTIONS),
              ("duration", lambda v: type(v) is int and (v == -1 or 4 <= v <= 15)),
              ("seed", lambda v: type(v) is int and -1 <= v <= 2 ** 32 - 1),
              ("watermark", lambda v: type(v) is bool), ("generate_audio", lambda v: type(v) is bool),
              ("camera_fixed", lambda v: type(v) is bool)]
    for name, ok in checks:
        if body.get(name) is not None and not ok(body[name]):
            return name, f"{body[name]!r} is not allowed"
    return None


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
