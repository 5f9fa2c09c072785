"""An episode in a dub language (`languages:`): the same pictures, its lines translated (the glossary
kept, the writer's own translations first), spoken by each character's voice in that language, each
fitted to its place, subtitled and cut as epNN.<language>.mp4.

The fitting rule, line by line, in each line's own place (from where the original starts to where
the next line starts, less a breath, or to the shot's end):
1. a line that fits is laid as it is;
2. a longer one is sped up, by at most `MAX_TEMPO` (pitch kept);
3. one still longer holds its shot: the shot's last frame is held for the rest (the overrun) and the
   shot's later lines move with it. Such a line is flagged in `status` and on the review site.
A line is never cut. Like `plan_work` (whose functions compute every key), this reads what is on disk
and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from stages.core.media import wav_duration_s
from stages.core.paths import BuildPaths
from stages.core.text import frames_ceil
from stages.time_shots import GAP_S
from stages.units import EpisodeWork, LineUnit, TranslationUnit

MAX_TEMPO = 1.25  # faster than this, speech stops sounding like the same person talking
BREATH_S = 0.1  # kept between a fitted line and the next one (or the shot's end)
END_WORDS = {"en": ("To be continued", "The End"), "zh": ("未完待续", "全剧终"), "es": ("Continuará", "Fin"),
             "fr": ("À suivre", "Fin"), "pt": ("Continua", "Fim"), "id": ("Bersambung", "Tamat"),
             "ja": ("つづく", "完"), "ko": ("다음 화에 계속", "끝"), "th": ("โปรดติดตามตอนต่อไป", "จบบริบูรณ์"),
             "vi": ("Còn tiếp", "Hết"), "de": ("Fortsetzung folgt", "Ende")}


@dataclass(frozen=True)
class Fit:
    """How one dub line is laid in its place: sped up by `tempo` (1: as spoken), and `overrun_s` past
    its place, held by its shot; `path` is the WAV the mix lays (the spoken one when tempo is 1)."""

    line: str  # the dub line's id
    shot_id: str
    tempo: float
    overrun_s: float
    spoken: Path
    key: str
    path: Path
    seconds: float  # as laid

    def flag(self) -> str | None:
        return (f"{self.overrun_s:.2f} s longer than its place at {self.tempo:g}x: its shot holds "
                f"{self.overrun_s:.2f} s longer") if self.overrun_s else None


@dataclass(frozen=True)
class DubWork:
    """One episode in one dub language, as far as it can be planned now."""

    language: str
    translation: TranslationUnit
    translated: tuple[str, ...] | None  # the lines in the language; None until translated
    lines: tuple[LineUnit, ...] = ()  # each line spoken in the language (once translated)
    fits: tuple[Fit, ...] = ()  # once every line is spoken
    episode: EpisodeWork | None = None  # the cut (id epNN.<language>), once every line is spoken

    @property
    def state(self) -> str:
        """to translate, to speak, to cut (the cut may also be made: the ledger says)."""
        if self.translated is None:
            return "to translate"
        return "to speak" if self.episode is None else "to cut"


def dub_id(episode_id: str, language: str) -> str:
    return f"{episode_id}.{language}"


def plan_dub(lp, work: EpisodeWork, language: str, backends, paths: BuildPaths,
             translated: list[str] | None = None) -> DubWork:
    """Episode `work` (its plan timed from its own speech) in `language`. `translated`: the translator's
    answer, when the caller has it; else the cached one, if any."""
    from stages.plan_work import translation_unit
    from stages.translate_subtitles import cached_translation

    project = lp.project
    texts = [ln.text for s in work.plan.shots for ln in s.lines]
    unit = translation_unit(texts, project, backends, paths, lp.translations.glossary, target=language)
    answer = translated if translated is not None else cached_translation(unit)
    if answer is None:
        return DubWork(language, unit, None)
    own = lp.translations.own.get(language, {})
    final = tuple(own.get(text.strip(), said) for text, said in zip(texts, answer))
    lines = _dub_lines(lp, work, language, final, backends, paths)
    if work.cut is None or not all(ln.path.exists() for ln in lines):
        return DubWork(language, unit, final, lines)
    fits = fit_lines(work, lines, [wav_duration_s(ln.path) for ln in lines], project.timing, paths)
    return DubWork(language, unit, final, lines, fits, _dub_episode(lp, work, language, lines, fits, backends, paths))


def _dub_lines(lp, work: EpisodeWork, language: str, texts: tuple[str, ...], backends,
               paths: BuildPaths) -> tuple[LineUnit, ...]:
    from stages.core.errors import InputError
    from stages.plan_work import speech_key, voice_unit
    from stages.synthesize_speech import reference_clip, speech_engine, speech_request

    project, out, voices = lp.project, [], {}
    said = [ln for s in work.plan.shots for ln in s.lines]
    for unit, line, text in zip(work.lines, said, texts):
        engine = speech_engine(project, unit.character, language)
        speaker = backends.speech(engine)
        try:
            request = speech_request(text, unit.character, project, lp.root, parenthetical=line.parenthetical,
                                     extension=line.extension, backend=speaker, language=language)
        except InputError as exc:
            if exc.file is None:
                exc.file, exc.line = line.file, line.line
            raise
        key = speech_key(request, speaker)
        if getattr(speaker.capabilities, "enrolls", False) and (unit.character, engine) not in voices:
            voices[unit.character, engine] = voice_unit(unit.character, request, project, speaker, paths)
        out.append(LineUnit(dub_id(unit.id, language), unit.episode, unit.shot_id, unit.index, engine, request, key,
                            paths.wav(key), f"{unit.where}, in {language}", voices.get((unit.character, engine)),
                            unit.character, reference_clip(project, unit.character, lp.root, language)
                            if getattr(speaker.capabilities, "cloning", False) else None))
    return tuple(out)


def fit_lines(work: EpisodeWork, lines: tuple[LineUnit, ...], seconds: list[float], timing,
              paths: BuildPaths) -> tuple[Fit, ...]:
    """Each dub line's fit in the place of the original line it speaks (the rule in the module's words)."""
    from stages.plan_work import fit_key

    by_shot: dict[str, list[tuple[LineUnit, float]]] = {}
    for ln, s in zip(lines, seconds):
        by_shot.setdefault(ln.shot_id, []).append((ln, s))
    fits = []
    for shot in work.plan.shots:
        at = timing.lead_in_s
        for (ln, s), original in zip(by_shot.get(shot.id, []), shot.lines):
            last = ln.index == len(shot.lines) - 1
            place = (shot.duration_s - at - BREATH_S) if last else (original.speech_s + GAP_S - BREATH_S)
            place = max(place, original.speech_s)
            tempo = 1.0 if s <= place else min(MAX_TEMPO, _up(s / place))
            laid = s / tempo
            overrun = round(max(0.0, laid - place), 3)
            key = fit_key(ln.key, tempo)
            fits.append(Fit(ln.id, shot.id, tempo, overrun, ln.path, key, ln.path if tempo == 1.0 else paths.wav(key),
                            round(laid, 4)))
            at += original.speech_s + GAP_S
    return tuple(fits)


def _up(ratio: float) -> float:
    """A tempo rounded up to a thousandth (the key holds it; rounding down would leave the line long)."""
    import math

    return math.ceil(ratio * 1000) / 1000


def dub_plan(work: EpisodeWork, fits: tuple[Fit, ...], texts: list[str], fps: int):
    """The episode's timed shot list as the dub plays it: each line in its language, at its original
    start (moved by an earlier overrun in its shot), each shot held for its lines' overruns."""
    by_line = iter(zip(fits, texts))
    shots = []
    for shot in work.plan.shots:
        lines, held = [], 0.0
        for i, original in enumerate(shot.lines):
            fit, text = next(by_line)
            last = i == len(shot.lines) - 1
            # the next line starts where the original's did, plus what this shot has held so far
            speech = fit.seconds if last else original.speech_s + fit.overrun_s
            held += fit.overrun_s
            lines.append(original.model_copy(update={"text": text, "speech_s": round(speech, 4)}))
        duration = frames_ceil(shot.duration_s + held, fps) if held else shot.duration_s
        shots.append(shot.model_copy(update={"lines": lines, "duration_s": duration}))
    return work.plan.model_copy(update={"shots": shots})


