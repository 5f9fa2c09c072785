"""Veo on the Gemini API as Google's docs and google-genai describe it: the key in `x-goog-api-key`,
`POST /v1beta/models/{model}:predictLongRunning`, `GET /v1beta/models/{model}/operations/{id}` (done,
error, or the safety filter's `raiMediaFilteredCount`), `GET /v1beta/files/{id}:download?alt=media`
(the key again), errors as `{error: {code, message, status}}`; no operation cancel or list for videos."""

from __future__ import annotations

import base64
import json
import re

from fake_hosted import _json

PREFIX = "/veo"
KEY_ENV, KEY = "DRAMAFORGE_TEST_GEMINI_KEY", "AIza-test-0001"
ENV = {KEY_ENV: KEY}
CANCELS = False
VERSION = "v1beta"
FILE_HOST = "https://generativelanguage.googleapis.com"  # the uri's host is ignored: the client asks the base URL
_INSTANCE = {"prompt", "image", "lastFrame", "referenceImages", "video"}
_PARAMETERS = {"sampleCount", "durationSeconds", "aspectRatio", "resolution", "personGeneration", "negativePrompt",
               "enhancePrompt", "seed"}
_STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND"}
_FAILED = {"fail-infra": (13, "Internal error encountered."),
           "fail-model": (3, "The input image could not be used: unsupported use case.")}
_FILTERED = "The prompt could not be submitted: it may violate our safety policy (flagged by the filter)."


def options(server) -> dict:
    return {"base_url": server.base + PREFIX, "api_key_env": KEY_ENV}


def _error(h, status: int, message: str, *, reason: str | None = None) -> None:
    error = {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}
    if reason:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                             "domain": "googleapis.com"}]
    _json(h, status, {"error": error})


def _image_ok(image) -> bool:
    """Either form Google writes an image in: the client's {bytesBase64Encoded, mimeType} or the REST
    samples' {inlineData: {mimeType, data}}."""
    if not isinstance(image, dict):
        return False
    if "inlineData" in image:
        image = {"bytesBase64Encoded": (image["inlineData"] or {}).get("data"),
                 "mimeType": (image["inlineData"] or {}).get("mimeType")}
    if set(image) != {"bytesBase64Encoded", "mimeType"} or not str(image["mimeType"]).startswith("image/"):
        return False
    try:
        return bool(base64.b64decode(image["bytesBase64Encoded"], validate=True))
    except (ValueError, TypeError):
        return False


def _invalid(body: dict) -> str | None:
    """What the Gemini API would refuse in a predictLongRunning body (400 INVALID_ARGUMENT), or None."""
    instances, parameters = body.get("instances"), body.get("parameters") or {}
    if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
        return "instances must hold exactly one instance"
    inst = instances[0]
    unknown = sorted(set(inst) - _INSTANCE) + sorted(set(parameters) - _PARAMETERS)
    unknown += sorted(set(body) - {"instances", "parameters"})
    if unknown:
        return f"Invalid JSON payload received. Unknown name \"{unknown[0]}\""
    if not isinstance(inst.get("prompt"), str) or not inst["prompt"].strip():
        return "prompt is required"
    refs = inst.get("referenceImages") or []
    if len(refs) > 3:
        return "referenceImages: at most 3 images"
    for r in refs:
        if not isinstance(r, dict) or str(r.get("referenceType", "")).lower() != "asset" or not _image_ok(r.get("image")):
            return "referenceImages items are {image, referenceType: asset}"
    if "image" in inst and not _image_ok(inst["image"]):
        return "image must be {bytesBase64Encoded, mimeType}"
    if refs and "image" in inst:
        return "referenceImages cannot be combined with image"
    if "lastFrame" in inst and "image" not in inst:
        return "lastFrame needs image"
    duration = parameters.get("durationSeconds", 8)
    if str(duration) not in ("4", "6", "8") or isinstance(duration, (bool, float)):
        return f"durationSeconds {duration!r} is not supported (4, 6 or 8)"
    resolution = parameters.get("resolution", "720p")
    if resolution not in ("720p", "1080p", "4k"):
        return f"resolution {resolution!r} is not supported"
    if (refs or resolution != "720p") and int(duration) != 8:
        return "durationSeconds must be 8 with referenceImages, 1080p or 4k"
    if parameters.get("aspectRatio", "16:9") not in ("16:9", "9:16"):
        return f"aspectRatio {parameters['aspectRatio']!r} is not supported"
    if parameters.get("sampleCount", 1) != 1:
        return "sampleCount must be 1"
    for n in re.findall(r"[Rr]eference image (\d+)", inst["prompt"]):
        if not 1 <= int(n) <= len(refs):
            return f"the prompt names reference image {n} but referenceImages has {len(refs)}"
    return None


