"""Alibaba Cloud Model Studio (DashScope): Qwen voice cloning and Qwen3-TTS-VC, as the Qwen voice cloning
API reference and the Qwen-TTS API reference describe them (see `stages/backends/dashscope_speech.py`):
`Authorization: Bearer`, `POST /api/v1/services/audio/tts/customization` with `model: qwen-voice-enrollment`
and `input.action` create / list / delete, `POST /api/v1/services/aigc/multimodal-generation/generation`
answering with `output.audio.url` (a link the fake serves under `/results/`), and `{request_id, code,
message}` errors. The fake's own strictness (not from the docs): a list page holds at most 100; synthesis
takes only `text`, `voice` and `language_type` (a VC model has no `instructions`); a text holding
"FORBIDDEN" is refused as DataInspectionFailed. State: `server.dashscope_voices` (voice -> its clip and
model), `server.dashscope_bodies` (each request as sent)."""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import time
import uuid
import wave

from fake_hosted import _json, _raw

from fakes_tts import _voice

PREFIX = "/dashscope-tts"
KEY_ENV, KEY = "DRAMAFORGE_TEST_DASHSCOPE_KEY", "sk-test-dashscope-0001"
ENV = {KEY_ENV: KEY}
TARGETS = ("qwen3-tts-vc-2026-01-22", "qwen3-tts-vc-realtime-2026-01-15", "qwen3-tts-vc-realtime-2025-11-27")
HTTP_MODELS = ("qwen3-tts-vc-2026-01-22",)  # the realtime ones speak over WebSocket only
LANGUAGES = ("zh", "en", "de", "it", "pt", "es", "ja", "ko", "fr", "ru")
LANGUAGE_TYPES = ("Auto", "Chinese", "English", "German", "Italian", "Portuguese", "Spanish", "Japanese", "Korean",
                  "French", "Russian")
MIMES = ("audio/wav", "audio/mpeg", "audio/mp4")
CREATE_FIELDS = {"action", "target_model", "preferred_name", "audio", "text", "language"}


def options(server) -> dict:
    return {"base_url": server.base + PREFIX + "/api/v1", "api_key_env": KEY_ENV, "poll_s": 0.02}


def _error(h, status: int, code: str, message: str) -> None:
    _json(h, status, {"request_id": str(uuid.uuid4()), "code": code, "message": message})


def _state(server) -> tuple[dict, dict, list]:
    d = server.__dict__
    return d.setdefault("dashscope_voices", {}), d.setdefault("dashscope_audio", {}), d.setdefault("dashscope_bodies", [])


