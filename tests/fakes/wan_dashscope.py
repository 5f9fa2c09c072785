"""Wan on Alibaba Cloud Model Studio (DashScope) as its docs describe it: Bearer keys, async-only video
synthesis (`X-DashScope-Async: enable`), the temporary upload (getPolicy -> OSS form POST -> oss:// URLs
that need `X-DashScope-OssResourceResolve: enable`, bound to the model), `GET /tasks/{id}` (UNKNOWN for a
task it does not know), the task list, cancel of PENDING tasks only, `{request_id, code, message}` errors."""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import time
import uuid

from fake_hosted import _json

PREFIX = "/dashscope/api/v1"
KEY_ENV, KEY = "DRAMAFORGE_TEST_DASHSCOPE_KEY", "sk-test-dashscope-0001"
ENV = {KEY_ENV: KEY}
# DashScope cancels only a PENDING task: the shared test's running job cannot be, and says so
CANCELS = False
LOOKUP_SEES = "done"  # its lookup reads orig_prompt, which DashScope repeats only on a finished task
ACCESS_ID, SIGNATURE, POLICY = "LTAI-test", "sig-test", "eyJwb2xpY3kiOiJ0ZXN0In0="
SIZES = {"480*832", "832*480", "624*624", "720*1280", "1280*720", "960*960", "1088*832", "832*1088",
         "1080*1920", "1920*1080", "1440*1440", "1632*1248", "1248*1632"}
_FAILED = {"fail-infra": ("InternalError", "An internal error has occured, please try again later."),
           "fail-model": ("InvalidParameter", "The size of the input image is not supported."),
           "refuse": ("DataInspectionFailed", "Output data may contain inappropriate content.")}


def options(server) -> dict:
    return {"base_url": server.base + PREFIX, "api_key_env": KEY_ENV}


def state(server) -> dict:
    """This protocol's own store on the server: uploaded oss keys (key -> model), policies handed out."""
    if not hasattr(server, "dashscope"):
        server.dashscope = {"objects": {}, "dirs": {}}
    return server.dashscope


def _error(h, status: int, code: str, message: str) -> None:
    _json(h, status, {"request_id": str(uuid.uuid4()), "code": code, "message": message})


def _status(job) -> str:
    return {"queued": "PENDING", "running": "RUNNING", "done": "SUCCEEDED", "failed": "FAILED",
            "cancelled": "CANCELED", "vanished": "UNKNOWN"}[job.state]


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 1000):03d}"


def _task(server, job) -> dict:
    status = _status(job)
    out = {"task_id": job.id, "task_status": status}
    if status == "UNKNOWN":
        return out
    out.update(submit_time=_stamp(job.created_at), scheduled_time=_stamp(job.created_at))
    if status in ("SUCCEEDED", "FAILED", "CANCELED"):
        out["end_time"] = _stamp(time.time())
    if status == "FAILED":
        out["code"], out["message"] = _FAILED[job.outcome]
    if status == "SUCCEEDED":
        out.update(video_url=f"{server.base}/files/{job.id}.mp4?Expires=1999999999&Signature=x",
                   orig_prompt=job.input["prompt"], actual_prompt=job.input["prompt"] + " (extended)")
    return out


def _kind(model: str) -> str:
    for kind in ("t2v", "i2v", "r2v"):
        if kind in model:
            return kind
    return ""


