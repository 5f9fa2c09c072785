"""Fish Audio's API as its OpenAPI spec and SDK describe it (api.fish.audio): `Authorization: Bearer`,
`POST /model` (multipart: `type=tts`, `title`, `train_mode=fast`, `visibility`, `voices` files, `texts`)
answering 201 with the model (`_id`, `state`), `GET /model/{id}` (created -> training -> trained, or
failed for a title in `server.fish_failing`), `GET /model?self&title&page_size&page_number&sort_by`
(`{total, items}`), and `POST /v1/tts` with a MessagePack (or JSON) body and a `model` header, answering
the audio itself. Errors are `{"message", "status"}`; a body that cannot be parsed gets a plain-text 400.

Where the docs say nothing, this fake chooses (each marked so in tests): `title` filters by
case-insensitive substring, newest first; an unknown `reference_id` is a 400; a refusal is a 400 saying
the text is sensitive; the WAV carries true sizes. Fault queues: "submit" (create), "status" (a model's
state), "listing" (the model list), "result" (synthesis), plus this module's own "402" and "refuse"."""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import time
import uuid

from fake_hosted import _json, _raw

from fakes_tts import _voice

PREFIX = "/fish"
KEY_ENV, KEY = "DRAMAFORGE_TEST_FISH_KEY", "fish-test-key-0001"
ENV = {KEY_ENV: KEY}
MODELS = ("s1", "s2-pro", "s2.1-pro", "s2.1-pro-free")
FALLBACK_MODEL = "s2.1-pro"  # "If omitted or set to an unrecognized value, the request falls back to s2.1-pro"
CREATE_FIELDS = {"visibility", "type", "title", "description", "cover_image", "train_mode", "voices", "texts", "tags",
                 "enhance_audio_quality", "generate_sample"}
TTS_FIELDS = {"text", "temperature", "top_p", "references", "reference_id", "prosody", "chunk_length", "normalize",
              "format", "sample_rate", "mp3_bitrate", "opus_bitrate", "latency", "max_new_tokens",
              "repetition_penalty", "min_chunk_length", "condition_on_previous_chunks", "early_stop_threshold",
              "features"}
RATES = (8000, 16000, 24000, 32000, 44100)
# The spec lists opus bitrates in bps; the SDK sends its default 32 (kbps) on every request, so both are taken.
OPUS_BITRATES = (-1000, 24, 32, 48, 64, 24000, 32000, 48000, 64000)
# s1's markers as the docs list them (models-overview.mdx, and emotions.mdx's S1 lists from snippets/).
S1_TAGS = {
    "angry", "sad", "excited", "surprised", "satisfied", "delighted", "scared", "worried", "upset", "nervous",
    "frustrated", "depressed", "empathetic", "embarrassed", "disgusted", "moved", "proud", "relaxed", "grateful",
    "confident", "interested", "curious", "confused", "joyful", "disdainful", "unhappy", "anxious", "hysterical",
    "indifferent", "impatient", "guilty", "scornful", "panicked", "furious", "reluctant", "keen", "disapproving",
    "negative", "denying", "astonished", "serious", "sarcastic", "conciliative", "comforting", "sincere", "sneering",
    "hesitating", "yielding", "painful", "awkward", "amused", "shouting", "screaming", "whispering", "laughing",
    "chuckling", "sobbing", "sighing", "panting", "groaning", "in a hurry tone", "soft tone", "crying loudly",
    "crowd laughing", "background laughter", "audience laughing", "happy", "calm", "uncertain", "doubtful",
    "disappointed", "regretful", "ashamed", "jealous", "envious", "hopeful", "optimistic", "pessimistic", "nostalgic",
    "lonely", "bored", "contemptuous", "sympathetic", "compassionate", "determined", "resigned", "gasping", "yawning",
    "snoring", "break", "long-break",
}


def options(server) -> dict:
    return {"base_url": server.base + PREFIX, "api_key_env": KEY_ENV, "poll_s": 0.02, "request_timeout_s": 5}


def voices(server) -> dict:
    """The models made on this server: id -> its record (title, clip bytes, texts, state, ...)."""
    return server.__dict__.setdefault("fish_voices", {})


