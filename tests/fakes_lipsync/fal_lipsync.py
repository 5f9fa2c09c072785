"""fal's `fal-ai/sync-lipsync` models on fal's queue, as their pages describe the input (`video_url`,
`audio_url`, `model`, `sync_mode`): the submit is served here (it decodes the `data:` URIs and makes
the marked clip); status, result, cancel and the request list are `FakeHosted.fal`'s, on the same
job store, under this module's prefix."""

from __future__ import annotations

import base64
import binascii
import json
import re

from fake_hosted import FAL_KEY, FAL_KEY_ENV, _json
from fakes_lipsync._media import marked, video_info

PREFIX = "/fal-lipsync"
KEY_ENV, KEY = FAL_KEY_ENV, FAL_KEY
ENV = {KEY_ENV: KEY}
APPS = {"fal-ai/sync-lipsync/v2": ("lipsync-2", "lipsync-2-pro"), "fal-ai/sync-lipsync/v3": ()}
SYNC_MODES = ("cut_off", "loop", "bounce", "silence", "remap")


def options(server) -> dict:
    return {"base_url": f"{server.base}{PREFIX}/queue", "api_url": f"{server.base}{PREFIX}/api",
            "api_key_env": KEY_ENV}


def _decoded(uri, kind: str) -> bytes | None:
    """The bytes of a `data:<kind>/...;base64,` URI (None when it is not one)."""
    m = re.fullmatch(rf"data:{kind}/[\w.+-]+;base64,([A-Za-z0-9+/=]+)", uri) if isinstance(uri, str) else None
    try:
        return base64.b64decode(m.group(1), validate=True) if m else None
    except (binascii.Error, ValueError):
        return None


def _detail(field: str, msg: str) -> dict:
    return {"detail": [{"loc": ["body", field], "msg": msg, "type": "value_error"}]}


def route(server, h, method: str, path: str, query: dict, raw: bytes) -> None:
    if h.headers.get("Authorization") != f"Key {KEY}":
        return _json(h, 401, {"detail": "Invalid key"})
    model = path[len("/queue/"):] if path.startswith("/queue/") else ""
    if method != "POST" or model not in APPS:  # status, result, cancel, the request list
        return server.fal(h, method, path, query, raw)
    body = json.loads(raw or b"{}")
    server.calls.append(("submit", model))
    video, audio = _decoded(body.get("video_url"), "video"), _decoded(body.get("audio_url"), "audio")
    if video is None or video_info(video) is None:
        return _json(h, 422, _detail("video_url", "a video URL or data URI is required"))
    if audio is None:
        return _json(h, 422, _detail("audio_url", "an audio URL or data URI is required"))
    if "model" in body and body["model"] not in APPS[model]:
        return _json(h, 422, _detail("model", f"must be one of {', '.join(APPS[model]) or 'nothing (no such field)'}"))
    if body.get("sync_mode", "cut_off") not in SYNC_MODES:
        return _json(h, 422, _detail("sync_mode", f"must be one of {', '.join(SYNC_MODES)}"))
    seconds = video_info(video).duration_s

    def make():
        job = server.create(model, body, "fal-", result=marked(video, audio))
        job.billed = round(seconds * server.price_per_second, 4)  # fal bills the video's length
        return job

    if server.fault(h, server.faults.next("submit"), after=make):
        return
    job = make()
    base = f"{server.base}{PREFIX}/queue/fal-ai/sync-lipsync/requests/{job.id}"
    _json(h, 200, {"request_id": job.id, "response_url": base, "status_url": f"{base}/status",
                   "cancel_url": f"{base}/cancel", "status": "IN_QUEUE", "queue_position": 0})