def _invalid(server, body: dict, headers) -> str | None:
    """What DashScope's validation would refuse (400 InvalidParameter), or None."""
    model, inp, params = body.get("model"), body.get("input"), body.get("parameters")
    if not isinstance(inp, dict) or not isinstance(inp.get("prompt"), str) or not inp["prompt"]:
        return "input.prompt is required"
    if not isinstance(params, dict):
        return 'Required parameter "parameters" missing from request.'
    kind = _kind(model)
    if not kind:
        return f"Model not exist: {model}"
    r26 = kind == "r2v" and not re.search(r"wan(2\.[7-9]|[3-9])", model)
    duration = params.get("duration")
    longest = 10 if r26 else 15
    if not isinstance(duration, int) or isinstance(duration, bool) or not 2 <= duration <= longest:
        return f"duration must be an integer from 2 to {longest}"
    if "audio" in params and not isinstance(params["audio"], bool):
        return "audio must be a boolean"
    if "seed" in params and not (isinstance(params["seed"], int) and 0 <= params["seed"] <= 2147483647):
        return "seed must be an integer in [0, 2147483647]"
    uses_size = kind == "t2v" or r26
    if uses_size and params.get("size") not in SIZES:
        return f"size {params.get('size')!r} is not supported (width*height, e.g. 1280*720)"
    if not uses_size and params.get("resolution") not in ("480P", "720P", "1080P"):
        return "resolution must be 480P, 720P or 1080P"
    urls = []
    if kind == "i2v":
        if not inp.get("img_url") or "reference_urls" in inp or "media" in inp:
            return "img_url is required"
        urls.append(inp["img_url"])
    elif kind == "t2v" and any(k in inp for k in ("img_url", "reference_urls", "media")):
        return "text-to-video takes no image"
    elif kind == "r2v" and r26:
        refs = inp.get("reference_urls")
        if not isinstance(refs, list) or not 1 <= len(refs) <= 3:
            return "reference_urls takes 1 to 3 URLs"
        for n in re.findall(r"character(\d+)", inp["prompt"]):
            if not 1 <= int(n) <= len(refs):
                return f"the prompt names character{n} but reference_urls has {len(refs)}"
        urls += refs
    elif kind == "r2v":
        media = inp.get("media")
        if not isinstance(media, list) or not 1 <= len(media) <= 5 or not all(
                isinstance(m, dict) and m.get("type") in ("reference_image", "reference_video") and m.get("url")
                for m in media):
            return "media takes 1 to 5 items of {type: reference_image | reference_video, url}"
        for word, kind_ in (("Image", "reference_image"), ("Video", "reference_video")):
            count = sum(1 for m in media if m["type"] == kind_)
            for n in re.findall(rf"{word} (\d+)", inp["prompt"]):
                if not 1 <= int(n) <= count:
                    return f"the prompt names {word} {n} but media has {count}"
        urls += [m["url"] for m in media]
    objects = state(server)["objects"]
    for url in urls:
        if not isinstance(url, str) or not re.match(r"^(https?|oss)://", url):
            return "InvalidURL"
        if url.startswith("oss://"):
            if headers.get("X-DashScope-OssResourceResolve") != "enable":
                return "InvalidURL"
            if objects.get(url[len("oss://"):]) != model:
                return "InvalidURL"  # not uploaded, or uploaded for another model
    return None


def _multipart(h, raw: bytes) -> dict:
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {h.headers.get('Content-Type')}\r\n\r\n".encode() + raw)
    fields = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        fields[name] = part.get_payload(decode=True) if part.get_filename() else part.get_content().strip()
    return fields


def oss_upload(server, h, raw: bytes) -> None:
    """The OSS form POST: signed by the policy (no Authorization), 200 with success_action_status=200."""
    f = _multipart(h, raw)
    dirs = state(server)["dirs"]
    key = f.get("key", "")
    if (f.get("OSSAccessKeyId"), f.get("Signature"), f.get("policy")) != (ACCESS_ID, SIGNATURE, POLICY):
        return _xml(h, 403, "SignatureDoesNotMatch")
    upload_dir = key.rsplit("/", 1)[0]
    if upload_dir not in dirs or not f.get("file") or "Authorization" in h.headers:
        return _xml(h, 400, "InvalidArgument")
    if key in state(server)["objects"] and f.get("x-oss-forbid-overwrite") == "true":
        return _xml(h, 409, "FileAlreadyExists")
    state(server)["objects"][key] = dirs[upload_dir]
    server.calls.append(("upload", key))
    h.send_response(200 if f.get("success_action_status") == "200" else 204)
    h.send_header("Content-Length", "0")
    h.end_headers()


