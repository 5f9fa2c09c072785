"""Where every unit of a project stands: the work plan compared with the ledger and the files.

Every key comes from `plan_work`, exactly as a render computes it; a ledger row made under another
key is `stale`, a shot never tried is `pending`, and a finished cut is `done` only while its file
is there (and, with `verify`, decodes).
"""

from __future__ import annotations

import logging
from pathlib import Path
from dataclasses import dataclass, field, replace

from stages.backends.registry import BackendSet, backends_for
from stages.core.artifacts import is_done
from stages.core.ledger import REUSED, Kind, Ledger, Row, State
from stages.core.media import video_validator, wav_duration_s
from stages.core.paths import BuildPaths
from stages.core.text import estimate_speech_s
from stages.load_project import LoadedProject
from stages.plan_work import plan_work
from stages.schema import Project, ShotList
from stages.synthesize_speech import voice_figure_of
from stages.units import EpisodeWork, ShotUnit


@dataclass
class ShotStatus:
    id: str
    state: State
    reason: str | None = None
    attempts: int = 0
    artifact: str | None = None
    key: str | None = None  # the clip a render would use now (None until its speech exists)
    keyframe: str | None = None  # the first frame it starts from, for image-to-video backends
    shot: str = ""  # the shot it is a take of (its own id for take 1)
    take: int = 1
    chosen: bool = True  # the take its episode uses
    identity: dict | None = None  # the identity check's verdict, scores and deciding frame (identity.check)


@dataclass
class LineStatus:
    """One spoken line: whether its audio for the current text and voice is on disk."""

    id: str  # epNN-scNN-shNNN-lK, as in the ledger
    engine: str
    chars: int
    done: bool
    speech_s: float  # measured when done, else a reading-speed estimate
    character: str = ""
    figure: float | None = None  # speaker similarity against the character's reference clip (0-1)
    low: bool = False  # below dialogue.min_voice: flagged
    text: str = ""


@dataclass
class VoiceStatus:
    """A character's voice at a cloning provider: enrolled (its id) or not yet."""

    id: str  # voice-<character>-<engine>, as in the ledger
    character: str
    engine: str
    state: State
    voice_id: str | None = None
    reason: str | None = None
    clip: str = ""


@dataclass
class SyncStatus:
    """A shot whose lips are synced: its state, seconds sent, and the measured sync figure."""

    id: str  # <shot id>-lips, as in the ledger
    shot: str
    state: State
    seconds: float
    figure: float | None = None
    low: bool = False  # below the project's dialogue.min_sync: flagged
    reason: str | None = None
    artifact: str | None = None


@dataclass
class EpisodeStatus:
    id: str
    number: int
    shots: list[ShotStatus] = field(default_factory=list)
    assembly: State = State.PENDING  # done (this exact cut exists) | stale | pending
    mp4: str | None = None
    plan: ShotList | None = None  # the shots, timed from the speech on disk
    speech: list[LineStatus] = field(default_factory=list)
    sheets: dict[str, bool] = field(default_factory=dict)  # generated reference sheet -> on disk
    cut_kept: bool = False  # stale only until its shots are remade under the same keys: not reassembled
    provisional: bool = False  # the LLM has not planned it yet: these are the rules planner's shots
    translation_calls: int = 0  # calls its subtitle translation would make (0: none asked, or cached)
    work: EpisodeWork | None = None  # the plan this status compares with the ledger
    syncs: list[SyncStatus] = field(default_factory=list)  # shots whose lips are synced (tts+lipsync)
    unsynced: list[tuple[str, str]] = field(default_factory=list)  # (shot, why a line of it is not synced)
    voices: list[VoiceStatus] = field(default_factory=list)  # cloned voices its lines are spoken in
    dubs: list["DubStatus"] = field(default_factory=list)  # the episode in each dub language (`languages:`)

    @property
    def current(self) -> bool:
        """Its cut and every dub's are made exactly as a render would make them now."""
        return self.assembly == State.DONE and all(d.state == State.DONE for d in self.dubs)

    @property
    def lines(self) -> int:
        return len(self.speech)

    def count(self, state: str) -> int:
        return sum(1 for s in self.shots if s.state == state)


