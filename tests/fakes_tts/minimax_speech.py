"""MiniMax speech as its docs and official clients describe it (platform.minimax.io API reference,
MiniMax-AI/MiniMax-MCP, MiniMax-AI/cli, MiniMax-AI/skills): `Authorization: Bearer`, every answer HTTP
200 with `base_resp {status_code, status_msg}` (0: success), `POST /v1/files/upload` (multipart `file`,
`purpose`), `POST /v1/voice_clone` (the client's `voice_id`; a clip of 10 s - 5 min; 2039 for an id
taken), `POST /v1/get_voice {voice_type}` and `POST /v1/t2a_v2` (hex audio in `data.audio`).

State on the server: `minimax_files` {file_id: (name, bytes, purpose)}, `minimax_voices` {voice_id:
{clip, body, created}}, `minimax_tts` (every synthesis body); `server.foreign_voices`: ids another
account holds (2039, not listed); `server.wrong_voices`: ids that speak in another speaker's voice.
Fault queues: "submit" (the clone; "-after" ones make the voice first), "listing" (get_voice), "result"
(t2a_v2); besides the server's HTTP faults, a queue entry that is a MiniMax code ("1002", "1026",
"1008", ...) answers 200 with it."""

from __future__ import annotations

import io
import json
import re
import tempfile
import time
import wave
from pathlib import Path

from fake_hosted import _json
from fake_openai import parse_body
from fakes_tts import _voice

PREFIX = "/minimax-speech"
KEY_ENV, KEY = "DRAMAFORGE_TEST_MINIMAX_KEY", "sk-api-test-minimax-0001"
ENV = {KEY_ENV: KEY}
MODELS = ("speech-2.8-hd", "speech-2.8-turbo", "speech-2.6-hd", "speech-2.6-turbo", "speech-02-hd",
          "speech-02-turbo", "speech-01-hd", "speech-01-turbo")
EMOTIONS = {"happy", "sad", "angry", "fearful", "disgusted", "surprised", "neutral"}
MODEL_EMOTIONS = {"speech-2.6": {"fluent"}, "speech-2.8": {"calm", "fluent", "whisper"}}
BOOSTS = {"Chinese", "Chinese,Yue", "English", "Arabic", "Russian", "Spanish", "French", "Portuguese", "German",
          "Turkish", "Dutch", "Ukrainian", "Vietnamese", "Indonesian", "Japanese", "Italian", "Korean", "Thai",
          "Polish", "Romanian", "Greek", "Czech", "Finnish", "Hindi", "Bulgarian", "Danish", "Hebrew", "Malay",
          "Persian", "Slovak", "Swedish", "Croatian", "Filipino", "Hungarian", "Norwegian", "Slovenian", "Catalan",
          "Nynorsk", "Tamil", "Afrikaans", "auto"}
PURPOSES = {"voice_clone", "prompt_audio", "t2a_async_input"}
CLONE_FIELDS = {"file_id", "voice_id", "clone_prompt", "text", "model", "language_boost", "accuracy",
                "need_noise_reduction", "need_volume_normalization", "aigc_watermark"}
T2A_FIELDS = {"model", "text", "stream", "stream_options", "output_format", "voice_setting", "audio_setting",
              "language_boost", "pronunciation_dict", "voice_modify", "timbre_weights", "subtitle_enable",
              "aigc_watermark"}
VOICE_FIELDS = {"voice_id", "speed", "vol", "pitch", "emotion", "text_normalization", "latex_read"}
AUDIO_FIELDS = {"sample_rate", "bitrate", "format", "channel"}
VOICE_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]{6,254}[A-Za-z0-9]")
SYSTEM_VOICES = ("male-qn-qingse", "female-shaonv", "English_Graceful_Lady")
MESSAGES = {1002: "rate limit exceeded(RPM)", 1004: "login fail: Please carefully check the correctness of your "
            "API key", 1008: "insufficient balance", 1026: "input new_sensitive", 1027: "output new_sensitive",
            2013: "invalid params", 20132: "invalid samples or voice_id", 2037: "voice duration too short or too "
            "long", 2039: "voice clone voice id duplicate", 2042: "You don't have access to this voice_id"}


def options(server) -> dict:
    return {"base_url": server.base + PREFIX, "api_key_env": KEY_ENV, "poll_s": 0.02}


def _base(h, code: int, message: str | None = None, **data) -> None:
    _json(h, 200, {**data, "base_resp": {"status_code": code, "status_msg": message or MESSAGES.get(code, "error")}})


