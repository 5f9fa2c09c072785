"""Volcengine (Doubao) speech as its docs describe it (openspeech.bytedance.com, v1): one app's voice slots
(`SLOTS`, bought in the console, `TRAININGS` each), `POST /api/v1/mega_tts/audio/upload` (trains the slot:
not idempotent), `POST /api/v1/mega_tts/status` (0 none, 1 training, 2 trained, 3 failed, 4 active, with
`create_time` in ms and `version`) and `POST /api/v1/tts` (JSON: `code` 3000 and base64 audio, or a 3xxx
code). Auth: `Authorization: Bearer;<token>` and the app's `appid` in the body, "requested grant not found"
otherwise; the upload and the status take the model's `Resource-Id`. Unknown or malformed fields are
refused (BaseResp 1001; tts code 3001).

Faults: "submit" (the upload), "listing" then "status" (one status endpoint serves both the lookup and the
poll), "result" (tts); `server.volc_tts_codes`: codes the next tts answers give; `server.volc_refuse_next`:
the next upload is refused (1104). A slot trains in `server.steps` status looks. Calls: ("enroll", slot)
for each upload that arrives, ("status", slot), ("tts", slot)."""

from __future__ import annotations

import base64
import binascii
import json
import re
import time

from fake_hosted import _json
from fakes_tts import _voice

PREFIX = "/volcengine"
NAME = "volcengine-tts"  # the backend (the package keys protocols by module name)
KEY_ENV, KEY = "DRAMAFORGE_TEST_VOLCENGINE_TOKEN", "volc-test-token-0001"
APP_ENV, APP = "DRAMAFORGE_TEST_VOLCENGINE_APP_ID", "7000000001"
ENV = {KEY_ENV: KEY, APP_ENV: APP}
SLOTS = {"ava": "S_ava00001", "bo": "S_bo000002"}  # character -> the slot bought for them
TRAININGS = 3
RESOURCES = {0: "volc.megatts.voiceclone", 1: "volc.megatts.voiceclone", 4: "seed-icl-2.0"}
CLUSTERS = ("volcano_icl", "volcano_icl_concurr")  # what the ICL voices (model_type 1, 4) are spoken on
UPLOAD = {"appid", "speaker_id", "audios", "source", "language", "model_type", "extra_params"}
FORMATS = ("wav", "mp3", "ogg", "m4a", "aac", "pcm")
TTS = {"app": {"appid", "token", "cluster"}, "user": {"uid"},
       "audio": {"voice_type", "encoding", "rate", "speed_ratio", "emotion", "enable_emotion", "emotion_scale",
                 "explicit_language", "context_language", "loudness_ratio", "bitrate"},
       "request": {"reqid", "text", "text_type", "operation", "with_timestamp", "extra_param", "silence_duration",
                   "model"}}
GRANT = "authenticate request: load grant: requested grant not found"


def options(server) -> dict:
    return {"base_url": server.base + PREFIX, "api_key_env": KEY_ENV, "app_id_env": APP_ENV, "speakers": SLOTS,
            "poll_s": 0.02}


def slots(server) -> dict[str, dict]:
    """The app's slots: status, create_ms, version, clip (the audio trained), trainings left, polls."""
    return server.__dict__.setdefault("volc_slots", {s: _empty() for s in SLOTS.values()})


def reset(server) -> None:
    for name in ("volc_slots", "volc_uploads", "volc_tts", "volc_reqids", "volc_tts_codes", "volc_refuse_next"):
        server.__dict__.pop(name, None)


def train(server, slot: str, clip: bytes, *, at: float, status: int = 2) -> None:
    """The slot as an earlier training left it (at `at`, epoch seconds)."""
    s = slots(server)[slot]
    s.update(status=status, create_ms=int(at * 1000), version=s["version"] + 1, clip=clip, model_type=1)


def _empty() -> dict:
    return {"status": 0, "create_ms": 0, "version": 0, "clip": None, "left": TRAININGS, "polls": 0, "model_type": None}


def _base(h, http: int, code: int, message: str, **extra) -> None:
    _json(h, http, {"BaseResp": {"StatusCode": code, "StatusMessage": message}, **extra})


def _authorized(h, body: dict) -> bool:
    token = (h.headers.get("Authorization") or "").partition(";")
    return token[0] == "Bearer" and token[2].strip() == KEY and body.get("appid") == APP


