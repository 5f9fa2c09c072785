"""One dialogue line -> the request its voice gets, and the validated WAV it makes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stages.core.artifacts import atomic_path, file_digest, is_done
from stages.backends.base import SpeechBackend, SpeechRequest
from stages.core.errors import InputError
from stages.core.media import wav_duration_s, wav_validator
from stages.core.prompts import render_template
from stages.schema import Project

@dataclass(frozen=True)
class SpeechResult:
    path: Path
    duration_s: float
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


def synthesize_speech(request: SpeechRequest, backend: SpeechBackend, out_wav: Path) -> SpeechResult:
    """Speak one line into `out_wav` (its content-addressed path), or reuse the valid WAV there."""
    check = wav_validator()
    if is_done(out_wav, check):
        return SpeechResult(out_wav, wav_duration_s(out_wav), reused=True)
    with atomic_path(out_wav, validate=check) as tmp:
        backend.synthesize(request, tmp)
    return SpeechResult(out_wav, wav_duration_s(out_wav), reused=False)