def _fault(server, h, queue: str, after=None) -> bool:
    """A scripted fault: a MiniMax code answered as 200 + base_resp, else the server's own kinds."""
    kind = server.faults.next(queue)
    if kind is not None and kind.isdigit() and len(kind) >= 4:  # "429", "500": HTTP statuses
        _base(h, int(kind))
        return True
    return server.fault(h, kind, after=after)


def _state(server, name: str):
    return server.__dict__.setdefault(f"minimax_{name}", [] if name == "tts" else {})


def _invalid_clone(server, body: dict) -> tuple[int, str] | None:
    unknown = set(body) - CLONE_FIELDS
    if unknown:
        return 2013, f"invalid params, unknown field {min(unknown)}"
    if not isinstance(body.get("file_id"), int) or body["file_id"] not in _state(server, "files"):
        return 20132, "invalid samples or voice_id: file_id"
    if not isinstance(body.get("voice_id"), str) or not VOICE_ID.fullmatch(body["voice_id"]):
        return 20132, "invalid samples or voice_id: voice_id"
    if body.get("text") and body.get("model") not in MODELS:
        return 2013, "invalid params, model is required with text"
    if body.get("language_boost") is not None and body["language_boost"] not in BOOSTS:
        return 2013, "invalid params, language_boost"
    for flag in ("need_noise_reduction", "need_volume_normalization", "aigc_watermark"):
        if flag in body and not isinstance(body[flag], bool):
            return 2013, f"invalid params, {flag}"
    _, clip, purpose = _state(server, "files")[body["file_id"]]
    seconds = _seconds(clip)
    if purpose != "voice_clone" or not 10 <= seconds <= 300:
        return 2037, f"voice duration too short or too long ({seconds:.1f} s)"
    return None


def _seconds(clip: bytes) -> float:
    try:  # a WAV's header says (fast); anything else is decoded
        with wave.open(io.BytesIO(clip)) as w:
            return w.getnframes() / w.getframerate()
    except (wave.Error, EOFError):
        return len(_voice.decode(clip, 8000)) / 8000


def _invalid_t2a(body: dict) -> str | None:
    unknown = set(body) - T2A_FIELDS
    if unknown:
        return f"unknown field {min(unknown)}"
    if body.get("model") not in MODELS:
        return "model"
    if not isinstance(body.get("text"), str) or not body["text"].strip() or len(body["text"]) >= 10000:
        return "text"
    if body.get("stream") or body.get("output_format", "hex") != "hex":
        return "this fake answers stream false, output_format hex only"
    voice, audio = body.get("voice_setting"), body.get("audio_setting", {})
    if not isinstance(voice, dict) or set(voice) - VOICE_FIELDS or not isinstance(voice.get("voice_id"), str):
        return "voice_setting"
    if not 0.5 <= voice.get("speed", 1) <= 2 or not 0 < voice.get("vol", 1) <= 10 \
            or voice.get("pitch", 0) not in range(-12, 13):
        return "voice_setting speed, vol or pitch out of range"
    family = ".".join(body["model"].split(".")[:2]).rsplit("-", 1)[0]
    if "emotion" in voice and voice["emotion"] not in EMOTIONS | MODEL_EMOTIONS.get(family, set()):
        return "voice_setting.emotion"
    if not isinstance(audio, dict) or set(audio) - AUDIO_FIELDS \
            or audio.get("sample_rate", 32000) not in (8000, 16000, 22050, 24000, 32000, 44100) \
            or audio.get("format", "mp3") not in ("mp3", "pcm", "flac", "wav") or audio.get("channel", 1) not in (1, 2):
        return "audio_setting"
    if body.get("language_boost") is not None and body["language_boost"] not in BOOSTS:
        return "language_boost"
    return None


def _encode(samples, rate: int, fmt: str) -> bytes:
    """The audio as MiniMax sends it: a WAV, raw PCM, or mp3/flac made by ffmpeg."""
    from stages.core.media import run_ffmpeg

    wav = _voice.wav_bytes(samples, rate)
    if fmt == "wav":
        return wav
    if fmt == "pcm":
        return _voice.pcm16(samples)
    with tempfile.TemporaryDirectory(prefix="fake-minimax-") as tmp:
        src, out = Path(tmp) / "a.wav", Path(tmp) / f"a.{fmt}"
        src.write_bytes(wav)
        run_ffmpeg(["-i", str(src), str(out)], what="encoding the fake MiniMax audio")
        return out.read_bytes()


