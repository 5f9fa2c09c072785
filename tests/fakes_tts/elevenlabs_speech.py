"""ElevenLabs as its SDK (elevenlabs 2.78.0) and docs describe it: `xi-api-key`; Instant Voice Cloning
`POST /v1/voices/add` (multipart: name, files (one part each), description, labels as a JSON string,
remove_background_noise) answering `{voice_id, requires_verification}`; `GET /v2/voices` (search, page_size
<= 100, next_page_token; `search` loose over name, description, labels and category); `POST
/v1/text-to-speech/{voice_id}?output_format=` with a JSON body, answering the audio itself; errors as
`{"detail": {"status", "message"}}`, validation as a 422 list.

Stricter than the service where the docs leave room, so the backend keeps to what is documented: unknown
form or body fields and label keys other than language/accent/gender/age are refused (422), and so is
`language_code` for a multilingual v2 model. Test knobs on the server: `elevenlabs_protected` (voice names
whose clone requires verification), `elevenlabs_flagged` (words the moderation refuses), `elevenlabs_page`
(a smaller page than asked for), `wrong_voices`. The 429 codes and the moderation code are illustrative."""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import time
import uuid

from fake_hosted import _json, _raw
from fakes_tts import _voice

NAME = "elevenlabs"  # the registry's name (this module's own name is elevenlabs_speech)
PREFIX = "/elevenlabs"
KEY_ENV, KEY = "DRAMAFORGE_TEST_ELEVENLABS_KEY", "sk_test_eleven_0001"
ENV = {KEY_ENV: KEY}
MODELS = ("eleven_multilingual_v2", "eleven_v3", "eleven_flash_v2_5", "eleven_turbo_v2_5", "eleven_flash_v2",
          "eleven_turbo_v2", "eleven_multilingual_v1", "eleven_monolingual_v1")
FORMATS = re.compile(r"(pcm|wav)_(8000|16000|22050|24000|32000|44100|48000)|mp3_(22050_32|24000_48|"
                     r"44100_(32|64|96|128|192))|opus_48000_(32|64|96|128|192)|(ulaw|alaw)_8000")
ADD_FIELDS = {"name", "files", "remove_background_noise", "description", "labels"}
LABEL_KEYS = {"language", "accent", "gender", "age"}
TTS_FIELDS = {"text", "model_id", "language_code", "voice_settings", "pronunciation_dictionary_locators", "seed",
              "previous_text", "next_text", "previous_request_ids", "next_request_ids", "use_pvc_as_ivc",
              "apply_text_normalization", "apply_language_text_normalization", "audio_effects"}
SETTINGS = {"stability": (0, 1), "similarity_boost": (0, 1), "style": (0, 1), "speed": (0.7, 1.2)}


def options(server) -> dict:
    return {"base_url": server.base + PREFIX, "api_key_env": KEY_ENV, "poll_s": 0.02, "request_timeout_s": 5}


def voices(server) -> dict:
    """voice_id -> the voice as the fake keeps it (its clip, name, labels, ...)."""
    return server.__dict__.setdefault("elevenlabs_voices", {})


def spoken(server) -> list[dict]:
    """Every synthesis request as the fake got it: {voice_id, query, body}."""
    return server.__dict__.setdefault("elevenlabs_tts", [])


def _error(h, status: int, code: str, message: str, headers: dict | None = None) -> None:
    _json(h, status, {"detail": {"status": code, "message": message}}, headers)


def _invalid(h, loc: list, msg: str, kind: str = "value_error") -> None:
    _json(h, 422, {"detail": [{"loc": loc, "msg": msg, "type": kind}]})


def _fault(server, h, queue: str, after=None) -> bool:
    """A scripted fault from `queue`; a 429 in ElevenLabs' own shape, the rest as the shared server plays them."""
    kind = server.faults.next(queue)
    if kind in ("429", "429-after"):
        if after is not None and kind.endswith("-after"):
            after()
        _error(h, 429, "too_many_concurrent_requests", "Too many concurrent requests. Your plan allows 2 at once.",
               {"Retry-After": "1"})
        return True
    return server.fault(h, kind, after=after)


def _form(content_type: str, raw: bytes) -> dict[str, list]:
    """A multipart body as {name: [str | (filename, bytes, type)]} (repeated parts kept in order)."""
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    form: dict[str, list] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True)
        value = (part.get_filename(), data, part.get_content_type()) if part.get_filename() else data.decode()
        form.setdefault(name, []).append(value)
    return form