def _operation(server, job, name: str) -> dict:
    op = {"name": name}
    if job.state in ("queued", "running"):
        return op if job.state == "queued" else {**op, "done": False}
    op["done"] = True
    if job.state == "cancelled":
        op["error"] = {"code": 1, "message": "Operation was cancelled."}
    elif job.state == "failed" and job.outcome == "refuse":
        op["response"] = {"@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse",
                          "generateVideoResponse": {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [_FILTERED]}}
    elif job.state == "failed":
        code, message = _FAILED[job.outcome]
        op["error"] = {"code": code, "message": message}
    else:
        uri = f"{FILE_HOST}/{VERSION}/files/{job.id}:download?alt=media"
        op["response"] = {"@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse",
                          "generateVideoResponse": {"generatedSamples": [{"video": {"uri": uri}}]}}
    return op


def route(server, h, method: str, path: str, query: dict, raw: bytes) -> None:
    key = h.headers.get("x-goog-api-key")
    if not key:
        return _error(h, 403, "Method doesn't allow unregistered callers (callers without established identity). "
                              "Please use API Key or other form of API consumer identity to call this API.")
    if key != KEY:
        return _error(h, 400, "API key not valid. Please pass a valid API key.", reason="API_KEY_INVALID")
    create = re.fullmatch(rf"/{VERSION}/models/([\w.-]+):predictLongRunning", path)
    if method == "POST" and create:
        model = create.group(1)
        server.calls.append(("submit", model))
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return _error(h, 400, "Invalid JSON payload received.")
        problem = _invalid(body)
        if problem:
            return _error(h, 400, problem)
        inst, parameters = body["instances"][0], body.get("parameters") or {}
        normal = {"prompt": inst["prompt"], "duration": int(parameters.get("durationSeconds", 8))}

        def make():
            return server.create(model, normal, "veo", raw=body, headers=dict(h.headers))

        if server.fault(h, server.faults.next("submit"), after=make):
            return
        job = make()
        return _json(h, 200, {"name": f"models/{model}/operations/{job.id}"})
    poll = re.fullmatch(rf"/{VERSION}/(models/([\w.-]+)/operations/([a-z0-9]+))", path)
    if method == "GET" and poll:
        name, model, op_id = poll.groups()
        server.calls.append(("status", op_id))
        if server.fault(h, server.faults.next("status")):
            return
        job = server.jobs.get(op_id)
        if job is None or job.model != model or job.state == "vanished":
            return _error(h, 404, f"Operation {name} not found.")
        server.advance(job)
        if job.state == "vanished":
            return _error(h, 404, f"Operation {name} not found.")
        return _json(h, 200, _operation(server, job, name))
    download = re.fullmatch(rf"/{VERSION}/files/([a-z0-9]+):download", path)
    if method == "GET" and download:
        if query.get("alt") != ["media"]:
            return _error(h, 400, "alt=media is required to download a file")
        return server.download(h, f"/files/{download.group(1)}.mp4")  # counts ("download", id), honours faults
    _error(h, 404, f"The requested URL {method} {path} was not found on this server.")


def references(server, job) -> int:
    """Reference images the operation's instance carried."""
    return sum(len(i.get("referenceImages") or []) for i in job.body.get("instances") or [])