@dataclass
class DubStatus:
    """One episode in one dub language: whether this exact dub cut exists, else its next step."""

    id: str  # epNN.<language>
    language: str
    state: State  # done (this exact dub cut exists) | stale | pending
    step: str  # done | to translate | to speak | to cut
    mp4: str | None
    speech: list[LineStatus]  # its lines (stand-ins with the original's text until translated)
    translation_calls: int  # calls its translation would make (0: cached)
    held: list[dict]  # {line, shot, tempo, overrun_s}: a line longer than its place, its shot held for it
    work: object = None  # its `plan_dub.DubWork`


def project_status(lp: LoadedProject, episodes: list[int] | None = None, *, backends: BackendSet | None = None,
                   verify: bool = False, cached_only: bool = False) -> list[EpisodeStatus]:
    """Every shot's state and each episode's cut, as a render would see them now.

    `verify` decodes each finished episode (as the render's own check does) before calling it done.
    `cached_only` never asks an LLM planner: an episode it has not planned yet gets the rules
    planner's shots as a stand-in, marked `provisional`.
    """
    backends = backends or backends_for(lp.project, lp.root)
    paths = BuildPaths(lp.build)
    ledger = Ledger(paths.ledger) if paths.ledger.exists() else None  # a killed render's units read 'interrupted'
    if ledger is not None and (notice := ledger.recovered()) is not None:  # it was unreadable: the files tell
        made = rebuild_ledger(lp, ledger, backends)
        ledger.rebuilt()
        logging.getLogger("dramaforge.ledger").warning("warning: %s (%d unit(s) found made)", notice, made)
    rows = {r.id: r for r in ledger.rows()} if ledger is not None else {}
    placeholders = {uid: r.message for uid, r in rows.items() if r.state == State.PLACEHOLDER}
    out = [episode_status(plan_work(lp, ep.number, backends, placeholders=placeholders, cached_only=cached_only),
                          rows, lp.project, verify=verify, paths=paths)
           for ep in lp.script.episodes if episodes is None or ep.number in episodes]
    for status in out:  # each dub `languages:` lists (`LoadedProject.dubbing` narrows them)
        status.dubs = [dub_status(lp, status, lang, backends, rows, paths, verify) for lang in lp.project.languages]
    return out


def dub_status(lp: LoadedProject, original: EpisodeStatus, language: str, backends: BackendSet, rows: dict,
               paths: BuildPaths, verify: bool = False) -> DubStatus:
    from stages.plan_dub import dub_id, plan_dub

    dub = plan_dub(lp, original.work, language, backends, paths)
    did = dub_id(original.id, language)
    if dub.translated is None:  # its lines are not known yet: the original's stand in for them
        speech = [replace(ln, id=dub_id(ln.id, language), done=False) for ln in original.speech]
    else:
        speech = [LineStatus(ln.id, ln.engine, len(ln.request.text), ln.path.exists(),
                             wav_duration_s(ln.path) if ln.path.exists() else estimate_speech_s(ln.request.text),
                             ln.character, text=ln.request.text) for ln in dub.lines]
    calls = dub.translation.calls if dub.translated is None and dub.translation.lines else 0
    held = [{"line": f.line, "shot": f.shot_id, "tempo": f.tempo, "overrun_s": f.overrun_s} for f in dub.fits
            if f.overrun_s]
    state, mp4, step = State.PENDING, None, dub.state
    row = rows.get(did)
    if dub.episode is not None and row is not None and row.state == State.DONE:
        state = State.STALE if row.spec_hash != dub.episode.cut.key else State.PENDING
        mp4_path = dub.episode.mp4
        if state == State.PENDING and original.assembly == State.DONE and is_done(
                mp4_path, cut_validator(dub.episode, lp.project) if verify and not row.unchanged(mp4_path) else None):
            state, mp4, step = State.DONE, str(dub.episode.mp4), "done"
    return DubStatus(did, language, state, step, mp4, speech, calls, held, dub)


