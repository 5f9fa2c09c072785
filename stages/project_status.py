"""Where every shot of a project stands, from the ledger and the current script, without rendering.

A shot's current key is computed the way a render would (plan, then timing from the speech
already on disk); a ledger row made under another key is `stale`, a shot never tried is `pending`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stages.artifacts import BuildPaths
from stages.backends.base import VideoBackend
from stages.generate_shot import shot_key, shot_request
from stages.ledger import Ledger
from stages.load_project import LoadedProject
from stages.media import wav_duration_s
from stages.plan_shots import plan_shots
from stages.synthesize_speech import speech_key, speech_request
from stages.time_shots import time_shots


@dataclass
class ShotStatus:
    id: str
    state: str
    reason: str | None = None
    attempts: int = 0
    artifact: str | None = None


@dataclass
class EpisodeStatus:
    id: str
    number: int
    shots: list[ShotStatus] = field(default_factory=list)

    def count(self, state: str) -> int:
        return sum(1 for s in self.shots if s.state == state)


def project_status(lp: LoadedProject, video: VideoBackend, speech, episodes: list[int] | None = None
                   ) -> list[EpisodeStatus]:
    paths = BuildPaths(lp.build)
    ledger = Ledger(paths.ledger) if paths.ledger.exists() else None
    if ledger is not None:
        ledger.reconcile()
    out = []
    for ep in lp.script.episodes:
        if episodes is not None and ep.number not in episodes:
            continue
        plan = plan_shots(ep, lp.project, project_dir=lp.root, characters=lp.script.characters)
        measured: dict[str, list[float]] = {}
        unspoken: set[str] = set()
        for shot in plan.shots:
            durs = []
            for ln in shot.lines:
                wav = paths.speech / f"{speech_key(speech_request(ln.text, lp.project.voice_for(ln.character)), speech)}.wav"
                if wav.exists():
                    durs.append(wav_duration_s(wav))
                else:
                    unspoken.add(shot.id)
            if shot.lines and shot.id not in unspoken:
                measured[shot.id] = durs
        timed = time_shots(plan, measured, lp.project)
        status = EpisodeStatus(ep.id, ep.number)
        for shot in timed.shots:
            row = ledger.get(shot.id) if ledger else None
            key = None if shot.id in unspoken else shot_key(
                shot_request(shot, lp.project, lp.root, lp.script.characters), video)
            if row is None:
                status.shots.append(ShotStatus(shot.id, "pending"))
            elif row.state == "placeholder":
                status.shots.append(ShotStatus(shot.id, "placeholder", row.message, row.attempts, row.artifact))
            elif key is None or row.spec_hash != key:  # no speech yet for its current line: the line changed
                status.shots.append(ShotStatus(shot.id, "stale", "its inputs changed since it was made",
                                               row.attempts, row.artifact))
            elif row.state == "done" and (paths.shots / f"{row.spec_hash}.mp4").exists() is False:
                status.shots.append(ShotStatus(shot.id, "pending", "its file is missing", row.attempts))
            else:
                status.shots.append(ShotStatus(shot.id, row.state, row.message, row.attempts, row.artifact))
        out.append(status)
    return out
