"""Where every shot of a project stands, from the ledger and the current script, without rendering.

A shot's current key is computed the way a render would (plan, then timing from the speech
already on disk); a ledger row made under another key is `stale`, a shot never tried is `pending`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from stages.core.artifacts import is_done
from stages.core.paths import BuildPaths
from stages.assemble_episode import plan_cut
from stages.backends.base import VideoBackend
from stages.backends.registry import make_image_backend
from stages.generate_shot import placeholder_key, planned_requests, shot_key
from stages.core.ledger import Ledger
from stages.load_project import LoadedProject
from stages.core.media import video_validator, wav_duration_s
from stages.core.text import estimate_speech_s
from stages.plan_shots import plan_shots
from stages.plan_shots_llm import NotPlanned
from stages.schema import Planner, ShotList
from stages.synthesize_speech import speech_engine, speech_key, speech_request
from stages.time_shots import time_shots


@dataclass
class ShotStatus:
    id: str
    state: str
    reason: str | None = None
    attempts: int = 0
    artifact: str | None = None
    key: str | None = None  # the clip a render would use now (None until its speech exists)
    keyframe: str | None = None  # the first frame it starts from, for image-to-video backends


@dataclass
class LineStatus:
    """One spoken line: whether its audio for the current text and voice is on disk."""

    id: str  # epNN-scNN-shNNN-lK, as in the ledger
    engine: str
    chars: int
    done: bool
    speech_s: float  # measured when done, else a reading-speed estimate


@dataclass
class EpisodeStatus:
    id: str
    number: int
    shots: list[ShotStatus] = field(default_factory=list)
    assembly: str = "pending"  # done (this exact cut exists) | stale | pending
    mp4: str | None = None
    plan: ShotList | None = None  # the shots, timed from the speech on disk
    speech: list[LineStatus] = field(default_factory=list)
    sheets: dict[str, bool] = field(default_factory=dict)  # generated reference sheet -> on disk
    cut_kept: bool = False  # stale only until its shots are remade under the same keys: not reassembled
    provisional: bool = False  # the LLM has not planned it yet: these are the rules planner's shots
    translation_calls: int = 0  # calls its subtitle translation would make (0: none asked, or cached)

    @property
    def lines(self) -> int:
        return len(self.speech)

    def count(self, state: str) -> int:
        return sum(1 for s in self.shots if s.state == state)


def project_status(lp: LoadedProject, video: VideoBackend, speech: Callable[[str], object],
                   episodes: list[int] | None = None, *, verify: bool = False,
                   cached_only: bool = False) -> list[EpisodeStatus]:
    """Every shot's state and each episode's cut, as a render would see them now.

    `speech(engine)` gives the speech backend of that name (for its identity: nothing is spoken).

    `verify` decodes each finished episode (as the render's own check does) before calling it done.
    `cached_only` never asks an LLM planner: an episode it has not planned yet gets the rules
    planner's shots as a stand-in, marked `provisional`.
    """
    paths = BuildPaths(lp.build)
    image = make_image_backend(lp.project.backends.image)
    ledger = Ledger(paths.ledger) if paths.ledger.exists() else None
    if ledger is not None:
        ledger.reconcile()
    rows = {r.id: r for r in ledger.rows()} if ledger is not None else {}
    project = lp.project
    translated = _translation(lp, paths)
    out = []
    for ep in lp.script.episodes:
        if episodes is not None and ep.number not in episodes:
            continue
        try:
            plan = plan_shots(ep, project, project_dir=lp.root, characters=lp.script.characters,
                              cached_only=cached_only)
            provisional = False
        except NotPlanned:
            rules = project.model_copy(update={"planner": Planner(kind="rules")})
            plan, provisional = plan_shots(ep, rules, project_dir=lp.root, characters=lp.script.characters), True
        measured: dict[str, list[float]] = {}
        keys: dict[tuple[str, int], str] = {}
        unspoken: set[str] = set()
        lines: list[LineStatus] = []
        for shot in plan.shots:
            durs = []
            for i, ln in enumerate(shot.lines):
                engine = speech_engine(project, ln.character)
                request = speech_request(ln.text, ln.character, project, lp.root, parenthetical=ln.parenthetical,
                                         extension=ln.extension)
                keys[shot.id, i] = speech_key(request, speech(engine))
                wav = paths.speech / f"{keys[shot.id, i]}.wav"
                if wav.exists():
                    durs.append(wav_duration_s(wav))
                else:
                    unspoken.add(shot.id)
                lines.append(LineStatus(f"{shot.id}-l{i + 1}", engine, len(ln.text), wav.exists(),
                                        durs[-1] if wav.exists() else estimate_speech_s(ln.text)))
            if shot.lines and shot.id not in unspoken:
                measured[shot.id] = durs
        timed = time_shots(plan, measured, project)
        status = EpisodeStatus(ep.id, ep.number, plan=timed, speech=lines, provisional=provisional,
                               translation_calls=translated([ln.text for s in timed.shots for ln in s.lines]))
        # Every shot's request: sheets and keyframes are named without the speech; the clip's key
        # needs the measured speech, so a shot with a line not yet spoken has none.
        requests = {r.shot_id: r for r in planned_requests(timed.shots, project, lp.root, lp.script.characters,
                                                           video, image, paths)}
        status.sheets = {str(p): p.exists() for r in requests.values() for f in r.figures for p in f.references
                         if not p.name.startswith("own-")}
        for shot in timed.shots:
            row = rows.get(shot.id)
            request = requests[shot.id]
            key = None if shot.id in unspoken else shot_key(request, video)
            keyframe = str(request.keyframe) if request.keyframe is not None else None
            if row is None:
                status.shots.append(ShotStatus(shot.id, "pending", key=key, keyframe=keyframe))
            elif row.state == "placeholder":
                card = None if key is None else placeholder_key(request, row.message)
                status.shots.append(ShotStatus(shot.id, "placeholder", row.message, row.attempts, row.artifact, card))
            elif key is None or row.spec_hash != key:  # no speech yet for its current line: the line changed
                status.shots.append(ShotStatus(shot.id, "stale", "its inputs changed since it was made",
                                               row.attempts, row.artifact, key, keyframe))
            elif row.state == "done" and not (paths.shots / f"{row.spec_hash}.mp4").exists():
                status.shots.append(ShotStatus(shot.id, "pending", "its file is missing", row.attempts, key=key,
                                               keyframe=keyframe))
            else:
                status.shots.append(ShotStatus(shot.id, row.state, row.message, row.attempts, row.artifact, key,
                                               keyframe))
        status.assembly, status.mp4 = _assembly(status, timed, keys, rows.get(ep.id), paths, lp, verify)
        out.append(status)
    return out


def _translation(lp: LoadedProject, paths: BuildPaths) -> Callable[[list[str]], int]:
    """texts -> how many calls translating them would make now (0 when cached or not asked for)."""
    options = lp.project.subtitles.translation
    if options is None:
        return lambda texts: 0
    from stages.backends.openai_translate import BATCH_LINES
    from stages.backends.registry import make_translation_backend
    from stages.translate_subtitles import translation_key

    identity = make_translation_backend(options, lp.root).identity()

    def calls(texts: list[str]) -> int:
        key = translation_key(texts, lp.project.language, options.language, identity)
        if not texts or (paths.root / "translations" / f"{key}.json").exists():
            return 0
        return -(-len(texts) // BATCH_LINES)

    return calls


def _assembly(status: EpisodeStatus, timed, speech_keys, row, paths: BuildPaths, lp: LoadedProject, verify: bool):
    """Whether this exact cut exists: the same key as the render would compute, and its file."""
    if row is None or row.state != "done":
        return "pending", None
    if not all(s.key for s in status.shots):  # a line not spoken yet: the cut will change
        return "stale", row.artifact
    project = lp.project
    speech = {k: (v, paths.speech / f"{v}.wav") for k, v in speech_keys.items()}
    ep = lp.script.episode(timed.episode)
    key = plan_cut(timed, [s.key for s in status.shots], [], speech, project, lp.root,
                   series=lp.script.title or project.title, episode_title=ep.title,
                   final=ep.number == lp.script.episodes[-1].number).key
    mp4 = paths.episode_mp4(status.id)
    if row.spec_hash != key:
        return "stale", str(mp4)
    check = video_validator(width=project.width, height=project.height,
                            min_duration_s=timed.duration_s - 1.0 / project.fps, audio=True) if verify else None
    if not is_done(mp4, check):
        return "pending", None
    if not all(s.state in ("done", "placeholder") for s in status.shots):
        # Shots to make again under the keys this cut was made from (a deleted clip, a retried
        # failure): once they are back, the render finds this cut made and keeps it.
        status.cut_kept = True
        return "stale", str(mp4)
    return "done", str(mp4)