def spoken(server) -> list[dict]:
    """Every synthesis request as the server read it (its body without clip bytes, and its `model`)."""
    return server.__dict__.setdefault("fish_tts", [])


def _error(h, status: int, message: str, headers: dict | None = None) -> None:
    _json(h, status, {"message": message, "status": status}, headers)


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def _entity(v: dict) -> dict:
    return {"_id": v["id"], "type": "tts", "title": v["title"], "description": v["description"], "cover_image": "",
            "train_mode": "fast", "state": v["state"], "tags": v["tags"],
            "samples": [{"title": "sample", "text": t, "task_id": f"t-{v['id'][:8]}", "audio": ""} for t in v["texts"]],
            "created_at": _stamp(v["created"]), "updated_at": _stamp(v["created"]), "languages": ["en"],
            "visibility": v["visibility"], "lock_visibility": False, "like_count": 0, "mark_count": 0,
            "shared_count": 0, "task_count": v["tasks"], "liked": False, "marked": False,
            "author": {"_id": "5f1e0000aaaabbbbccccdddd", "nickname": "dramaforge-test", "avatar": ""}}


def _form(content_type: str, raw: bytes) -> dict[str, list]:
    """A multipart form as {name: [str | (filename, bytes), ...]} (a repeated field keeps every value)."""
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    form: dict[str, list] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        form.setdefault(name, []).append((part.get_filename(), data) if part.get_filename() else data.decode())
    return form


def _fault(server, h, queue: str, after=None) -> bool:
    kind = server.faults.next(queue)
    if kind == "402":
        _error(h, 402, "Insufficient credits")
        return True
    if kind == "refuse":
        _error(h, 400, "The text contains sensitive content and was refused")
        return True
    return server.fault(h, kind, after=after)


def route(server, h, method: str, path: str, query: dict, raw: bytes) -> None:
    if h.headers.get("Authorization") != f"Bearer {KEY}":
        return _error(h, 401, "Invalid Token")
    if method == "POST" and path == "/model":
        return _create(server, h, raw)
    if method == "GET" and path == "/model":
        return _list(server, h, query)
    m = re.fullmatch(r"/model/([0-9a-f]{32})", path)
    if method == "GET" and m:
        server.calls.append(("status", m.group(1)))
        if _fault(server, h, "status"):
            return
        with server.lock:
            v = voices(server).get(m.group(1))
            if v is None:
                return _error(h, 404, "Model not found")
            v["looks"] += 1  # created -> training -> trained (or failed) on the following looks
            if v["state"] in ("created", "training"):
                v["state"] = "training" if v["looks"] < 2 else \
                    "failed" if v["title"] in getattr(server, "fish_failing", set()) else "trained"
            return _json(h, 200, _entity(v))
    if method == "POST" and path == "/v1/tts":
        return _tts(server, h, raw)
    _error(h, 404, f"Not Found: {method} {path}")


def _create(server, h, raw: bytes) -> None:
    kind = h.headers.get("Content-Type") or ""
    if not kind.startswith("multipart/form-data"):
        return _error(h, 422, "voices: field required (send multipart/form-data)")
    form = _form(kind, raw)
    title = (form.get("title") or [""])[0]
    server.calls.append(("enroll", title))
    one = {k: v[0] for k, v in form.items() if k not in ("voices", "texts", "tags")}
    clips, texts = form.get("voices", []), form.get("texts", [])
    problem = None
    if set(form) - CREATE_FIELDS:
        problem = f"unknown fields: {', '.join(sorted(set(form) - CREATE_FIELDS))}"
    elif one.get("type") != "tts" or one.get("train_mode") != "fast":
        problem = "type must be 'tts' and train_mode 'fast'"
    elif not title.strip():
        problem = "title: field required"
    elif not 1 <= len(clips) <= 20 or not all(isinstance(c, tuple) and c[1] for c in clips):
        problem = "voices: 1 to 20 audio files required"
    elif len(texts) > 20 or (texts and len(texts) != len(clips)):
        problem = "texts must match the number of voices"
    elif one.get("visibility", "public") not in ("public", "unlist", "private"):
        problem = "visibility must be public, unlist or private"
    elif one.get("visibility", "public") == "public" and "cover_image" not in form:
        problem = "cover_image is required for a public model"
    elif any(one.get(k, "true") not in ("true", "false") for k in ("enhance_audio_quality", "generate_sample")):
        problem = "enhance_audio_quality and generate_sample are booleans"
    if problem is None:
        try:
            _voice.decode(clips[0][1])
        except Exception:  # noqa: BLE001 -- whatever ffmpeg says: not audio
            problem = "voices: the audio cannot be decoded"
    if problem:
        return _error(h, 422, problem)

    def commit() -> dict:
        with server.lock:
            v = {"id": uuid.uuid4().hex, "title": title, "description": one.get("description", ""),
                 "visibility": one.get("visibility", "public"), "tags": form.get("tags", []), "texts": texts,
                 "clip": clips[0][1], "state": "created", "looks": 0, "tasks": 0, "created": time.time(),
                 "enhance": one.get("enhance_audio_quality", "true")}
            voices(server)[v["id"]] = v
            return v

    if _fault(server, h, "submit", after=commit):
        return
    _json(h, 201, _entity(commit()))