def _xml(h, status: int, code: str) -> None:
    body = f"<?xml version='1.0'?><Error><Code>{code}</Code></Error>".encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/xml")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def route(server, h, method: str, path: str, query: dict, raw: bytes) -> None:
    if path == "/oss" and method == "POST":
        return oss_upload(server, h, raw)
    if h.headers.get("Authorization") != f"Bearer {KEY}":
        return _error(h, 401, "InvalidApiKey", "Invalid API-key provided.")
    workspace = h.headers.get("X-DashScope-WorkSpace")
    if workspace is not None:
        server.calls.append(("workspace", workspace))
    if path == "/uploads" and method == "GET":
        if query.get("action") != ["getPolicy"] or not query.get("model"):
            return _error(h, 400, "InvalidParameter", "action=getPolicy and model are required")
        upload_dir = f"dashscope-instant/{uuid.uuid4().hex}/{time.strftime('%Y-%m-%d')}"
        state(server)["dirs"][upload_dir] = query["model"][0]
        server.calls.append(("policy", query["model"][0]))
        return _json(h, 200, {"request_id": str(uuid.uuid4()), "data": {
            "policy": POLICY, "signature": SIGNATURE, "upload_dir": upload_dir, "upload_host": server.base + PREFIX
            + "/oss", "expire_in_seconds": 300, "max_file_size_mb": 100, "capacity_limit_mb": 999999999,
            "oss_access_key_id": ACCESS_ID, "x_oss_object_acl": "private", "x_oss_forbid_overwrite": "true"}})
    if path == "/services/aigc/video-generation/video-synthesis" and method == "POST":
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return _error(h, 400, "InvalidParameter", "The request body is not valid JSON.")
        server.calls.append(("submit", body.get("model")))
        if h.headers.get("X-DashScope-Async") != "enable":
            return _error(h, 403, "AccessDenied", "current user api does not support synchronous calls")
        if not body.get("model"):
            return _error(h, 400, "BadRequest.EmptyModel", 'Required parameter "model" missing from request.')
        problem = _invalid(server, body, h.headers)
        if problem == "InvalidURL":
            return _error(h, 400, "InvalidURL", "Invalid URL provided in your request.")
        if problem:
            return _error(h, 400, "InvalidParameter", problem)
        normal = {"prompt": body["input"]["prompt"], "duration": body["parameters"]["duration"]}

        def make():
            return server.create(body["model"], normal, "ds-", raw=body, headers=dict(h.headers))

        if server.fault(h, server.faults.next("submit"), after=make):
            return
        job = make()
        return _json(h, 200, {"output": {"task_status": "PENDING", "task_id": job.id},
                              "request_id": str(uuid.uuid4())})
    m = re.fullmatch(r"/tasks/([\w-]+)(/cancel)?", path)
    if m and m.group(2) and method == "POST":
        server.calls.append(("cancel", m.group(1)))
        job = server.jobs.get(m.group(1))
        if job is None or job.state != "queued":
            return _error(h, 400, "UnsupportedOperation", "Failed to cancel the task, please confirm if the task "
                                                          "is in PENDING status.")
        job.cancelled, job.state = True, "cancelled"
        return _json(h, 200, {"request_id": str(uuid.uuid4())})
    if m and method == "GET":
        server.calls.append(("status", m.group(1)))
        if server.fault(h, server.faults.next("status")):
            return
        job = server.jobs.get(m.group(1))
        if job is None or not job.id.startswith("ds-") or job.state == "vanished":
            return _json(h, 200, {"request_id": str(uuid.uuid4()),
                                  "output": {"task_id": m.group(1), "task_status": "UNKNOWN"}})
        server.advance(job)
        return _json(h, 200, {"request_id": str(uuid.uuid4()), "output": _task(server, job)})
    if path == "/tasks" and method == "GET":
        server.calls.append(("list", query.get("model_name", [""])[0]))
        if server.fault(h, server.faults.next("listing")):
            return
        page, size = int(query.get("page_no", ["1"])[0]), int(query.get("page_size", ["10"])[0])
        if not 1 <= size <= 100:
            return _error(h, 400, "InvalidParameter", "page_size must be 1 to 100")
        tasks = [j for j in reversed(server.created()) if j.id.startswith("ds-") and j.state != "vanished"
                 and (not query.get("model_name") or j.model == query["model_name"][0])
                 and (not query.get("status") or _status(j) == query["status"][0])]
        rows = [{"api_key_id": "42677", "caller_parent_id": "1493478651020171", "caller_uid": "1493478651020171",
                 "gmt_create": int(j.created_at * 1000), "start_time": int(j.created_at * 1000),
                 "end_time": int(time.time() * 1000), "model_name": j.model, "region": "ap-southeast-1",
                 "request_id": str(uuid.uuid4()), "status": _status(j), "task_id": j.id,
                 "user_api_unique_key": "apikey:v1:video-synthesis"} for j in tasks[(page - 1) * size:page * size]]
        return _json(h, 200, {"total": len(tasks), "data": rows, "total_page": max(1, -(-len(tasks) // size)),
                              "page_no": page, "page_size": size, "request_id": str(uuid.uuid4())})
    _error(h, 404, "NotFound", f"no such method {method} {path}")


def references(server, job) -> int:
    """Reference images the create carried (reference_urls, or media items other than a first frame)."""
    inp = job.body.get("input") or {}
    media = [m for m in inp.get("media") or [] if m.get("type") not in ("first_frame", "last_frame")]
    return len(inp.get("reference_urls") or []) + len(media)