def rebuild_ledger(lp: LoadedProject, ledger: Ledger, backends: BackendSet) -> int:
    """Record as done every unit whose artifact is on disk under its current key and whole (a new
    ledger, after the old one could not be read); returns how many. What is not there is still to make."""
    from stages.backends._voices import voice_validator
    from stages.core.media import wav_validator
    from stages.generate_shot import shot_validator

    made = 0
    for ep in lp.script.episodes:
        work = plan_work(lp, ep.number, backends, cached_only=True)
        units = [(u, Kind.SPEECH, wav_validator()) for u in work.lines] + \
            [(u, Kind.SHOT, shot_validator(u.request)) for u in work.shots] + \
            [(u, Kind.LIPSYNC, None) for u in work.syncs] + [(u, Kind.VOICE, voice_validator()) for u in work.voices]
        for unit, kind, check in units:  # a file cut short is removed, as the render would remove it
            if unit.key and unit.path is not None and is_done(unit.path, check):
                ledger.done(unit.id, spec_hash=unit.key, kind=kind, episode=ep.number, artifact=unit.path,
                            sha256=None, reused=True)
                made += 1
        if work.cut is not None and is_done(work.mp4, cut_validator(work, lp.project)):
            ledger.done(work.id, spec_hash=work.cut.key, kind=Kind.EPISODE, episode=ep.number, artifact=work.mp4,
                        sha256=None, reused=True)
            made += 1
    return made


def episode_status(work: EpisodeWork, rows: dict[str, Row], project: Project, *, verify: bool = False,
                   paths: BuildPaths | None = None) -> EpisodeStatus:
    """One episode's plan against the ledger's rows and the files on disk (and the identity check's
    verdicts, with `paths`)."""
    t = work.translation
    status = EpisodeStatus(work.id, work.number, plan=work.plan, work=work, provisional=work.provisional,
                           translation_calls=t.calls if t is not None and t.lines and not t.path.exists() else 0,
                           sheets={str(p): p.exists() for sheet in work.sheets if sheet.requests for p in sheet.paths})
    for ln in work.lines:
        done = ln.path.exists()
        figure = voice_figure_of(ln.path.with_suffix(".voice.json")) if done and ln.reference is not None else None
        status.speech.append(LineStatus(ln.id, ln.engine, len(ln.request.text), done,
                                        wav_duration_s(ln.path) if done else estimate_speech_s(ln.request.text),
                                        ln.character, figure, figure is not None and figure < project.dialogue.min_voice,
                                        ln.request.text))
    status.voices = [voice_status(v, rows.get(v.id)) for v in work.voices]
    status.shots = [shot_status(unit, rows.get(unit.id)) for unit in work.shots]
    if project.identity.check and paths is not None:
        from stages.check_identity import identity_outcomes

        verdicts = {v["id"]: v for v in identity_outcomes(work, project, paths)}
        for s in status.shots:
            s.identity = verdicts.get(s.id)
    status.syncs = [sync_status(u, rows.get(u.id), project.dialogue.min_sync) for u in work.syncs]
    status.syncs += [native_status(u, project.dialogue.min_sync) for u in work.shots
                     if u.chosen and u.request.extra.get("dialogue") and u.key is not None and u.placeholder is None]
    status.unsynced = list(work.unsynced)
    status.assembly, status.mp4 = _assembly(status, work, rows.get(work.id), project, verify)
    return status


def voice_status(unit, row: Row | None) -> VoiceStatus:
    from stages.backends._voices import read_voice

    clip = unit.clip.path.name
    if unit.path.exists():
        try:
            return VoiceStatus(unit.id, unit.character, unit.engine, State.DONE, read_voice(unit.path), clip=clip)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # cut short: made again by the next render
    if row is None or row.spec_hash != unit.key:  # a new clip (or account): enrolled anew
        return VoiceStatus(unit.id, unit.character, unit.engine, State.PENDING, clip=clip)
    state = State.PENDING if row.state == State.DONE else row.state
    return VoiceStatus(unit.id, unit.character, unit.engine, state, reason=row.message, clip=clip)


def shot_status(unit: ShotUnit, row: Row | None) -> ShotStatus:
    status = _shot_status(unit, row)
    status.shot, status.take, status.chosen = unit.shot_id, unit.take, unit.chosen
    return status


