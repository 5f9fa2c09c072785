"""One dialogue line -> a validated WAV, content-addressed by text, voice and engine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stages.artifacts import atomic_path, is_done, spec_hash
from stages.backends.base import SpeechBackend, SpeechRequest
from stages.media import wav_duration_s, wav_validator
from stages.schema import Voice


@dataclass(frozen=True)
class SpeechResult:
    path: Path
    duration_s: float
    key: str
    reused: bool


def speech_request(text: str, voice: Voice) -> SpeechRequest:
    return SpeechRequest(text=text, language=voice.language, variant=voice.variant, pitch=voice.pitch,
                         speed_wpm=voice.speed_wpm)


def speech_key(request: SpeechRequest, backend: SpeechBackend) -> str:
    return spec_hash("speech", {"request": request.__dict__, "backend": backend.identity()})


def synthesize_speech(request: SpeechRequest, backend: SpeechBackend, speech_dir: Path) -> SpeechResult:
    """Speak one line (or reuse the WAV already made for exactly this text, voice and engine)."""
    key = speech_key(request, backend)
    path = speech_dir / f"{key}.wav"
    check = wav_validator()
    if is_done(path, check):
        return SpeechResult(path, wav_duration_s(path), key, reused=True)
    with atomic_path(path, validate=check) as tmp:
        backend.synthesize(request, tmp)
    return SpeechResult(path, wav_duration_s(path), key, reused=False)
