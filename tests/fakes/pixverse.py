"""PixVerse's platform API (OpenAPI v2) as its docs describe it: `API-KEY` and `Ai-trace-id` on every
request, a repeated Ai-trace-id answered with the earlier result (no new generation), image upload to an
img_id, text / img / fusion generation, `GET /video/result/{id}` with status 1/5/7/8, the `{ErrCode, ErrMsg,
Resp}` envelope. PixVerse documents no cancel."""

from __future__ import annotations

import json
import re
import uuid

from fake_hosted import _json

from fakes.wan_dashscope import _multipart

PREFIX = "/pixverse/openapi/v2"
KEY_ENV, KEY = "DRAMAFORGE_TEST_PIXVERSE_KEY", "pv-test-key-0001"
ENV = {KEY_ENV: KEY}
CANCELS = False
ERRORS = {"fail-model": "JobFailed"}  # status 8 says only "failed": counted as PixVerse's own failure
ENDPOINTS = {"/video/text/generate": "text", "/video/img/generate": "img", "/video/fusion/generate": "fusion"}
QUALITIES = ("360p", "540p", "720p", "1080p")
RATIOS = ("16:9", "4:3", "1:1", "3:4", "9:16")


def options(server) -> dict:
    return {"base_url": server.base + PREFIX, "api_key_env": KEY_ENV}


def state(server) -> dict:
    """This protocol's store on the server: trace ids seen on creates (-> video_id), uploaded images."""
    if not hasattr(server, "pixverse"):
        server.pixverse = {"traces": {}, "images": {}}
    return server.pixverse


def _answer(h, resp, code: int = 0, message: str = "success", status: int = 200) -> None:
    _json(h, status, {"ErrCode": code, "ErrMsg": message, "Resp": resp})


def _invalid(server, kind: str, body: dict) -> str | None:
    """What PixVerse's validation refuses (ErrCode 400017), or None."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt or len(prompt) > 2048:
        return "prompt is required (at most 2048 characters)"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model is required"
    if body.get("duration") not in (5, 8) or isinstance(body.get("duration"), bool):
        return "duration must be 5 or 8"
    if body.get("quality") not in QUALITIES:
        return f"quality must be one of {', '.join(QUALITIES)}"
    if body["quality"] == "1080p" and body["duration"] == 8:
        return "1080p does not support 8s"
    if "seed" in body and not (isinstance(body["seed"], int) and 0 <= body["seed"] <= 2147483647):
        return "seed must be 0 to 2147483647"
    images = state(server)["images"]
    if kind == "img":
        if body.get("img_id") not in images:
            return "img_id is required (an uploaded image)"
        if "aspect_ratio" in body:
            return "image-to-video follows the image: no aspect_ratio"
    elif body.get("aspect_ratio") not in RATIOS:
        return f"aspect_ratio must be one of {', '.join(RATIOS)}"
    if kind == "fusion":
        refs = body.get("image_references")
        if not isinstance(refs, list) or not 1 <= len(refs) <= 3:
            return "image_references takes 1 to 3 items"
        names = []
        for r in refs:
            if not isinstance(r, dict) or r.get("type") not in ("subject", "background") or \
                    r.get("img_id") not in images or not isinstance(r.get("ref_name"), str) or not r["ref_name"]:
                return "image_references items are {type: subject | background, img_id, ref_name}"
            names.append(r["ref_name"])
        if len(set(names)) != len(names):
            return "ref_name must be unique"
        for name in re.findall(r"@(\S+)", prompt):
            if name not in names:
                return f"@{name} does not match a ref_name"
        for name in names:
            if f"@{name}" in prompt and not re.search(rf"@{re.escape(name)} ", prompt):
                return f"a space must follow @{name}"
        if body["model"] in ("v3.5", "v4"):
            return "fusion is supported in model v4.5 and above"
    elif "image_references" in body:
        return "image_references is for fusion generation"
    return None


def route(server, h, method: str, path: str, query: dict, raw: bytes) -> None:
    if h.headers.get("API-KEY") != KEY:
        return _answer(h, None, 10003, "Invalid API-KEY", status=401)
    trace = h.headers.get("Ai-trace-id")
    try:
        uuid.UUID(trace or "")
    except ValueError:
        return _answer(h, None, 400017, "Ai-trace-id must be a UUID")
    if path == "/image/upload" and method == "POST":
        fields = _multipart(h, raw)
        image = fields.get("image")
        if not isinstance(image, bytes) or not image:
            return _answer(h, None, 400017, "image is required (multipart field image)")
        img_id = 90000 + len(state(server)["images"]) + 1
        state(server)["images"][img_id] = len(image)
        server.calls.append(("upload", str(img_id)))
        return _answer(h, {"img_id": img_id, "img_url": f"https://media.pixverse.ai/upload/{img_id}.png"})
    if path in ENDPOINTS and method == "POST":
        kind = ENDPOINTS[path]
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return _answer(h, None, 400017, "Invalid binding request")
        traces = state(server)["traces"]
        if trace in traces:  # the docs: a reused trace id returns the previous result, no new generation
            server.calls.append(("list", trace))
            if server.fault(h, server.faults.next("listing")):
                return
            return _answer(h, {"video_id": traces[trace]})
        server.calls.append(("submit", body.get("model")))
        problem = _invalid(server, kind, body)
        if problem:
            return _answer(h, None, 400017, problem)

        def make():
            job = server.create(f"{kind}:{body['model']}", {"prompt": body["prompt"], "duration": body["duration"]},
                                "3", raw=body, headers=dict(h.headers))
            traces[trace] = int(job.id)
            return job

        if server.fault(h, server.faults.next("submit"), after=make):
            return
        job = make()
        return _answer(h, {"video_id": int(job.id)})
    m = re.fullmatch(r"/video/result/(\d+)", path)
    if m and method == "GET":
        server.calls.append(("status", m.group(1)))
        if server.fault(h, server.faults.next("status")):
            return
        job = server.jobs.get(m.group(1))
        if job is None or job.state == "vanished":
            return _answer(h, None, 400018, "video not found")
        server.advance(job)
        if job.state == "vanished":
            return _answer(h, None, 400018, "video not found")
        status = {"queued": 5, "running": 5, "done": 1, "cancelled": 6,
                  "failed": 7 if job.outcome == "refuse" else 8}[job.state]
        return _answer(h, {"id": int(job.id), "status": status, "prompt": job.input["prompt"],
                           "negative_prompt": job.body.get("negative_prompt", ""), "seed": job.body.get("seed", 0),
                           "url": f"{server.base}/files/{job.id}.mp4" if status == 1 else "",
                           "create_time": "2026-01-01T00:00:00Z", "modify_time": "2026-01-01T00:00:00Z",
                           "outputWidth": 0, "outputHeight": 0, "resolution_ratio": 540, "size": 0, "style": ""})
    _answer(h, None, 400017, f"no such method {method} {path}", status=404)


def references(server, job) -> int:
    """Reference images (fusion image_references) the create carried."""
    return len(job.body.get("image_references") or [])