def _voice_json(v: dict) -> dict:
    return {"voice_id": v["voice_id"], "name": v["name"], "category": "cloned", "labels": v["labels"],
            "description": v["description"], "created_at_unix": v["created_at_unix"], "is_owner": True,
            "samples": [{"sample_id": f"s-{v['voice_id']}", "file_name": v["file_name"], "mime_type": v["mime"],
                         "size_bytes": len(v["clip"])}],
            "voice_verification": {"requires_verification": v["requires_verification"], "is_verified": False,
                                   "verification_failures": [], "verification_attempts_count": 0}}


def _add(server, h, raw: bytes) -> None:
    kind = h.headers.get("Content-Type") or ""
    if not kind.startswith("multipart/form-data"):
        return _invalid(h, ["body"], "expected a multipart/form-data body")
    form = _form(kind, raw)
    for name in sorted(set(form) - ADD_FIELDS):
        return _invalid(h, ["body", name], "extra fields not permitted", "value_error.extra")
    name = (form.get("name") or [""])[0]
    if not isinstance(name, str) or not name.strip():
        return _invalid(h, ["body", "name"], "field required", "value_error.missing")
    files = form.get("files") or []
    if not files or not all(isinstance(f, tuple) for f in files):
        return _invalid(h, ["body", "files"], "field required", "value_error.missing")
    try:
        labels = json.loads((form.get("labels") or ["{}"])[0])
    except ValueError:
        return _invalid(h, ["body", "labels"], "labels must be a JSON object")
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()) \
            or set(labels) - LABEL_KEYS:
        return _invalid(h, ["body", "labels"], "labels: string values under language, accent, gender or age")
    noise = (form.get("remove_background_noise") or ["false"])[0]
    if noise not in ("true", "false", "True", "False"):
        return _invalid(h, ["body", "remove_background_noise"], "value could not be parsed to a boolean")
    for _, data, _ in files:
        try:
            seconds = len(_voice.decode(data)) / _voice.RATE
        except Exception:  # ffmpeg cannot read it
            return _error(h, 400, "invalid_audio", "One of the uploaded files could not be read as audio.")
        if seconds < 1:
            return _error(h, 400, "voice_too_short", "The samples are too short to clone a voice.")
    server.calls.append(("enroll", name))
    filename, clip, mime = files[0]
    protected = name in getattr(server, "elevenlabs_protected", set())

    def commit() -> dict:
        voice_id = uuid.uuid4().hex[:20]
        v = {"voice_id": voice_id, "name": name, "labels": labels, "description": (form.get("description") or [""])[0],
             "created_at_unix": int(time.time()), "clip": clip, "file_name": filename, "mime": mime,
             "requires_verification": protected, "background_removed": noise in ("true", "True")}
        voices(server)[voice_id] = v
        return v

    if _fault(server, h, "submit", after=commit):
        return
    v = commit()
    answer = {"voice_id": v["voice_id"], "requires_verification": protected}
    if protected:
        answer["library_voice_match"] = {"library_voice_id": "lib0001", "public_owner_id": "owner0001"}
    _json(h, 200, answer)


def _list(server, h, query: dict) -> None:
    size = query.get("page_size", ["10"])[0]
    if not size.isdigit() or not 1 <= int(size) <= 100:
        return _invalid(h, ["query", "page_size"], "ensure this value is between 1 and 100")
    words = [w for w in re.split(r"[^0-9a-z]+", query.get("search", [""])[0].lower()) if w]
    server.calls.append(("list", query.get("search", [""])[0]))
    if _fault(server, h, "listing"):
        return

    def matches(v: dict) -> bool:  # loose, as documented: any word of the search, anywhere
        where = " ".join([v["name"], v["description"], *v["labels"].values(), "cloned"]).lower()
        return not words or any(w in where for w in words)

    found = sorted((v for v in voices(server).values() if matches(v)), key=lambda v: v["name"])
    per = min(int(size), getattr(server, "elevenlabs_page", 100))
    start = int(query.get("next_page_token", ["0"])[0] or 0)
    page, more = found[start:start + per], start + per < len(found)
    _json(h, 200, {"voices": [_voice_json(v) for v in page], "has_more": more, "total_count": len(found),
                   "next_page_token": str(start + per) if more else None})