def route(server, h, method: str, path: str, query: dict, raw: bytes) -> None:
    m = re.fullmatch(r"/results/([\w-]+)\.wav", path)
    if method == "GET" and m:  # a signed OSS link: no key
        audio = _state(server)[1].get(m.group(1))
        server.calls.append(("download", m.group(1)))
        if audio is None:
            return _raw(h, 404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
        return _raw(h, 200, audio, "audio/wav")
    if h.headers.get("Authorization") != f"Bearer {KEY}":
        return _error(h, 401, "InvalidApiKey", "Invalid API-key provided.")
    if method != "POST":
        return _error(h, 404, "NotFound", f"Cannot {method} {path}")
    if not (h.headers.get("Content-Type") or "").startswith("application/json"):
        return _error(h, 400, "InvalidParameter", "Content-Type must be application/json")
    try:
        body = json.loads(raw)
    except ValueError:
        return _error(h, 400, "InvalidParameter", "The request body is not valid JSON")
    if not isinstance(body, dict) or set(body) - {"model", "input", "parameters"} or \
            not isinstance(body.get("input"), dict):
        return _error(h, 400, "InvalidParameter", "The request takes model, input and parameters")
    if path == "/api/v1/services/audio/tts/customization":
        return _customization(server, h, body)
    if path == "/api/v1/services/aigc/multimodal-generation/generation":
        return _speak(server, h, body)
    _error(h, 404, "NotFound", f"Cannot {method} {path}")


def _customization(server, h, body: dict) -> None:
    voices, _, bodies = _state(server)
    if body.get("model") != "qwen-voice-enrollment":
        return _error(h, 400, "InvalidParameter", "Model not exist.")
    data = body["input"]
    action = data.get("action")
    bodies.append((action, body))
    if action == "create":
        return _create(server, h, data)
    if action == "list":
        server.calls.append(("list", ""))
        if server.fault(h, server.faults.next("listing")):
            return
        size, index = data.get("page_size", 10), data.get("page_index", 0)
        if set(data) - {"action", "page_size", "page_index"} or not isinstance(size, int) or \
                not isinstance(index, int) or not 1 <= size <= 100 or index < 0:
            return _error(h, 400, "InvalidParameter", "page_size is 1-100, page_index 0 or more")
        listed = [{"voice": v, "target_model": e["target_model"], "language": e["language"],
                   "gmt_create": e["gmt_create"], "gmt_modified": e["gmt_create"]} for v, e in reversed(voices.items())]
        return _json(h, 200, {"output": {"page_index": index, "page_size": size, "total_count": len(listed),
                                         "voice_list": listed[index * size:(index + 1) * size]},
                              "usage": {"count": 0}, "request_id": str(uuid.uuid4())})
    if action == "delete":
        if voices.pop(str(data.get("voice")), None) is None:
            return _error(h, 400, "InvalidParameter", "The voice does not exist.")
        return _json(h, 200, {"output": {}, "usage": {}, "request_id": str(uuid.uuid4())})
    _error(h, 400, "InvalidParameter", "action must be create, list or delete")


def _clip(audio) -> tuple[bytes | None, str]:
    """The clip a create carries, or why it is refused."""
    if not isinstance(audio, dict) or set(audio) != {"data"} or not isinstance(audio["data"], str):
        return None, "audio takes one field, data"
    m = re.fullmatch(r"data:([\w/.+-]+);base64,(.*)", audio["data"], re.DOTALL)
    if m is None:
        return None, "this fake takes audio.data as a data URI (a public URL cannot be fetched here)"
    if m.group(1) not in MIMES:
        return None, f"the media type must be one of {', '.join(MIMES)}"
    if len(audio["data"]) >= 10_000_000:
        return None, "the encoded audio must be under 10 MB"
    try:
        clip = base64.b64decode(m.group(2), validate=True)
    except (binascii.Error, ValueError):
        return None, "audio.data is not valid base64"
    if m.group(1) == "audio/wav":
        try:
            with wave.open(io.BytesIO(clip)) as w:
                if w.getsampwidth() != 2 or w.getnchannels() != 1 or w.getframerate() < 24000:
                    return None, "the audio must be 16-bit mono WAV at 24 kHz or more"
                if w.getnframes() / w.getframerate() > 60:
                    return None, "the audio must be at most 60 seconds"
        except (wave.Error, EOFError):
            return None, "the audio cannot be decoded"
    return clip, ""


def _create(server, h, data: dict) -> None:
    voices, _, _ = _state(server)
    name = data.get("preferred_name")
    server.calls.append(("enroll", name))
    if set(data) - CREATE_FIELDS:
        return _error(h, 400, "InvalidParameter", f"unknown fields: {', '.join(sorted(set(data) - CREATE_FIELDS))}")
    if data.get("target_model") not in TARGETS:
        return _error(h, 400, "InvalidParameter", f"target_model must be one of {', '.join(TARGETS)}")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_]{1,16}", name):
        return _error(h, 400, "InvalidParameter", "preferred_name takes 1-16 letters, digits and underscores")
    if data.get("language") is not None and data["language"] not in LANGUAGES:
        return _error(h, 400, "InvalidParameter", f"language must be one of {', '.join(LANGUAGES)}")
    if data.get("text") is not None and not isinstance(data["text"], str):
        return _error(h, 400, "InvalidParameter", "text must be a string")
    clip, problem = _clip(data.get("audio"))
    if clip is None:
        return _error(h, 400, "Audio.PreprocessError", problem)

    def make() -> str:
        now = time.time()
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now + 8 * 3600)) + f"{int(now % 1 * 1000):03d}"
        voice = f"qwen-tts-vc-{name}-voice-{stamp}-{uuid.uuid4().hex[:4]}"
        voices[voice] = {"clip": clip, "target_model": data["target_model"], "language": data.get("language", "zh"),
                         "gmt_create": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now + 8 * 3600)),
                         "text": data.get("text")}
        return voice

    if server.fault(h, server.faults.next("submit"), after=make):
        return
    voice = make()
    _json(h, 200, {"output": {"voice": voice, "target_model": data["target_model"]}, "usage": {"count": 1},
                   "request_id": str(uuid.uuid4())})


def _speak(server, h, body: dict) -> None:
    voices, audio, bodies = _state(server)
    data, model = body["input"], body.get("model")
    bodies.append(("tts", body))
    server.calls.append(("tts", data.get("voice")))
    if server.fault(h, server.faults.next("result")):
        return
    if model not in HTTP_MODELS:
        return _error(h, 400, "InvalidParameter", "Model not exist.")
    unknown = set(data) - {"text", "voice", "language_type"}
    if unknown or (body.get("parameters") not in (None, {})):
        return _error(h, 400, "InvalidParameter", f"{model} does not take: {', '.join(sorted(unknown)) or 'parameters'}")
    text, voice = data.get("text"), data.get("voice")
    if not isinstance(text, str) or not text.strip():
        return _error(h, 400, "InvalidParameter", "input.text is required")
    if data.get("language_type", "Auto") not in LANGUAGE_TYPES:
        return _error(h, 400, "InvalidParameter", f"language_type must be one of {', '.join(LANGUAGE_TYPES)}")
    entry = voices.get(voice)
    if entry is None or entry["target_model"] != model:
        return _error(h, 400, "InvalidParameter", "Invalid voice specified")
    if "FORBIDDEN" in text:
        return _error(h, 400, "DataInspectionFailed", "Input data may contain inappropriate content.")
    samples = _voice.wrong(text) if voice in getattr(server, "wrong_voices", set()) else _voice.cloned(entry["clip"],
                                                                                                       text)
    audio_id = f"audio_{uuid.uuid4().hex[:12]}"
    audio[audio_id] = _voice.wav_bytes(samples)
    _json(h, 200, {"output": {"finish_reason": "stop", "audio": {
        "url": f"{server.base}{PREFIX}/results/{audio_id}.wav", "id": audio_id, "data": "",
        "expires_at": int(time.time()) + 86400}}, "usage": {"characters": len(text)}, "request_id": str(uuid.uuid4())})