def _list(server, h, query: dict) -> None:
    q = {k: v[-1] for k, v in query.items()}
    title = q.get("title", "")
    server.calls.append(("list", title))
    try:
        size, number = int(q.get("page_size", 10)), int(q.get("page_number", 1))
    except ValueError:
        return _error(h, 422, "page_size and page_number are integers")
    if not 1 <= size <= 100 or number < 1 or q.get("sort_by", "score") not in ("score", "task_count", "created_at") \
            or q.get("self", "false") not in ("true", "false"):
        return _error(h, 422, "page_size 1-100, page_number >= 1, sort_by score|task_count|created_at, self a boolean")
    if _fault(server, h, "listing"):
        return
    with server.lock:
        mine = q.get("self") == "true"
        items = [v for v in voices(server).values() if (mine or v["visibility"] == "public")
                 and title.lower() in v["title"].lower()]
        items.sort(key=lambda v: v["created"], reverse=True)
        page = items[(number - 1) * size:number * size]
        return _json(h, 200, {"total": len(items), "items": [_entity(v) for v in page],
                              "has_more": number * size < len(items)})


def _invalid(body: dict, model: str) -> str | None:
    """What the spec's TTSRequest refuses in `body` (a 422), or None."""
    if set(body) - TTS_FIELDS:
        return f"unknown fields: {', '.join(sorted(set(body) - TTS_FIELDS))}"
    checks = [
        (isinstance(body.get("text"), str) and body["text"].strip(), "text: a non-empty string is required"),
        (body.get("format", "mp3") in ("wav", "pcm", "mp3", "opus"), "format must be wav, pcm, mp3 or opus"),
        (body.get("sample_rate") is None or body.get("format", "mp3") == "opus" or body["sample_rate"] in RATES,
         f"sample_rate must be one of {RATES}"),
        (body.get("mp3_bitrate", 128) in (64, 128, 192), "mp3_bitrate must be 64, 128 or 192"),
        (body.get("opus_bitrate", -1000) in OPUS_BITRATES, "opus_bitrate is not one of the allowed values"),
        (body.get("latency", "normal") in ("low", "normal", "balanced"), "latency must be low, normal or balanced"),
        (isinstance(body.get("chunk_length", 300), int) and 100 <= body.get("chunk_length", 300) <= 300,
         "chunk_length must be 100 to 300"),
        (0 <= body.get("min_chunk_length", 50) <= 100, "min_chunk_length must be 0 to 100"),
        (all(0 <= body.get(k, 0.7) <= 1 for k in ("temperature", "top_p", "early_stop_threshold")),
         "temperature, top_p and early_stop_threshold must be 0 to 1"),
        (isinstance(body.get("normalize", True), bool), "normalize is a boolean"),
        (isinstance(body.get("references", []), list), "references must be an array"),
        (body.get("reference_id") is None or isinstance(body["reference_id"], (str, list)),
         "reference_id must be a string or an array of strings"),
        (not isinstance(body.get("reference_id"), list) or model != "s1", "multi-speaker is only for the S2 family"),
    ]
    prosody = body.get("prosody")
    if prosody is not None:
        checks.append((isinstance(prosody, dict) and not set(prosody) - {"speed", "volume", "normalize_loudness"}
                       and 0.5 <= prosody.get("speed", 1) <= 2 and -20 <= prosody.get("volume", 0) <= 20,
                       "prosody: speed 0.5-2, volume -20 to 20 dB"))
    return next((message for ok, message in checks if not ok), None)


