"""OpenAI text-to-speech (`/v1/audio/speech`), or any server that speaks the same protocol.

The client never retries (`max_retries=0`): the Prefect tasks own retries, and they decide from the
error class alone, so every provider failure is mapped to TransientError, RejectedError or
PermanentError here. The WAV the server sends is not trusted: OpenAI streams it with placeholder
sizes (0xFFFFFFFF), so the PCM is re-read after the header and written out again with true sizes.
"""

from __future__ import annotations

import contextlib
import email.utils
import os
import re
import struct
import tempfile
import threading
import time
import wave
from pathlib import Path

from stages.backends.base import BackendError, PermanentError, RejectedError, SpeechRequest, TransientError
from stages.schema import OpenAIOptions

_WAVE_FORMAT_PCM, _WAVE_FORMAT_EXTENSIBLE = 1, 0xFFFE
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # what streaming encoders write before they know the length
_POLICY_CODES = {"content_policy_violation", "moderation_blocked", "content_filter"}
_POLICY_WORDS = re.compile(r"content[ _-]?(policy|filter)|moderation|safety system|flagged", re.IGNORECASE)


class OpenAISpeechBackend:
    """SpeechBackend: an OpenAI voice name (`coral`, `onyx`, ...) with optional delivery instructions."""

    name = "openai"
    billed = True  # a server that may charge: its cost is unknown until `rates` says

    def __init__(self, options: OpenAIOptions):
        # No client and no API key here: identity() (the cache key) must work without a key.
        self.options = options
        self._client = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:  # a client and a lock do not pickle; both are remade on demand
        return {"options": self.options}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["options"])

    def identity(self) -> dict:
        return {"engine": "openai", "model": self.options.speech_model,
                "base_url": self.options.base_url or "api.openai.com"}

    def client(self):
        with self._lock:
            if self._client is None:
                o = self.options
                self._client = openai_client(o.api_key_env, o.base_url, o.timeout_s, what="OpenAI speech",
                                             setting="backends.openai.base_url")
            return self._client

    def synthesize(self, request: SpeechRequest, out_wav: Path) -> None:
        import openai

        o = self.options
        args = dict(model=o.speech_model, voice=request.voice or o.voice, input=request.text, response_format="wav")
        if request.instructions is not None:
            args["instructions"] = request.instructions
        if request.speed != 1.0:
            args["speed"] = request.speed
        where = o.base_url or "api.openai.com"
        try:
            body = self.client().audio.speech.create(**args).content
        except openai.OpenAIError as exc:
            raise map_openai_error(exc, f"OpenAI speech ({o.speech_model} at {where})") from exc
        write_pcm16_wav(body, out_wav, what=f"OpenAI speech ({o.speech_model} at {where})")


def openai_client(api_key_env: str, base_url: str | None, timeout_s: float, *, what: str, setting: str):
    """An `openai.OpenAI` that never retries; a missing key is an error only for OpenAI's own server."""
    import openai

    key = os.environ.get(api_key_env)
    if not key and base_url is None:
        raise PermanentError(f"{what} needs an API key in ${api_key_env}: export {api_key_env}=..., or set "
                             f"{setting} to a local OpenAI-compatible server")
    return openai.OpenAI(api_key=key or "not-needed", base_url=base_url, timeout=timeout_s, max_retries=0)


def map_openai_error(exc: Exception, what: str) -> BackendError:
    """An openai exception as the backend error class that tells a flow whether to retry."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        status, message = exc.status_code, provider_message(exc)
        text = f"{what} answered {status}: {message}"
        # 408 and 409 are what the openai client itself would retry, alongside 429 and 5xx.
        if status in (408, 409, 429) or status >= 500:
            return TransientError(text, retry_after_s=retry_after_s(exc.response.headers))
        if status in (400, 403, 422) and (exc.code in _POLICY_CODES or _POLICY_WORDS.search(message)):
            return RejectedError(text)
        if status == 401:
            return PermanentError(f"{text} (check the API key)")
        if status == 404:
            return PermanentError(f"{text} (check the model and voice names, and the base URL)")
        return PermanentError(text)
    if isinstance(exc, openai.APIConnectionError):  # APITimeoutError is one
        return TransientError(f"{what}: {exc.message}")
    return PermanentError(f"{what}: {exc}")


def provider_message(exc) -> str:
    """The provider's own words (`error.message` of the JSON body), else the client's summary."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"]:
        return body["message"]
    if isinstance(body, str) and body.strip():
        return body.strip()[:300]
    return str(getattr(exc, "message", exc))


