"""Sync Labs' API v2 as its SDK and docs describe it (api.sync.so): `x-api-key`, `POST /v2/generate` as
multipart/form-data (files `video`, `audio`; fields `model`, `options` as JSON, `outputFileName`) with an
optional `Idempotency-Key`, `GET /v2/generate/{id}`, the newest-first `GET /v2/generations?limit&cursor`
(a bare array; `server.sync_list_names = False` makes its items carry no outputFileName), and
`{statusCode, message, errorCode}` errors. The error codes of failed generations are illustrative."""

from __future__ import annotations

import hashlib
import json
import re
import time

from fake_hosted import _json, _raw
from fake_openai import parse_body
from fakes_lipsync._media import marked, video_info

PREFIX = "/sync"
KEY_ENV, KEY = "DRAMAFORGE_TEST_SYNC_API_KEY", "sk-sync-test-0001"
ENV = {KEY_ENV: KEY}
MODELS = ("lipsync-2", "lipsync-2-pro", "lipsync-1.9.0-beta", "react-1", "sync-3")
SYNC_MODES = ("bounce", "loop", "cut_off", "silence", "remap")
FIELDS = {"model", "input", "options", "segments", "webhookUrl", "outputFileName", "video", "audio"}
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._~-]{1,128}")
_FAILED = {"fail-infra": ("FAILED", "generation_unknown_error", "An unexpected error occurred while generating"),
           "fail-model": ("FAILED", "generation_input_validation_failed", "No face could be found in the input video"),
           "refuse": ("REJECTED", "generation_content_moderation", "The input was rejected by content moderation")}


def options(server) -> dict:
    return {"base_url": server.base + PREFIX, "api_key_env": KEY_ENV}


def _error(h, status: int, message: str, code: str) -> None:
    _json(h, status, {"statusCode": status, "message": message, "errorCode": code})


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def _generation(server, job) -> dict:
    body = job.body
    status = {"queued": "PENDING", "running": "PROCESSING", "done": "COMPLETED", "cancelled": "CANCELED",
              "failed": _FAILED.get(job.outcome, _FAILED["fail-infra"])[0]}[job.state]
    g = {"id": job.id, "createdAt": _stamp(job.created_at), "status": status, "model": body["model"],
         "input": [{"type": "video", "url": f"{server.base}{PREFIX}/inputs/{job.id}/video.mp4"},
                   {"type": "audio", "url": f"{server.base}{PREFIX}/inputs/{job.id}/audio.wav"}],
         "options": body["options"], "outputUrl": None, "outputDuration": None, "error": None, "errorCode": None}
    if getattr(server, "sync_list_names", True):
        g["outputFileName"] = body.get("outputFileName")
    if status == "COMPLETED":
        g["outputUrl"] = f"{server.base}/files/{job.id}.mp4"
        g["outputDuration"] = job.input["duration"]
    if job.state == "failed":
        _, g["errorCode"], g["error"] = _FAILED.get(job.outcome, _FAILED["fail-infra"])
    return g


def _invalid(form: dict) -> str | None:
    """What sync's validation would refuse in this form (400), or None."""
    unknown = set(form) - FIELDS
    if unknown:
        return f"unknown fields: {', '.join(sorted(unknown))}"
    if form.get("model") not in MODELS:
        return f"model must be one of {', '.join(MODELS)}"
    for name in ("video", "audio"):
        if not isinstance(form.get(name), tuple) or not form[name][1]:
            return f"{name} must be a file"
    try:
        opts = json.loads(form.get("options", "{}"))
    except ValueError:
        return "options must be a JSON object"
    if not isinstance(opts, dict) or opts.get("sync_mode", "cut_off") not in SYNC_MODES:
        return f"options.sync_mode must be one of {', '.join(SYNC_MODES)}"
    name = form.get("outputFileName")
    if name is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", name):
        return "outputFileName takes letters, digits, underscores and hyphens (at most 255)"
    if video_info(form["video"][1]) is None:
        return "the video file cannot be decoded"
    return None


def route(server, h, method: str, path: str, query: dict, raw: bytes) -> None:
    if h.headers.get("x-api-key") != KEY:
        return _error(h, 401, "Unauthorized", "unauthorized")
    if method == "POST" and path == "/v2/generate":
        kind = h.headers.get("Content-Type") or ""
        if not kind.startswith("multipart/form-data"):
            return _error(h, 400, "this fake takes the multipart form of POST /v2/generate", "invalid_request")
        key = h.headers.get_all("Idempotency-Key") or []
        if key and (len(key) > 1 or not IDEMPOTENCY_KEY.fullmatch(key[0])):
            return _error(h, 400, "Idempotency-Key must be 1-128 of [A-Za-z0-9._~-]", "INVALID_IDEMPOTENCY_KEY")
        form = parse_body(kind, raw)
        server.calls.append(("submit", form.get("model", "")))
        problem = _invalid(form)
        if problem:
            return _error(h, 400, problem, "generation_input_validation_failed")
        seen = next((j for j in server.created() if key and j.headers.get("Idempotency-Key") == key[0]), None)
        if seen is not None:  # the documented guarantee: the same key answers with the same generation
            return _json(h, 200, _generation(server, seen))
        video, audio = form["video"][1], form["audio"][1]
        body = {"model": form["model"], "options": json.loads(form.get("options", "{}")),
                "outputFileName": form.get("outputFileName"),
                **{name: {"filename": form[name][0], "sha256": hashlib.sha256(form[name][1]).hexdigest()}
                   for name in ("video", "audio")}}
        normal = {"duration": round(video_info(video).duration_s, 3)}

        def make():
            return server.create(form["model"], normal, "0d9b5e3c-7a41-4c8e-9f21-00000000", raw=body,
                                 headers=dict(h.headers), result=marked(video, audio))

        if server.fault(h, server.faults.next("submit"), after=make):
            return
        return _json(h, 201, _generation(server, make()))
    m = re.fullmatch(r"/v2/generate/([\w-]+)", path)
    if method == "GET" and m:
        job = server.jobs.get(m.group(1))
        server.calls.append(("status", m.group(1)))
        if server.fault(h, server.faults.next("status")):
            return
        if job is None or job.state == "vanished":
            return _error(h, 404, "Generation not found", "generation_not_found")
        server.advance(job)
        if job.state == "vanished":
            return _error(h, 404, "Generation not found", "generation_not_found")
        return _json(h, 200, _generation(server, job))
    if method == "GET" and path == "/v2/generations":
        server.calls.append(("list", ""))
        if server.fault(h, server.faults.next("listing")):
            return
        limit = int(query.get("limit", ["100"])[0])
        if not 1 <= limit <= 100:
            return _error(h, 400, "limit must be 1 to 100", "invalid_request")
        jobs = [j for j in reversed(server.created()) if j.id.startswith("0d9b5e3c-") and j.state != "vanished"]
        cursor = query.get("cursor", [None])[0]
        if cursor is not None:
            ids = [j.id for j in jobs]
            jobs = jobs[ids.index(cursor) + 1:] if cursor in ids else []
        return _raw(h, 200, json.dumps([_generation(server, j) for j in jobs[:limit]]).encode(), "application/json")
    _error(h, 404, f"Cannot {method} {path}", "not_found")

