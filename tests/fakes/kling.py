"""Kling's own API as its docs describe it (api-singapore.klingai.com): a JWT checked with the secret,
`POST /v1/videos/{family}`, `GET /v1/videos/{family}/{task_id}` (or the external_task_id), the
family's task list, its `{code, message, request_id}` errors; Kling documents no cancel."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid

from fake_hosted import _json

PREFIX = "/kling"
KEY_ENV, KEY = "DRAMAFORGE_TEST_KLING_AK", "ak-test-0001"
SECRET_ENV, SECRET = "DRAMAFORGE_TEST_KLING_SK", "sk-test-secret-0001-of-thirty-two-bytes"
ENV = {KEY_ENV: KEY, SECRET_ENV: SECRET}
CANCELS = False
ERRORS = {"fail-model": "JobFailed"}  # a failed task says only why: counted as Kling's own failure
FAMILIES = ("text2video", "image2video", "multi-image2video", "omni-video")
_FAILED = {"fail-infra": "Internal service error, please retry (5000)",
           "fail-model": "Failed to generate the video from the given image",
           "refuse": "Failure to pass the risk control system: content policy",
           "cancel": "Task cancelled by the system"}


def options(server) -> dict:
    return {"base_url": server.base + PREFIX, "api_key_env": KEY_ENV, "secret_key_env": SECRET_ENV}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_token(header: str | None) -> tuple[int, str] | None:
    """A Kling API token, verified as Kling does: HS256 over header.payload with the secret, `iss`
    the access key, within nbf..exp. None when good, else (code, message)."""
    if not header or not header.startswith("Bearer "):
        return 1001, "Authorization is empty"
    parts = header[len("Bearer "):].split(".")
    if len(parts) != 3:
        return 1002, "Authorization is invalid"
    signature = hmac.new(SECRET.encode(), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    try:
        head, claims = json.loads(_unb64url(parts[0])), json.loads(_unb64url(parts[1]))
    except ValueError:
        return 1002, "Authorization is invalid"
    if head.get("alg") != "HS256" or not hmac.compare_digest(_b64url(signature), parts[2]):
        return 1002, "Authorization is invalid"
    if claims.get("iss") != KEY:
        return 1002, "Authorization is invalid"
    now = time.time()
    if claims.get("nbf", 0) > now:
        return 1003, "Authorization is not yet valid"
    if claims.get("exp", 0) < now:
        return 1004, "Authorization has expired"
    return None


def _error(h, status: int, code: int, message: str) -> None:
    _json(h, status, {"code": code, "message": message, "request_id": str(uuid.uuid4())})


def _task(server, job) -> dict:
    status = {"queued": "submitted", "running": "processing", "done": "succeed", "failed": "failed",
              "cancelled": "failed"}[job.state]
    data = {"task_id": job.id, "task_status": status, "task_info": {"external_task_id": job.body.get("external_task_id")},
            "created_at": int(job.created_at * 1000), "updated_at": int(time.time() * 1000)}
    if status == "failed":
        data["task_status_msg"] = _FAILED["cancel" if job.state == "cancelled" else job.outcome]
    if status == "succeed":
        data["task_result"] = {"videos": [{"id": f"v{job.id}", "url": f"{server.base}/files/{job.id}.mp4",
                                           "duration": job.input["duration"]}]}
        data["final_unit_deduction"] = "1.5"
    return data


def _invalid(body: dict, family: str) -> str | None:
    """What Kling's validation would refuse in this body (code 1201), or None."""
    if not body.get("model_name"):
        return "model_name is required"
    if not isinstance(body.get("duration"), str) or not body["duration"].isdigit():
        return "duration must be a string of seconds"
    omni = family == "omni-video"
    allowed = range(3, 16) if (omni or body["model_name"].startswith("kling-v3")) else (5, 10)
    if int(body["duration"]) not in allowed:
        return f"duration {body['duration']} is not supported"
    if family == "image2video":
        if "aspect_ratio" in body or not (body.get("image") or body.get("image_tail")):
            return "image2video takes image (and no aspect_ratio)"
    elif body.get("aspect_ratio") not in ("16:9", "9:16", "1:1"):
        return "aspect_ratio must be 16:9, 9:16 or 1:1"
    images, elements = body.get("image_list") or [], body.get("element_list") or []
    if family == "multi-image2video" and not (1 <= len(images) <= 4 and all(set(i) == {"image"} for i in images)):
        return "image_list takes 1 to 4 items of {image}"
    if omni:
        if len(images) + len(elements) > 7:
            return "image_list and element_list take at most 7 together"
        if not all(set(i) <= {"image_url", "type"} for i in images):
            return "image_list items are {image_url, type}"
        for kind, listed in (("image", images), ("element", elements)):
            for n in re.findall(rf"<<<{kind}_(\d+)>>>", body.get("prompt", "")):
                if not 1 <= int(n) <= len(listed):
                    return f"the prompt names <<<{kind}_{n}>>> but {kind}_list has {len(listed)}"
    for item in [body.get("image")] + [i.get("image") or i.get("image_url") for i in images]:
        if item is not None and (item.startswith("data:") or not _is_base64(item)):
            return "images are URLs or base64 without a data: prefix"
    return None