def route(server, h, method: str, path: str, query: dict, raw: bytes) -> None:
    if method != "POST":
        return _json(h, 405, {"message": f"{method} is not allowed"})
    try:
        body = json.loads(raw or b"")
    except ValueError:
        body = None
    if path == "/api/v1/tts":
        return _tts(server, h, body)
    if path not in ("/api/v1/mega_tts/audio/upload", "/api/v1/mega_tts/status"):
        return _json(h, 404, {"message": f"no route {path}"})
    if not isinstance(body, dict):
        return _base(h, 400, 1001, "the body must be a JSON object")
    if not _authorized(h, body):
        return _base(h, 401, 1001, GRANT)
    model_type = body.get("model_type", 0)
    if h.headers.get("Resource-Id") not in ((RESOURCES.get(model_type),) if path.endswith("upload")
                                            else set(RESOURCES.values())):
        return _base(h, 403, 1001, f"[resource_id={h.headers.get('Resource-Id')}] requested resource not granted")
    slot = body.get("speaker_id")
    if path.endswith("/status"):
        return _status(server, h, body, slot)
    return _upload(server, h, body, slot, model_type)


def _status(server, h, body: dict, slot) -> None:
    server.calls.append(("status", slot))
    if set(body) - {"appid", "speaker_id"}:
        return _base(h, 400, 1001, f"unknown fields: {', '.join(sorted(set(body) - {'appid', 'speaker_id'}))}")
    if server.fault(h, server.faults.next("listing") or server.faults.next("status")):
        return
    s = slots(server).get(slot)
    if s is None:
        return _base(h, 200, 1107, "speaker not found")
    if s["status"] == 1:  # training: done after `steps` looks
        s["polls"] += 1
        if s["polls"] >= server.steps:
            s["status"] = 2
    _base(h, 200, 0, "", speaker_id=slot, status=s["status"], create_time=s["create_ms"],
          version=f"V{s['version']}" if s["version"] else "", demo_audio="")


def _upload(server, h, body: dict, slot, model_type) -> None:
    server.calls.append(("enroll", slot))
    problem = _invalid_upload(body)
    if problem:
        return _base(h, 400, 1001, problem)
    s = slots(server).get(slot)
    if s is None:
        return _base(h, 200, 1107, "speaker not found")
    if s["left"] <= 0:
        return _base(h, 200, 1123, "upload times exceed the limit")
    audio = base64.b64decode(body["audios"][0]["audio_bytes"])
    if server.__dict__.pop("volc_refuse_next", False):
        return _base(h, 200, 1104, "SIDFailError: the voice is too similar to a public figure's")
    try:
        seconds = len(_voice.decode(audio)) / _voice.RATE
    except Exception:  # noqa: BLE001 -- anything ffmpeg cannot read
        return _base(h, 200, 1108, "audio convert failed")
    if seconds < 1:
        return _base(h, 200, 1105, "AudioLengthError: the audio is too short")

    def commit():
        s.update(status=1, polls=0, create_ms=int(time.time() * 1000), version=s["version"] + 1, clip=audio,
                 left=s["left"] - 1, model_type=model_type)
        server.__dict__.setdefault("volc_uploads", []).append(
            {"slot": slot, "resource": h.headers.get("Resource-Id"), **{k: v for k, v in body.items() if k != "audios"},
             "audio_format": body["audios"][0].get("audio_format"), "audio": audio})

    if server.fault(h, server.faults.next("submit"), after=commit):
        return
    commit()
    _base(h, 200, 0, "", speaker_id=slot)


def _invalid_upload(body: dict) -> str | None:
    """What the upload's validation refuses (BaseResp 1001), or None."""
    if set(body) - UPLOAD:
        return f"unknown fields: {', '.join(sorted(set(body) - UPLOAD))}"
    if not isinstance(body.get("speaker_id"), str) or body.get("source") != 2:
        return "speaker_id and source (2) are required"
    if body.get("language", 0) not in range(6) or body.get("model_type", 0) not in (0, 1, 2, 3, 4):
        return "language must be 0-5 and model_type 0-4"
    audios = body.get("audios")
    if not isinstance(audios, list) or len(audios) != 1 or not isinstance(audios[0], dict):
        return "audios takes one audio"
    a = audios[0]
    if set(a) - {"audio_bytes", "audio_format", "text"} or a.get("audio_format", "wav") not in FORMATS:
        return f"an audio has audio_bytes, audio_format ({', '.join(FORMATS)}) and text"
    try:
        data = base64.b64decode(a.get("audio_bytes") or "", validate=True)
    except (binascii.Error, ValueError):
        return "audio_bytes is not base64"
    if not data or len(data) > 10 * 1024 * 1024:
        return "an audio takes 1 byte to 10 MB"
    return None


