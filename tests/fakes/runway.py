"""Runway's developer API as its reference describes it (api.dev.runwayml.com, X-Runway-Version
2024-11-06): `POST /v1/text_to_image`, `/v1/image_to_video`, `/v1/text_to_video` answering `{id}`,
`GET /v1/tasks/{id}` (PENDING, THROTTLED, RUNNING, SUCCEEDED with `output`, FAILED with `failure` and
`failureCode`, CANCELLED), `DELETE /v1/tasks/{id}` (204; the task is then 404), `{"error": ...}`
errors (a body that fails validation: Zod-style `issues`). No task list."""

from __future__ import annotations

import json
import re
import time

import fake_hosted
from fake_hosted import Job, _json, _raw

PREFIX = "/runway"
KEY_ENV, KEY = "DRAMAFORGE_TEST_RUNWAY_KEY", "key_" + "0123456789abcdef" * 8
ENV = {KEY_ENV: KEY}
CANCELS = True
VERSION = "2024-11-06"
VIDEO_PREFIX = "9a6fc5d5-1234-4cde-8f00-00000000"  # + 4 digits: a UUID
STILL_PREFIX = "5711e5d5-1234-4cde-8f00-00000000"
IMAGE_RATIOS = {"1024:1024", "1080:1080", "1168:880", "1360:768", "1440:1080", "1080:1440", "1808:768", "1920:1080",
                "1080:1920", "2112:912", "1280:720", "720:1280", "720:720", "960:720", "720:960", "1680:720"}
I2V_RATIOS = {"1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672"}
T2V_RATIOS = {"1280:720", "720:1280"}
TAG = re.compile(r"^[A-Za-z][A-Za-z0-9_]{2,15}$")
_FAILED = {"fail-infra": ("An internal error occurred while generating the output.", "INTERNAL.BAD_OUTPUT.CODE01"),
           "fail-model": ("The input asset could not be processed.", "ASSET.INVALID"),
           "refuse": ("Prompt text was rejected by content moderation.", "SAFETY.INPUT.TEXT")}


def options(server) -> dict:
    return {"base_url": server.base + PREFIX, "api_key_env": KEY_ENV}


def stills(server) -> dict[str, Job]:
    """The gen4_image tasks (kept apart from the server's video jobs, which tests count and bill; a
    still takes the next outcome all the same)."""
    return server.__dict__.setdefault("runway_stills", {})


def _make_still(server, body: dict, headers: dict) -> Job:
    with server.lock:
        table = stills(server)
        outcome = server.outcomes.pop(0) if server.outcomes else "ok"
        job = Job(f"{STILL_PREFIX}{len(table) + 1:04d}", f"text_to_image:{body['model']}",
                  {"prompt": body["promptText"], "duration": 0}, time.time(), outcome, body=body, headers=headers)
        table[job.id] = job
        return job


def job(server, job_id: str) -> Job:
    """The video job a journal's job id names: a reference shot's id is `<still>~<client key>`; its
    video is the one made from that still (the last, after any re-creation)."""
    if "~" not in job_id:
        return server.jobs[job_id]
    url = f"{server.base}/files/{job_id.split('~')[0]}.png"
    return [j for j in server.created() if j.body.get("promptImage") == url][-1]


def references(server, job) -> int:
    """Reference images the shot carried: those of the still its video was made from."""
    image = job.body.get("promptImage")
    if not isinstance(image, str) or not image.startswith(f"{server.base}/files/"):
        return 0
    still = stills(server).get(image.rsplit("/", 1)[-1].removesuffix(".png"))
    return len(still.body.get("referenceImages") or []) if still else 0


def _invalid(h, issues: list[dict]) -> None:
    _json(h, 400, {"error": "Validation of body failed", "issues": issues, "docUrl": "https://docs.dev.runwayml.com/api"})


def _issue(path: str, message: str, code: str = "custom") -> list[dict]:
    return [{"code": code, "path": [path] if path else [], "message": message}]


def _uri_ok(server, uri) -> bool:
    if not isinstance(uri, str):
        return False
    if uri.startswith("data:"):
        return bool(re.match(r"^data:image/(png|jpeg|webp);base64,[A-Za-z0-9+/=]+$", uri)) and len(uri) < 5 * 1024 ** 2
    return uri.startswith(("https://", "runway://", server.base + "/files/"))  # its own outputs: served here


def _common(server, body: dict, allowed: set[str]) -> list[dict] | None:
    extra = sorted(set(body) - allowed)
    if extra:
        return [{"code": "unrecognized_keys", "keys": extra, "path": [], "message": f"Unrecognized keys: {extra}"}]
    text = body.get("promptText")
    if text is not None and (not isinstance(text, str) or not text or len(text.encode("utf-16-le")) // 2 > 1000):
        return _issue("promptText", "promptText must be 1 to 1000 characters")
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2 ** 32):
        return _issue("seed", "seed must be an integer from 0 to 4294967295")
    return None