def _dub_episode(lp, work: EpisodeWork, language: str, lines: tuple[LineUnit, ...], fits: tuple[Fit, ...],
                 backends, paths: BuildPaths) -> EpisodeWork:
    """The dub's cut: the original's chosen clips (never its lip-synced ones: those mouths speak the
    original), the dub's fitted speech, its cards and subtitles in the language."""
    from stages.plan_work import plan_cut

    project = lp.project
    dub_project = project.model_copy(update={
        "language": language, "subtitles": project.subtitles.model_copy(update={"translation": None}),
        "cards": project.cards.model_copy(update={"end_text": None})})
    timed = dub_plan(work, fits, [ln.request.text for ln in lines], project.fps)
    chosen = [u for u in work.shots if u.chosen]
    video = backends.video
    faces = [video.faces(u.request) if video.capabilities.faces and u.placeholder is None else [] for u in chosen]
    speech = {(ln.shot_id, ln.index): (f.key, f.path) for ln, f in zip(lines, fits)}
    ep = lp.script.episode(work.number)
    words = END_WORDS.get(language.lower()[:2], END_WORDS["en"])
    final = ep.number == lp.script.episodes[-1].number
    pair = project.subtitles.bilingual
    second = (project.language, [ln.text for sh in work.plan.shots for ln in sh.lines]) \
        if pair and set(pair) == {project.language, language} else None
    cut = plan_cut(timed, [u.clip[0] for u in chosen], [u.clip[1] for u in chosen], speech, dub_project, lp.root,
                   paths=paths, series=lp.script.title or project.title, episode_title=ep.title, final=final,
                   end_text=words[1 if final else 0], faces=faces, episode_label=episode_label(work.number, language),
                   second=second)
    return replace(work, plan=timed, lines=lines, sheets=(), translation=None, cut=cut,
                   mp4=paths.episode_mp4(dub_id(work.id, language)), syncs=(), unsynced=(), language=language,
                   fits=tuple((f.spoken, f.tempo, f.path) for f in fits if f.tempo != 1.0))


def episode_label(number: int, language: str) -> str:
    """"Episode N" on the opening card, in the language."""
    lang = language.lower()
    if lang.startswith(("zh", "yue", "cmn")):
        return f"第{number}集"
    words = {"es": "Episodio", "fr": "Épisode", "pt": "Episódio", "id": "Episode", "de": "Folge", "vi": "Tập",
             "th": "ตอนที่", "ja": "第{}話", "ko": "제{}화"}.get(lang[:2], "Episode")
    return words.format(number) if "{}" in words else f"{words} {number}"


def make_fitted(spoken: Path, tempo: float, out: Path) -> None:
    """`spoken` sped up by `tempo`, its pitch kept (ffmpeg's atempo), written atomically to `out`."""
    from stages.core.artifacts import atomic_path
    from stages.core.media import run_ffmpeg

    if out.exists():
        return
    with atomic_path(out) as tmp:
        run_ffmpeg(["-i", str(spoken), "-af", f"atempo={tempo}", "-c:a", "pcm_s16le", str(tmp)])