def _cues(text: str, model: str) -> tuple[list[str], str]:
    """The acting cues the model reads in `text`, and the words it speaks: s1 knows a fixed set of
    `(marker)`s (any other parenthesis is spoken); the S2 family reads every `[cue]`."""
    if model == "s1":
        cues = [c for c in re.findall(r"\(([^()]*)\)", text) if c in S1_TAGS]
        for c in cues:
            text = text.replace(f"({c})", " ")
    else:
        cues = re.findall(r"\[([^\[\]]*)\]", text)
        text = re.sub(r"\[[^\[\]]*\]", " ", text)
    return cues, " ".join(text.split())


def _tts(server, h, raw: bytes) -> None:
    kind = (h.headers.get("Content-Type") or "").split(";")[0].strip()
    try:
        if kind == "application/msgpack":
            import ormsgpack

            body = ormsgpack.unpackb(raw)
        elif kind == "application/json":
            body = json.loads(raw)
        else:
            return _error(h, 415, "Content-Type must be application/msgpack or application/json")
    except (ValueError, TypeError):
        return _raw(h, 400, b"Failed to parse the request body", "text/plain")
    if not isinstance(body, dict):
        return _raw(h, 400, b"Failed to parse the request body", "text/plain")
    header = h.headers.get("model")
    model = header if header in MODELS else FALLBACK_MODEL
    reference = body.get("reference_id")
    server.calls.append(("tts", reference))
    if _fault(server, h, "result"):
        return
    problem = _invalid(body, model)
    if problem:
        return _error(h, 422, problem)
    if kind == "application/json" and body.get("references"):
        return _error(h, 400, "references require a MessagePack body")
    with server.lock:
        v = voices(server).get(reference) if isinstance(reference, str) else None
        if reference is not None and (v is None or v["state"] != "trained"):
            return _error(h, 400, f"Reference not found: {reference}")
        if v is not None:
            v["tasks"] += 1
    cues, words = _cues(body["text"], model)
    spoken(server).append({**{k: val for k, val in body.items() if k != "references"}, "model": model,
                           "model_header": header, "content_type": kind, "cues": cues, "words": words,
                           "bytes_billed": len(body["text"].encode("utf-8"))})
    fmt = body.get("format", "mp3")
    rate = 48000 if fmt == "opus" else body.get("sample_rate") or 44100
    if v is None:
        samples = _voice.wrong(words or ".", rate)  # no voice asked for: a stock speaker
    elif reference in getattr(server, "wrong_voices", set()):
        samples = _voice.wrong(words, rate)
    else:
        samples = _voice.cloned(v["clip"], words, rate)
    audio, content_type = _encode(samples, rate, fmt)
    _raw(h, 200, audio, content_type)


def _encode(samples, rate: int, fmt: str) -> tuple[bytes, str]:
    if fmt == "pcm":
        return _voice.pcm16(samples), "audio/pcm"
    wav = _voice.wav_bytes(samples, rate)
    if fmt == "wav":
        return wav, "audio/wav"
    import tempfile
    from pathlib import Path

    from stages.core.media import run_ffmpeg

    with tempfile.TemporaryDirectory(prefix="fake-fish-") as tmp:
        src, out = Path(tmp) / "a.wav", Path(tmp) / f"a.{'mp3' if fmt == 'mp3' else 'ogg'}"
        src.write_bytes(wav)
        codec = ["-c:a", "libmp3lame", "-b:a", "128k"] if fmt == "mp3" else ["-c:a", "libopus"]
        run_ffmpeg(["-i", str(src), *codec, str(out)], what="encoding the fake's speech")
        return out.read_bytes(), "audio/mpeg" if fmt == "mp3" else "audio/ogg"