def route(server, h, method: str, path: str, query: dict, raw: bytes) -> None:
    if h.headers.get("Authorization") != f"Bearer {KEY}":
        return _base(h, 1004)
    kind = h.headers.get("Content-Type") or ""
    if method == "POST" and path == "/v1/files/upload":
        if not kind.startswith("multipart/form-data"):
            return _base(h, 2013, "invalid params, multipart/form-data expected")
        form = parse_body(kind, raw)
        if form.get("purpose") not in PURPOSES or not isinstance(form.get("file"), tuple):
            return _base(h, 2013, "invalid params, purpose and file are required")
        name, data = form["file"]
        if len(data) > 20 * 1024 * 1024:
            return _base(h, 2013, "invalid params, file larger than 20 MB")
        files = _state(server, "files")
        file_id = 307_000_000_000_000 + len(files) + 1  # an int64 id, as MiniMax's
        files[file_id] = (name, data, form["purpose"])
        server.calls.append(("upload", name))
        return _base(h, 0, "success", file={"file_id": file_id, "bytes": len(data), "created_at": int(time.time()),
                                            "filename": name, "purpose": form["purpose"]})
    if not kind.startswith("application/json"):
        return _base(h, 2013, "invalid params, application/json expected")
    try:
        body = json.loads(raw)
    except ValueError:
        return _base(h, 2013, "invalid params, the body is not JSON")
    if method == "POST" and path == "/v1/voice_clone":
        voices = _state(server, "voices")
        problem = _invalid_clone(server, body)
        if problem:
            return _base(h, *problem)
        vid = body["voice_id"]
        server.calls.append(("enroll", vid))
        if vid in voices or vid in getattr(server, "foreign_voices", set()):  # an id held elsewhere
            return _base(h, 2039)

        def make():
            voices[vid] = {"clip": _state(server, "files")[body["file_id"]][1], "body": body, "created": time.time()}

        if _fault(server, h, "submit", after=make):
            return
        make()
        return _base(h, 0, "success", input_sensitive=False, input_sensitive_type=0, demo_audio="")
    if method == "POST" and path == "/v1/get_voice":
        kind = body.get("voice_type")
        if kind not in ("system", "voice_cloning", "voice_generation", "all"):
            return _base(h, 2013, "invalid params, voice_type")
        server.calls.append(("list", kind))
        if _fault(server, h, "listing"):
            return
        day = time.strftime("%Y-%m-%d")
        cloned = [{"voice_id": v, "description": [], "created_time": time.strftime("%Y-%m-%d", time.gmtime(
            s["created"]))} for v, s in _state(server, "voices").items()]
        system = [{"voice_id": v, "voice_name": v, "description": [], "created_time": day} for v in SYSTEM_VOICES]
        return _base(h, 0, "success", system_voice=system if kind in ("system", "all") else None,
                     voice_cloning=cloned if kind in ("voice_cloning", "all") else None,
                     voice_generation=[] if kind in ("voice_generation", "all") else None)
    if method == "POST" and path == "/v1/t2a_v2":
        problem = _invalid_t2a(body)
        if problem:
            return _base(h, 2013, f"invalid params, {problem}")
        vid = body["voice_setting"]["voice_id"]
        voice = _state(server, "voices").get(vid)
        if voice is None and vid not in SYSTEM_VOICES:
            return _base(h, 2042)
        server.calls.append(("tts", vid))
        _state(server, "tts").append(body)
        if _fault(server, h, "result"):
            return
        audio = body.get("audio_setting", {})
        rate, fmt = audio.get("sample_rate", 32000), audio.get("format", "mp3")
        if voice is None or vid in getattr(server, "wrong_voices", set()):
            samples = _voice.wrong(body["text"], rate)
        else:
            samples = _voice.cloned(voice["clip"], body["text"], rate)
        data = _encode(samples, rate, fmt)
        return _base(h, 0, "success", data={"audio": data.hex(), "status": 2, "ced": ""}, trace_id="06c11f53aa",
                     extra_info={"audio_length": round(len(samples) / rate * 1000), "audio_sample_rate": rate,
                                 "audio_size": len(data), "bitrate": audio.get("bitrate", 128000),
                                 "audio_format": fmt, "audio_channel": 1, "usage_characters": len(body["text"]),
                                 "word_count": len(body["text"].split()), "invisible_character_ratio": 0})
    _base(h, 2013, f"invalid params, no route {method} {path}")