def _shot_status(unit: ShotUnit, row: Row | None) -> ShotStatus:
    keyframe = str(unit.request.keyframe) if unit.request.keyframe is not None else None
    if row is None:
        return ShotStatus(unit.id, State.PENDING, key=unit.key, keyframe=keyframe)
    if row.state == State.PLACEHOLDER:
        card = unit.placeholder.key if unit.placeholder is not None else None
        return ShotStatus(unit.id, State.PLACEHOLDER, row.message, row.attempts, row.artifact, card)
    if unit.key is None or row.spec_hash != unit.key:  # no speech yet for its current line: the line changed
        return ShotStatus(unit.id, State.STALE, "its inputs changed since it was made", row.attempts, row.artifact,
                          unit.key, keyframe)
    if row.state == State.DONE and (why := _changed(unit.path, row)):
        return ShotStatus(unit.id, State.PENDING, why, row.attempts, key=unit.key, keyframe=keyframe)
    return ShotStatus(unit.id, row.state, row.message, row.attempts, row.artifact, unit.key, keyframe)


def _changed(path: Path, row: Row) -> str:
    """Why a made unit's file is not the one made (missing, or cut short or replaced since), or ''.
    A stat, not a decode: `status` stays fast; the render decodes before reusing it."""
    try:
        size = path.stat().st_size
    except OSError:
        return "its file is missing"
    return f"its file changed since it was made ({size} bytes, made with {row.bytes})" \
        if row.bytes is not None and size != row.bytes else ""


def sync_status(unit, row: Row | None, min_sync: float) -> SyncStatus:
    from stages.sync_lips import read_report

    seconds = round(unit.seconds(), 3)
    if unit.path.exists() and unit.report.exists():
        figure = (read_report(unit.report) or {}).get("figure")
        return SyncStatus(unit.id, unit.shot_id, State.DONE, seconds, figure, figure is not None and figure < min_sync,
                          artifact=str(unit.path))
    if row is None:
        return SyncStatus(unit.id, unit.shot_id, State.PENDING, seconds)
    if row.spec_hash != unit.key:
        return SyncStatus(unit.id, unit.shot_id, State.STALE, seconds, reason="its shot or speech changed")
    state = State.PENDING if row.state == State.DONE else row.state  # done, but its file is gone
    return SyncStatus(unit.id, unit.shot_id, state, seconds, reason=row.message)


def native_status(unit: ShotUnit, min_sync: float) -> SyncStatus:
    """A shot whose lines the model speaks (dialogue: native): its figure once its clip is made."""
    from stages.sync_lips import read_report

    report = read_report(unit.path.parent.parent / "lipsync" / f"{unit.key}.native.json")
    seconds = round(unit.request.duration_s, 3)
    if report is None or not unit.path.exists():
        return SyncStatus(f"{unit.id}-native", unit.shot_id, State.PENDING, seconds)
    figure = report.get("figure")
    return SyncStatus(f"{unit.id}-native", unit.shot_id, State.DONE, seconds, figure,
                      figure is not None and figure < min_sync, artifact=str(unit.path))


def cut_made(work: EpisodeWork, row: Row | None, project: Project) -> bool:
    """Whether this exact cut exists: the ledger made it under this key, and its file is whole (the very
    file it checked when it made it, or one that decodes now)."""
    return work.cut is not None and row is not None and row.state == State.DONE and row.spec_hash == work.cut.key \
        and (row.unchanged(work.mp4) or bool(is_done(work.mp4, cut_validator(work, project))))


def cut_validator(work: EpisodeWork, project: Project):
    """What a finished episode must be: the project's size, the cut's length (within a frame), sound."""
    return video_validator(width=project.width, height=project.height,
                           min_duration_s=work.cut.duration_s - 1.0 / project.fps, audio=True)


def _assembly(status: EpisodeStatus, work: EpisodeWork, row: Row | None, project: Project, verify: bool):
    """Whether this exact cut exists: the same key as the render computes, and its file."""
    if row is None or row.state != State.DONE:
        return State.PENDING, None
    if work.cut is None:  # a line not spoken yet: the cut will change
        return State.STALE, row.artifact
    mp4 = str(work.mp4)
    if row.spec_hash != work.cut.key:
        return State.STALE, mp4
    if not is_done(work.mp4, cut_validator(work, project) if verify and not row.unchanged(work.mp4) else None):
        return State.PENDING, None
    if not all(s.state in REUSED for s in status.shots) or any(s.state != State.DONE for s in status.syncs):
        # Shots to make again under the keys this cut was made from (a deleted clip, a retried
        # failure): once they are back, the render finds this cut made and keeps it.
        status.cut_kept = True
        return State.STALE, mp4
    return State.DONE, mp4