def _tts(server, h, voice_id: str, query: dict, raw: bytes) -> None:
    fmt = query.get("output_format", ["mp3_44100_128"])[0]
    if not FORMATS.fullmatch(fmt):
        return _invalid(h, ["query", "output_format"], f"unexpected value {fmt!r}", "type_error.enum")
    try:
        body = json.loads(raw)
    except ValueError:
        return _invalid(h, ["body"], "the body is not valid JSON", "value_error.jsondecode")
    if not isinstance(body, dict):
        return _invalid(h, ["body"], "value is not a valid dict", "type_error.dict")
    for name in sorted(set(body) - TTS_FIELDS):
        return _invalid(h, ["body", name], "extra fields not permitted", "value_error.extra")
    text, model = body.get("text"), body.get("model_id", "eleven_multilingual_v2")
    if not isinstance(text, str) or not text.strip():
        return _invalid(h, ["body", "text"], "field required", "value_error.missing")
    if model not in MODELS:
        return _error(h, 400, "model_not_found", f"A model with model ID {model} does not exist.")
    if "language_code" in body and model.startswith("eleven_multilingual_v"):
        return _error(h, 400, "unsupported_language_code", f"Model {model} does not support language_code.")
    settings = body.get("voice_settings") or {}
    if not isinstance(settings, dict) or set(settings) - {*SETTINGS, "use_speaker_boost"}:
        return _invalid(h, ["body", "voice_settings"], "unknown voice setting")
    for name, (low, high) in SETTINGS.items():
        if name in settings and not (isinstance(settings[name], (int, float)) and low <= settings[name] <= high):
            return _invalid(h, ["body", "voice_settings", name], f"ensure this value is between {low} and {high}")
    server.calls.append(("tts", voice_id))
    spoken(server).append({"voice_id": voice_id, "query": {k: v[0] for k, v in query.items()}, "body": body})
    if _fault(server, h, "result"):
        return
    v = voices(server).get(voice_id)
    if v is None:
        return _error(h, 400, "voice_not_found", f"A voice with the voice_id {voice_id} was not found.")
    if any(w in text.lower() for w in getattr(server, "elevenlabs_flagged", ())):
        return _error(h, 400, "content_against_policy", "This request was flagged by our moderation system.")
    codec, rate = fmt.split("_")[0], int(fmt.split("_")[1])
    words = re.sub(r"^\s*(\[[^\]]*\]\s*)+", "", text) if model.startswith(("eleven_v3", "eleven_v4")) else text
    samples = _voice.wrong(words, rate) if voice_id in getattr(server, "wrong_voices", set()) \
        else _voice.cloned(v["clip"], words, rate)
    billed = {"character-cost": str(len(text)), "request-id": uuid.uuid4().hex}  # as the service's headers
    if codec == "pcm":
        return _raw(h, 200, _voice.pcm16(samples), "audio/pcm", billed)
    if codec == "wav":
        return _raw(h, 200, _voice.wav_bytes(samples, rate), "audio/wav", billed)
    if codec == "mp3":
        return _raw(h, 200, _mp3(samples, rate), "audio/mpeg", billed)
    _error(h, 400, "unsupported_output_format", f"this fake speaks pcm, wav and mp3, not {fmt}")


def _mp3(samples, rate: int) -> bytes:
    import tempfile
    from pathlib import Path

    from stages.core.media import run_ffmpeg

    with tempfile.TemporaryDirectory(prefix="fake-eleven-") as tmp:
        src, out = Path(tmp) / "a.wav", Path(tmp) / "a.mp3"
        src.write_bytes(_voice.wav_bytes(samples, rate))
        run_ffmpeg(["-i", str(src), "-c:a", "libmp3lame", "-b:a", "64k", str(out)], what="encoding a fake mp3")
        return out.read_bytes()


def route(server, h, method: str, path: str, query: dict, raw: bytes) -> None:
    if h.headers.get("xi-api-key") != KEY:
        return _error(h, 401, "invalid_api_key", "Invalid API key")
    if method == "POST" and path == "/v1/voices/add":
        return _add(server, h, raw)
    if method == "GET" and path == "/v2/voices":
        return _list(server, h, query)
    m = re.fullmatch(r"/v1/voices/([\w-]+)", path)
    if method == "GET" and m:  # one voice's metadata (the SDK's voices.get)
        server.calls.append(("voice", m.group(1)))
        if server.fault(h, server.faults.next("status")):
            return
        voice = voices(server).get(m.group(1))
        if voice is None:
            return _error(h, 404, "voice_not_found", f"A voice with the voice_id {m.group(1)} was not found.")
        return _json(h, 200, _voice_json(voice))
    m = re.fullmatch(r"/v1/text-to-speech/([\w-]+)", path)
    if method == "POST" and m:
        return _tts(server, h, m.group(1), query, raw)
    _json(h, 404, {"detail": "Not Found"})
