"""OpenAI text-to-speech (`/v1/audio/speech`), or any server that speaks the same protocol.

The client never retries (`max_retries=0`): the Prefect tasks own retries, and they decide from the
error class alone, so every provider failure is mapped to TransientError, RejectedError or
PermanentError here. The WAV the server sends is not trusted: OpenAI streams it with placeholder
sizes (0xFFFFFFFF), so the PCM is re-read after the header and written out again with true sizes.
"""

from __future__ import annotations

import contextlib
import os
import struct
import wave
from pathlib import Path

from pydantic import Field

from stages.backends._openai import LazyClient, map_openai_error
from stages.backends.base import PermanentError, SpeechCapabilities, SpeechRequest, TransientError
from stages.core.model import Model
from stages.core.trust import redact_url

_WAVE_FORMAT_PCM, _WAVE_FORMAT_EXTENSIBLE = 1, 0xFFFE
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # what streaming encoders write before they know the length


class OpenAIOptions(Model):
    """`backends.openai`: a hosted or local OpenAI-compatible server for speech (`/v1/audio/speech`)."""

    base_url: str | None = Field(None, description="e.g. http://localhost:8000/v1; default: OpenAI")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key")
    speech_model: str = Field("gpt-4o-mini-tts", description="text-to-speech model")
    voice: str = Field("coral", description="voice for characters that name none")
    timeout_s: float = Field(60, gt=0, le=900)


class OpenAISpeechBackend:
    """SpeechBackend: an OpenAI voice name (`coral`, `onyx`, ...) with optional delivery instructions."""

    name = "openai"
    section = "openai"
    Options = OpenAIOptions
    capabilities = SpeechCapabilities(billed=True, pool="api", acting="instruction", bills="characters")

    def __init__(self, options: OpenAIOptions):
        self.options = options
        self.client = LazyClient(options.api_key_env, options.base_url, options.timeout_s, what="OpenAI speech",
                                 setting="backends.openai.base_url")

    def identity(self) -> dict:
        return {"engine": "openai", "model": self.options.speech_model,
                "base_url": redact_url(self.options.base_url) or "api.openai.com"}

    def synthesize(self, request: SpeechRequest, out_wav: Path) -> None:
        import openai

        o = self.options
        args = dict(model=o.speech_model, voice=request.voice or o.voice, input=request.text, response_format="wav")
        if request.instructions is not None:
            args["instructions"] = request.instructions
        if request.speed != 1.0:
            args["speed"] = request.speed
        where = redact_url(o.base_url) or "api.openai.com"
        try:
            body = self.client().audio.speech.create(**args).content
        except openai.OpenAIError as exc:
            raise map_openai_error(exc, f"OpenAI speech ({o.speech_model} at {where})") from exc
        write_pcm16_wav(body, out_wav, what=f"OpenAI speech ({o.speech_model} at {where})")


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

    from stages.core.artifacts import partial_file

    fd, src = partial_file(out_wav.parent, out_wav.stem, ".audio")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        run_ffmpeg(["-i", str(src), "-vn", "-c:a", "pcm_s16le", "-f", "wav", str(out_wav)],
                   what="converting the speech audio", timeout_s=300)
    except RenderError as exc:
        # A body ffmpeg cannot decode at all (an HTML page, JSON) means a misconfigured server, not bad luck.
        raise PermanentError(f"{what} sent audio that cannot be decoded ({len(body):,} bytes): {exc.message}; "
                             "check the base URL") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            src.unlink()