def _is_base64(text: str) -> bool:
    if text.startswith("http"):
        return True
    try:
        base64.b64decode(text, validate=True)
        return True
    except ValueError:
        return False


def route(server, h, method: str, path: str, query: dict, raw: bytes) -> None:
    bad = check_token(h.headers.get("Authorization"))
    if bad is not None:
        return _error(h, 401, *bad)
    m = re.fullmatch(r"/v1/videos/([\w-]+)(?:/([\w-]+))?", path)
    if not m or m.group(1) not in FAMILIES:
        return _error(h, 404, 1202, f"no such method {method} {path}")
    family, task = m.groups()
    if method == "POST" and task is None:
        body = json.loads(raw or b"{}")
        server.calls.append(("submit", family))
        problem = _invalid(body, family)
        if problem:
            return _error(h, 400, 1201, problem)
        model = f"{family}:{body['model_name']}"
        normal = {"prompt": body.get("prompt", ""), "duration": body["duration"]}

        def make():
            return server.create(model, normal, "8672", raw=body, headers=dict(h.headers))

        if server.fault(h, server.faults.next("submit"), after=make):
            return
        job = make()
        return _json(h, 200, {"code": 0, "message": "SUCCEED", "request_id": str(uuid.uuid4()),
                              "data": {"task_id": job.id, "task_status": "submitted",
                                       "task_info": {"external_task_id": body.get("external_task_id")},
                                       "created_at": int(job.created_at * 1000),
                                       "updated_at": int(job.created_at * 1000)}})
    if method == "GET" and task is not None:
        server.calls.append(("status", task))
        if server.fault(h, server.faults.next("status")):
            return
        job = server.jobs.get(task) or next((j for j in server.jobs.values()
                                             if j.body.get("external_task_id") == task), None)
        if job is None or not job.model.startswith(family + ":") or job.state == "vanished":
            return _error(h, 404, 1203, "task not found")
        server.advance(job)
        if job.state == "vanished":
            return _error(h, 404, 1203, "task not found")
        return _json(h, 200, {"code": 0, "message": "SUCCEED", "request_id": str(uuid.uuid4()),
                              "data": _task(server, job)})
    if method == "GET":
        server.calls.append(("list", family))
        if server.fault(h, server.faults.next("listing")):
            return
        page, size = int(query.get("pageNum", ["1"])[0]), int(query.get("pageSize", ["30"])[0])
        if not (1 <= page <= 1000 and 1 <= size <= 500):
            return _error(h, 400, 1201, "pageNum or pageSize out of range")
        tasks = [j for j in reversed(server.created()) if j.model.startswith(family + ":") and j.state != "vanished"]
        return _json(h, 200, {"code": 0, "message": "SUCCEED", "request_id": str(uuid.uuid4()),
                              "data": [_task(server, j) for j in tasks[(page - 1) * size:page * size]]})
    _error(h, 404, 1202, f"no such method {method} {path}")


def references(server, job) -> int:
    """Reference images and elements the create carried (a start frame is not one)."""
    body = job.body
    images = [i for i in body.get("image_list") or [] if i.get("type") not in ("first_frame", "end_frame")]
    return len(images) + len(body.get("element_list") or [])
