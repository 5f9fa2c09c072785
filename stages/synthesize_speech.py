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


def speech_engine(project: Project, character: str, language: str | None = None) -> str:
    """The speech backend that voices `character` (in the dub `language`): their own `voice.backend`, else
    the project's."""
    return project.voice_for(character, language).backend or project.backends.speech


def speech_request(text: str, character: str, project: Project, project_dir: Path | None = None, *,
                   parenthetical: str | None = None, extension: str | None = None,
                   backend: SpeechBackend | None = None, language: str | None = None) -> SpeechRequest:
    """Everything that shapes one line's audio, for the engine that voices `character` (`backend`: that
    engine, made; default: made here from the project), in the dub `language` (default: the script's).

    Each engine gets only the fields it reads, so a setting for another engine never invalidates this
    line's cached audio. Acting notes reach an engine that takes them through its own template
    (templates/acting/<engine>.j2); a cloning engine gets the character's reference clip.
    """
    voice = project.voice_for(character, language)
    engine = speech_engine(project, character, language)
    if backend is None:
        from stages.backends.registry import make_speech_backend

        backend = make_speech_backend(engine, project.backends)
    caps = backend.capabilities
    base = dict(text=text, language=voice.language, variant=voice.variant, pitch=voice.pitch,
                speed_wpm=voice.speed_wpm)
    acting = None
    if getattr(caps, "acting", None):
        who = next((c.name for c in project.cast if c.id == character), character)
        acting = render_template(f"acting/{engine}.j2", project_dir, character=who, notes=voice.notes,
                                 parenthetical=(parenthetical or "").strip("()（） "), extension=extension or "",
                                 language=language or project.language, text=text) or None
        if acting and caps.acting == "emotion" and acting not in caps.emotions:
            raise InputError(f"templates/acting/{engine}.j2 gave {acting!r} for {character}'s line {text[:40]!r}; "
                             f"{engine} takes one of: {', '.join(caps.emotions)}",
                             hint="make the template output one of those words, or nothing")
    if getattr(caps, "cloning", False):
        clip = reference_clip(project, character, project_dir, language)
        if clip is None:
            raise InputError(f"{character}: {engine} speaks in a voice cloned from a clip, and this character has "
                             "no voice.reference", hint="record 10-30 s of the actor (README, \"How to record a "
                             "good reference clip\") and set voice: {reference: voices/<name>.wav, "
                             "reference_text: <what is said in it>}")
        return SpeechRequest(**base, speed=voice.speed, instructions=acting, reference=str(clip.resolve()),
                             reference_sha=file_digest(clip), reference_text=voice.reference_text or None)
    if engine == "openai":
        return SpeechRequest(**base, voice=voice.voice or project.backends.openai.voice, speed=voice.speed,
                             instructions=acting)
    if engine == "piper":
        own = next((c.voices.get(language) for c in project.cast if c.id == character), None) if language else None
        if language and language != project.language and not (own and "voice" in own.model_fields_set):
            raise InputError(f"{character}: a Piper voice speaks one language, and this character has none for "
                             f"{language!r}", hint=f"set voices: {{{language}: {{voice: voices/<a {language} Piper "
                                                   "voice>.onnx}}} on them")
        if not voice.voice:
            raise InputError(f"{character}: the piper backend needs voice.voice, a Piper voice file",
                             hint="set voice: {backend: piper, voice: voices/en_US-lessac-medium.onnx}")
        path = Path(voice.voice) if project_dir is None else (project_dir / voice.voice)
        return SpeechRequest(**base, voice=str(path.resolve()), voice_sha=voice_file_digest(path) + voice_file_digest(Path(f"{path}.json"))[:16], speaker=voice.speaker,
                             speed=voice.speed)
    return SpeechRequest(**base)


def reference_clip(project: Project, character: str, project_dir: Path | None,
                   language: str | None = None) -> Path | None:
    """The character's reference clip (`voice.reference`, or their dub voice's), checked to exist; None
    when they have none."""
    ref = project.voice_for(character, language).reference
    if ref is None:
        return None
    path = ref if project_dir is None or ref.is_absolute() else project_dir / ref
    if not path.is_file():
        raise InputError(f"{character}: the reference clip {ref} is not there",
                         hint="voice.reference is relative to the project folder")
    return path


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


def measure_voice(wav: Path, reference: Path, out_json: Path) -> float | None:
    """The line's speaker-similarity figure against the reference clip, kept beside it (`out_json`);
    measured again when the clip or the take changed."""
    import json

    from stages.core.artifacts import write_text_atomic
    from stages.core.voice_figure import figure

    sha, take = file_digest(reference), file_digest(wav)
    try:
        kept = json.loads(out_json.read_text(encoding="utf-8"))
        if kept.get("reference_sha256") == sha and kept.get("wav_sha256") == take:
            return kept.get("figure")
    except (OSError, ValueError, AttributeError):
        pass
    value = figure(wav, reference)
    write_text_atomic(out_json, json.dumps({"figure": value, "reference_sha256": sha, "wav_sha256": take,
                                            "reference": reference.name}))
    return value


def voice_figure_of(out_json: Path) -> float | None:
    """A line's kept figure (None: not measured, or too little speech to say)."""
    import json

    try:
        return json.loads(out_json.read_text(encoding="utf-8")).get("figure")
    except (OSError, ValueError, AttributeError):
        return None
