"""What the fake speech services say, as real audio: a cloned voice is its reference clip's own sound,
cut into syllable-long pieces and strung to the length the line would take (about 0.07 s a Latin
letter, 0.2 s a CJK character), so a line "in the enrolled voice" sounds like that speaker; `wrong`
speaks in another speaker (eSpeak's m3 at a low pitch), for the figure's tests."""

from __future__ import annotations

import io
import tempfile
import wave
from pathlib import Path

import numpy as np

RATE = 24000


def seconds_for(text: str) -> float:
    cjk = sum(1 for ch in text if "\u3000" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff")
    return max(0.6, 0.2 * cjk + 0.07 * (len(text) - cjk))


def decode(clip: bytes, rate: int = RATE) -> np.ndarray:
    """Any clip ffmpeg reads (WAV, MP3, ...) as mono float samples at `rate`."""
    from stages.core.media import run_ffmpeg

    with tempfile.TemporaryDirectory(prefix="fake-tts-") as tmp:
        src, out = Path(tmp) / "clip", Path(tmp) / "clip.wav"
        src.write_bytes(clip)
        run_ffmpeg(["-i", str(src), "-ac", "1", "-ar", str(rate), "-c:a", "pcm_s16le", str(out)],
                   what="decoding a fake reference clip")
        with wave.open(str(out)) as w:
            return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def wav_bytes(samples: np.ndarray, rate: int = RATE) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm16(samples))
    return buf.getvalue()


def cloned(clip: bytes, text: str, rate: int = RATE) -> np.ndarray:
    """`text` "spoken" in the clip's voice: 0.25 s pieces of its louder parts, in turn, to the line's length."""
    src = decode(clip, rate)
    piece = int(0.25 * rate)
    pieces = [src[i:i + piece] for i in range(0, max(1, len(src) - piece), piece)]
    loud = [p for p in pieces if len(p) == piece and float(np.sqrt(np.mean(p ** 2))) > 0.02] or pieces
    need = int(seconds_for(text) * rate)
    out, i = [], sum(map(ord, text)) % len(loud)
    while sum(len(p) for p in out) < need:
        out.append(loud[i % len(loud)])
        i += 1
    return np.concatenate(out)[:need]


def wrong(text: str, rate: int = RATE) -> np.ndarray:
    """`text` in another speaker's voice (eSpeak NG, m3, low pitch)."""
    from stages.backends.base import SpeechRequest
    from stages.backends.espeak import EspeakBackend

    with tempfile.TemporaryDirectory(prefix="fake-tts-") as tmp:
        out = Path(tmp) / "w.wav"
        EspeakBackend().synthesize(SpeechRequest(text=text, language="en-us", variant="m3", pitch=15,
                                                 speed_wpm=160), out)
        return decode(out.read_bytes(), rate)