def retry_after_s(headers) -> float | None:
    """The server's Retry-After hint in seconds (`retry-after-ms`, seconds, or an HTTP date)."""
    with contextlib.suppress(TypeError, ValueError):
        ms = headers.get("retry-after-ms")
        if ms:
            return max(0.0, float(ms) / 1000)
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def parse_wav(data: bytes) -> tuple[int, int, int, int, bytes] | None:
    """(format, channels, rate, bits, sample bytes) of a RIFF/WAVE body, trusting no size it can check.

    A data size of 0 or 0xFFFFFFFF, or one past the end of the body, means "the rest of the body".
    None when this is not a WAV with a fmt chunk before its data.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        start = pos + 8
        if chunk == b"fmt ":
            if size < 16 or start + 16 > len(data):
                return None
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", data[start:start + 16])
            if tag == _WAVE_FORMAT_EXTENSIBLE and size >= 40 and start + 26 <= len(data):
                tag = int.from_bytes(data[start + 24:start + 26], "little")  # the sub-format GUID's first field
            fmt = (tag, channels, rate, bits)
        elif chunk == b"data":
            if fmt is None:
                return None
            end = len(data) if size in _UNKNOWN_SIZES or start + size > len(data) else start + size
            return (*fmt, data[start:end])
        pos = start + size + (size & 1)
    return None


def write_pcm16_wav(body: bytes, out_wav: Path, *, what: str) -> None:
    """Write the server's audio to `out_wav` as a 16-bit PCM WAV with true sizes."""
    # An empty body (or a header with no samples) after a 200 is what a dropped stream or an
    # overloaded proxy looks like; a retry usually gets the audio, and the flow's retries are bounded.
    if not body:
        raise TransientError(f"{what} sent an empty audio body")
    parsed = parse_wav(body)
    if parsed is not None and not parsed[4]:
        raise TransientError(f"{what} sent a WAV header with no audio after it")
    if parsed is not None and parsed[0] == _WAVE_FORMAT_PCM and parsed[3] == 16 and parsed[1] > 0 and parsed[2] > 0:
        _, channels, rate, _, pcm = parsed
        pcm = pcm[:len(pcm) - len(pcm) % (2 * channels)]  # a stream cut mid-frame ends on a whole frame
        if not pcm:
            raise TransientError(f"{what} sent a WAV header with no audio after it")
        with wave.open(str(out_wav), "wb") as w:
            w.setnchannels(channels)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(pcm)
        return
    _transcode(body, out_wav, what=what)  # float or 24-bit WAV, or a server that ignored response_format


def _transcode(body: bytes, out_wav: Path, *, what: str) -> None:
    from stages.core.errors import RenderError
    from stages.core.media import run_ffmpeg

    fd, name = tempfile.mkstemp(prefix=f".{out_wav.stem}.", suffix=".audio", dir=out_wav.parent)
    src = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        run_ffmpeg(["-i", str(src), "-vn", "-c:a", "pcm_s16le", "-f", "wav", str(out_wav)],
                   what="converting the speech audio", timeout_s=300)
    except RenderError as exc:
        # A body ffmpeg cannot decode at all (an HTML page, JSON) means a misconfigured server, not bad luck.
        raise PermanentError(f"{what} sent audio that cannot be decoded ({len(body)} bytes starting "
                             f"{body[:16]!r}): {exc.message}; check the base URL") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            src.unlink()