def _tts_error(h, http: int, reqid, code: int, message: str) -> None:
    _json(h, http, {"reqid": reqid, "code": code, "message": message})


def _tts(server, h, body) -> None:
    if not isinstance(body, dict):
        return _tts_error(h, 400, None, 3001, "invalid request: the body must be JSON")
    app, audio, request = body.get("app") or {}, body.get("audio") or {}, body.get("request") or {}
    reqid = request.get("reqid") if isinstance(request, dict) else None
    token = (h.headers.get("Authorization") or "").partition(";")
    if token[0] != "Bearer" or token[2].strip() != KEY or not isinstance(app, dict) or app.get("appid") != APP:
        return _tts_error(h, 401, reqid, 3001, GRANT)
    for name, fields in TTS.items():
        part = body.get(name)
        if not isinstance(part, dict) or set(part) - fields:
            return _tts_error(h, 400, reqid, 3001, f"invalid request: {name} takes {', '.join(sorted(fields))}")
    if set(body) - set(TTS) or not app.get("token") or not body["user"].get("uid"):
        return _tts_error(h, 400, reqid, 3001, "invalid request: app.token and user.uid are required")
    if request.get("operation") != "query" or not reqid:
        return _tts_error(h, 400, reqid, 3001, "invalid request: operation must be query over HTTP, with a reqid")
    if audio.get("encoding", "pcm") not in ("wav", "pcm") or audio.get("rate", 24000) not in (8000, 16000, 24000):
        return _tts_error(h, 400, reqid, 3001, "invalid request: this fake speaks wav or pcm at 8, 16 or 24 kHz")
    if not 0.1 <= float(audio.get("speed_ratio", 1)) <= 2 or ("emotion" in audio and not audio.get("enable_emotion")):
        return _tts_error(h, 400, reqid, 3001, "invalid request: speed_ratio 0.1-2; emotion needs enable_emotion")
    slot = audio.get("voice_type")
    server.calls.append(("tts", slot))
    seen = server.__dict__.setdefault("volc_reqids", set())
    if reqid in seen:
        return _tts_error(h, 400, reqid, 3006, "the same reqid was requested again")
    seen.add(reqid)
    if server.fault(h, server.faults.next("result")):
        return
    codes = server.__dict__.get("volc_tts_codes") or []
    if codes:
        code = codes.pop(0)
        return _tts_error(h, 500 if code in (3030, 3031) else 400, reqid, code,
                          "quota exceeded for types: concurrency" if code == 3003 else f"error {code}")
    text = request.get("text")
    if not isinstance(text, str) or len(text.encode("utf-8")) > 1024:
        return _tts_error(h, 400, reqid, 3010, "text too long")
    if not re.search(r"\w", text):
        return _tts_error(h, 400, reqid, 3011, "illegal input text!")
    s = slots(server).get(slot)
    if s is None or s["status"] not in (2, 4):
        return _tts_error(h, 400, reqid, 3050, "voice_type not exist")
    if app.get("cluster") not in CLUSTERS:
        return _tts_error(h, 400, reqid, 3001, "Fail to feed text, reason Init Engine Instance failed")
    server.__dict__.setdefault("volc_tts", []).append({"slot": slot, "reqid": reqid, "text": text, **app, **audio})
    rate = audio.get("rate", 24000)
    wrong = slot in getattr(server, "wrong_voices", set())
    samples = _voice.wrong(text, rate) if wrong else _voice.cloned(s["clip"], text, rate)
    sound = _voice.wav_bytes(samples, rate) if audio.get("encoding") == "wav" else _voice.pcm16(samples)
    _json(h, 200, {"reqid": reqid, "code": 3000, "operation": "query", "message": "Success", "sequence": -1,
                   "data": base64.b64encode(sound).decode(),
                   "addition": {"duration": str(round(1000 * len(samples) / rate))}})