def _check_text_to_image(server, body: dict) -> list[dict] | None:
    bad = _common(server, body, {"model", "promptText", "ratio", "referenceImages", "seed", "contentModeration"})
    if bad:
        return bad
    if body.get("model") not in ("gen4_image", "gen4_image_turbo"):
        return _issue("model", "Invalid model", "invalid_value")
    if not body.get("promptText"):
        return _issue("promptText", "Required")
    if body.get("ratio") not in IMAGE_RATIOS:
        return _issue("ratio", "Invalid option", "invalid_value")
    refs = body.get("referenceImages", [])
    low = 1 if body["model"] == "gen4_image_turbo" else 0
    if not isinstance(refs, list) or not low <= len(refs) <= 3:
        return _issue("referenceImages", f"referenceImages takes {low} to 3 items", "too_big")
    tags = []
    for i, r in enumerate(refs):
        if not isinstance(r, dict) or set(r) - {"uri", "tag"} or not _uri_ok(server, r.get("uri")):
            return _issue(f"referenceImages.{i}", "each reference is {uri, tag?} with an https, runway:// or data URI")
        if "tag" in r:
            if not isinstance(r["tag"], str) or not TAG.match(r["tag"]):
                return _issue(f"referenceImages.{i}.tag", "Must be 3-16 characters, start with a letter, and use only "
                                                          "letters, digits, and underscores")
            tags.append(r["tag"])
    if len(set(tags)) != len(tags):
        return _issue("referenceImages", "tags must be unique")
    for named in re.findall(r"@([A-Za-z][A-Za-z0-9_]*)", body["promptText"]):
        if named not in tags:
            return _issue("promptText", f"@{named} names no reference image (tags: {tags})")
    return None


def _check_video(server, endpoint: str, body: dict) -> list[dict] | None:
    allowed = {"model", "promptText", "ratio", "duration", "seed", "contentModeration"}
    bad = _common(server, body, allowed | ({"promptImage"} if endpoint == "image_to_video" else set()))
    if bad:
        return bad
    model = body.get("model")
    if model not in (("gen4.5", "gen4_turbo") if endpoint == "image_to_video" else ("gen4.5",)):
        return _issue("model", "Invalid model", "invalid_value")
    if model == "gen4.5" and not body.get("promptText"):
        return _issue("promptText", "Required")
    ratios = I2V_RATIOS if endpoint == "image_to_video" else T2V_RATIOS
    if body.get("ratio") not in ratios:
        return _issue("ratio", "Invalid option", "invalid_value")
    duration = body.get("duration")
    lengths = range(2, 11) if model == "gen4.5" else (5, 10)
    if (duration is None and model == "gen4.5") or (duration is not None and (
            not isinstance(duration, int) or isinstance(duration, bool) or duration not in lengths)):
        return _issue("duration", f"duration must be one of {list(lengths)}")
    if endpoint == "image_to_video":
        image = body.get("promptImage")
        if isinstance(image, list):
            if len(image) != 1 or not isinstance(image[0], dict) or image[0].get("position") != "first" or \
                    not _uri_ok(server, image[0].get("uri")):
                return _issue("promptImage", "promptImage takes one {uri, position: first} for this model")
        elif not _uri_ok(server, image):
            return _issue("promptImage", "promptImage must be an https URL, a runway:// URI or a data URI")
    return None


def _task(server, job) -> dict:
    out = {"id": job.id, "createdAt": fake_hosted._stamp(job.created_at)}
    if job.state == "queued":
        out["status"] = "THROTTLED" if job.polls <= 1 else "PENDING"
    elif job.state == "running":
        out.update(status="RUNNING", progress=0.5)
    elif job.state == "done":
        suffix = "png" if job.model.startswith("text_to_image") else "mp4"
        out.update(status="SUCCEEDED", output=[f"{server.base}/files/{job.id}.{suffix}"])
    elif job.state == "failed":
        text, code = _FAILED[job.outcome]
        out.update(status="FAILED", failure=text, failureCode=code)
    else:
        out["status"] = "CANCELLED"
    return out


def route(server, h, method: str, path: str, query: dict, raw: bytes) -> None:
    if h.headers.get("Authorization") != f"Bearer {KEY}":
        return _json(h, 401, {"error": "Invalid API key"})
    if h.headers.get("X-Runway-Version") != VERSION:
        return _json(h, 400, {"error": "The X-Runway-Version header is missing or invalid"})
    m = re.fullmatch(r"/v1/(text_to_image|image_to_video|text_to_video)", path)
    if m and method == "POST":
        endpoint = m.group(1)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return _json(h, 400, {"error": "Invalid JSON body"})
        server.calls.append(("submit", f"{endpoint}:{body.get('model')}"))
        issues = _check_text_to_image(server, body) if endpoint == "text_to_image" else \
            _check_video(server, endpoint, body)
        if issues:
            return _invalid(h, issues)
        normal = {"prompt": body["promptText"], "duration": body.get("duration", 5)}

        def make():
            if endpoint == "text_to_image":
                return _make_still(server, body, dict(h.headers))
            return server.create(f"{endpoint}:{body['model']}", normal, VIDEO_PREFIX, raw=body, headers=dict(h.headers))

        if server.fault(h, server.faults.next("submit"), after=make):
            return
        job = make()
        return _json(h, 200, {"id": job.id})
    m = re.fullmatch(r"/v1/tasks/([\w-]+)", path)
    if m and method == "GET":
        server.calls.append(("status", m.group(1)))
        if server.fault(h, server.faults.next("status")):
            return
        job = server.jobs.get(m.group(1)) or stills(server).get(m.group(1))
        if job is None or job.state == "vanished" or job.cancelled:
            return _json(h, 404, {"error": "Could not find Task"})
        server.advance(job)
        if job.state == "vanished":
            return _json(h, 404, {"error": "Could not find Task"})
        return _json(h, 200, _task(server, job))
    if m and method == "DELETE":
        server.calls.append(("cancel", m.group(1)))
        job = server.jobs.get(m.group(1)) or stills(server).get(m.group(1))
        if job is None or job.cancelled:
            return _json(h, 404, {"error": "Could not find Task"})
        job.cancelled = True  # running: aborted; finished: deleted. Either way it is gone
        if job.state in ("queued", "running"):
            job.state = "cancelled"
        return _raw(h, 204, b"", "application/json")
    _json(h, 405 if m else 404, {"error": f"Cannot {method} {path}"})
