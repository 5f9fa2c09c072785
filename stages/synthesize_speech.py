"""One dialogue line -> a validated WAV, content-addressed by text, voice and engine."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from stages.core.artifacts import atomic_path, file_digest, is_done, spec_hash
from stages.backends.base import SpeechBackend, SpeechRequest
from stages.core.errors import InputError
from stages.core.media import wav_duration_s, wav_validator
from stages.core.prompts import render_template
from stages.schema import Project

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(SpeechRequest) if f.default is not dataclasses.MISSING}


@dataclass(frozen=True)
class SpeechResult:
    path: Path
    duration_s: float
    key: str
    reused: bool


def speech_engine(project: Project, character: str) -> str:
    """The speech backend that voices `character`: their own `voice.backend`, else the project's."""
    return project.voice_for(character).backend or project.backends.speech


def speech_request(text: str, character: str, project: Project, project_dir: Path | None = None, *,
                   parenthetical: str | None = None, extension: str | None = None) -> SpeechRequest:
    """Everything that shapes one line's audio, for the engine that voices `character`.

    Each engine gets only the fields it reads, so a setting for another engine never
    invalidates this line's cached audio.
    """
    voice = project.voice_for(character)
    engine = speech_engine(project, character)
    base = dict(text=text, language=voice.language, variant=voice.variant, pitch=voice.pitch,
                speed_wpm=voice.speed_wpm)
    if engine == "openai":
        who = next((c.name for c in project.cast if c.id == character), character)
        instructions = render_template("speech_instructions.j2", project_dir, character=who, notes=voice.notes,
                                       parenthetical=(parenthetical or "").strip("()（） "),
                                       extension=extension or "", language=project.language)
        return SpeechRequest(**base, voice=voice.voice or project.backends.openai.voice, speed=voice.speed,
                             instructions=instructions or None)
    if engine == "piper":
        if not voice.voice:
            raise InputError(f"{character}: the piper backend needs voice.voice, a Piper voice file",
                             hint="set voice: {backend: piper, voice: voices/en_US-lessac-medium.onnx}")
        path = Path(voice.voice) if project_dir is None else (project_dir / voice.voice)
        return SpeechRequest(**base, voice=str(path.resolve()), voice_sha=voice_file_digest(path) + voice_file_digest(Path(f"{path}.json"))[:16], speaker=voice.speaker,
                             speed=voice.speed)
    return SpeechRequest(**base)


def voice_file_digest(path: Path) -> str:
    try:
        return file_digest(path)
    except OSError as exc:
        raise InputError(f"voice file not found: {path}", hint="voice.voice is relative to the project "
                         "folder; put the Piper .onnx and its .onnx.json there") from exc


def speech_key(request: SpeechRequest, backend: SpeechBackend) -> str:
    # Fields at their defaults are left out (keys made before they existed stay valid), and a
    # voice file counts by content, not by where the project happens to live.
    fields = {k: v for k, v in request.__dict__.items() if k not in _DEFAULTS or v != _DEFAULTS[k]}
    if request.voice_sha:
        fields.pop("voice", None)
    return spec_hash("speech", {"request": fields, "backend": backend.identity()})


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
