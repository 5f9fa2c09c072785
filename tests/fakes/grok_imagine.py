"""xAI's Grok Imagine video REST API as xAI's docs and the AI SDK's client describe it: a Bearer key,
`POST /v1/videos/generations` -> `{request_id}`, `GET /v1/videos/{request_id}` (pending, done with
`video.url`, expired, failed with `error: {code, message}`, all HTTP 200; 404 for an unknown id), errors
as a flat `{code, error}`; no cancel, no job list."""

from __future__ import annotations

import json
import re
import uuid

from fake_hosted import _json

PREFIX = "/grok"
KEY_ENV, KEY = "DRAMAFORGE_TEST_XAI_KEY", "xai-test-0001"
ENV = {KEY_ENV: KEY}
CANCELS = False
MODELS = ("grok-imagine-video", "grok-imagine-video-1.5")
RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3")
_FIELDS = {"model", "prompt", "image", "video", "reference_images", "reference_audios", "duration", "aspect_ratio",
           "resolution", "generate_audio", "storage_options"}
_FAILED = {"fail-infra": ("internal_error", "Video generation failed due to an internal error."),
           "fail-model": ("invalid_argument", "The input image could not be decoded."),
           "refuse": ("content_moderation", "Generated video rejected by content moderation.")}


def options(server) -> dict:
    return {"base_url": server.base + PREFIX, "api_key_env": KEY_ENV}


def _error(h, status: int, code: str, message: str) -> None:
    _json(h, status, {"code": code, "error": message})


def _url_ok(item) -> bool:
    return isinstance(item, dict) and set(item) == {"url"} and isinstance(item["url"], str) and (
        item["url"].startswith(("https://", "http://")) or re.match(r"data:image/[\w.+-]+;base64,[A-Za-z0-9+/=]+$",
                                                                    item["url"]) is not None)


def _invalid(body: dict) -> str | None:
    """What xAI would refuse in a generations body (400 invalid argument), or None."""
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        return f"unknown field {unknown[0]!r}"
    if body.get("model") not in MODELS:
        return f"model {body.get('model')!r} does not exist or you do not have access to it"
    if not isinstance(body.get("prompt"), str) or not body["prompt"].strip():
        return "prompt is required"
    refs = body.get("reference_images")
    modes = [k for k in ("image", "reference_images", "video") if body.get(k)]
    if len(modes) > 1:
        return f"{' and '.join(modes)} cannot be combined"
    if "image" in body and not _url_ok(body["image"]):
        return "image must be {url}"
    if refs is not None and (not isinstance(refs, list) or not 1 <= len(refs) <= 7
                             or not all(_url_ok(r) for r in refs)):
        return "reference_images takes 1 to 7 items of {url}"
    duration = body.get("duration", 8)
    if not isinstance(duration, int) or isinstance(duration, bool) or not 1 <= duration <= (10 if refs else 15):
        return f"duration must be an integer from 1 to {10 if refs else 15} seconds"
    if body.get("aspect_ratio", "16:9") not in RATIOS:
        return f"aspect_ratio {body['aspect_ratio']!r} is not supported"
    resolution = body.get("resolution", "480p")
    if resolution not in ("480p", "720p", "1080p") or (resolution == "1080p" and (
            body["model"] != "grok-imagine-video-1.5" or refs)):
        return f"resolution {resolution!r} is not supported here"
    if not isinstance(body.get("generate_audio", True), bool):
        return "generate_audio must be a boolean"
    for n in re.findall(r"<IMAGE_(\d+)>", body["prompt"]):
        if not 1 <= int(n) <= len(refs or []):
            return f"the prompt names <IMAGE_{n}> but reference_images has {len(refs or [])}"
    return None


def _video(server, job) -> dict:
    base = {"model": job.body.get("model")}
    if job.state in ("queued", "running"):
        return {**base, "status": "pending", "progress": 0 if job.state == "queued" else 50}
    if job.state == "cancelled":  # xAI has no cancelled state: a request it drops expires
        return {"status": "expired"}
    if job.state == "failed":
        code, message = _FAILED[job.outcome]
        return {**base, "status": "failed", "error": {"code": code, "message": message}}
    return {**base, "status": "done",
            "video": {"url": f"{server.base}/files/{job.id}.mp4", "duration": job.input["duration"],
                      "respect_moderation": True},
            "usage": {"cost_in_usd_ticks": int(job.billed * 10_000_000_000)}}


def route(server, h, method: str, path: str, query: dict, raw: bytes) -> None:
    auth = h.headers.get("Authorization") or ""
    if auth != f"Bearer {KEY}":
        return _error(h, 401, "Client specified an invalid argument",
                      "Incorrect API key provided: xa***. You can obtain an API key from https://console.x.ai.")
    if method == "POST" and path == "/v1/videos/generations":
        server.calls.append(("submit", "generations"))
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return _error(h, 400, "Client specified an invalid argument", "the body is not JSON")
        problem = _invalid(body)
        if problem:
            return _error(h, 400, "Client specified an invalid argument", problem)
        normal = {"prompt": body["prompt"], "duration": body.get("duration", 8)}

        def make():
            return server.create(body["model"], normal, "grok-", raw=body, headers=dict(h.headers))

        if server.fault(h, server.faults.next("submit"), after=make):
            return
        job = make()
        return _json(h, 200, {"request_id": job.id})
    m = re.fullmatch(r"/v1/videos/([\w-]+)", path)
    if method == "GET" and m:
        request_id = m.group(1)
        server.calls.append(("status", request_id))
        if server.fault(h, server.faults.next("status")):
            return
        job = server.jobs.get(request_id)
        if job is None or job.state == "vanished":
            return _error(h, 404, "Some requested entity was not found", f"no video request {request_id}")
        server.advance(job)
        if job.state == "vanished":
            return _error(h, 404, "Some requested entity was not found", f"no video request {request_id}")
        return _json(h, 200, _video(server, job))
    _error(h, 404, "Some requested entity was not found", f"no route {method} {path} ({uuid.uuid4()})")


def references(server, job) -> int:
    """Reference images the generation request carried."""
    return len(job.body.get("reference_images") or [])
