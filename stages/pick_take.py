"""A shot's takes (`dramaforge takes`) and the one its episode uses (`dramaforge pick`).

Each take is its own unit (take 1's id is the shot's, take K's `<shot id>-tK`, its seed the next after
the shot's), made, billed and kept like any shot. The choice is the shot list's `take:` for that shot,
written as a hand edit would be: it changes no picture, only which clip the cut uses, so picking
re-assembles the episode and regenerates nothing."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from stages.core.errors import InputError
from stages.core.jobs import Journal
from stages.core.ledger import REUSED, Ledger, State
from stages.core.paths import BuildPaths
from stages.load_project import LoadedProject
from stages.project_status import EpisodeStatus, ShotStatus, project_status
from stages.write_shotlist import editing, read_shotlist, write_shotlist


@dataclass
class Take:
    take: int
    id: str  # the unit's id in the ledger and `rerun --shot`
    state: State
    chosen: bool
    clip: str | None  # the file, once made
    reason: str | None
    jobs: int  # paid jobs made for it (a hosted backend's journal)
    billed_s: float  # seconds of video those jobs asked for
    identity: dict | None = None  # the identity check's verdict, scores and frame (identity.check)


def shot_takes(lp: LoadedProject, shot: str) -> tuple[EpisodeStatus, list[Take]]:
    """Every take of `shot` (a shot id as in the shot list), in order, and its episode's status."""
    episode = episode_of(lp, shot)
    status = project_status(lp, [episode], cached_only=True)[0]
    mine = [s for s in status.shots if s.shot == shot]
    if not mine:
        known = ", ".join(s.shot for s in status.shots if s.take == 1)
        raise InputError(f"no shot {shot} in episode {episode}", text=shot, hint=f"its shots: {known}")
    paths = BuildPaths(lp.build)
    journal = Journal(Ledger(paths.ledger)) if paths.ledger.exists() else None
    return status, [_take(s, paths, journal) for s in mine]


def pick_take(lp: LoadedProject, shot: str, take: int) -> tuple[EpisodeStatus, Path]:
    """Make take `take` the one `shot`'s episode uses (written to its shot list); refused unless it is
    made. Returns the episode's status before the pick and the shot list written."""
    status, takes = shot_takes(lp, shot)
    asked = next((t for t in takes if t.take == take), None)
    if asked is None:
        raise InputError(f"shot {shot} has {len(takes)} take{'s' if len(takes) > 1 else ''}, not a take {take}",
                         hint=f"pick 1 to {len(takes)}; `takes: N` in the shot list or project.yaml makes more")
    if asked.state not in REUSED:
        raise InputError(f"take {take} of shot {shot} is not made ({asked.state}"
                         f"{f': {asked.reason}' if asked.reason else ''})",
                         hint=f"`dramaforge render {lp.root} -e {status.number}` makes it"
                              if asked.state in (State.PENDING, State.STALE) else
                              f"`dramaforge rerun {lp.root} --shot {asked.id}` tries it again")
    path = BuildPaths(lp.build).shotlist(status.id)
    with editing(path):  # the render wrote it with every shot; a hand edit in it is kept as it is
        shotlist = read_shotlist(path)
        shots = [s.model_copy(update={"take": take}) if s.id == shot else s for s in shotlist.shots]
        write_shotlist(shotlist.model_copy(update={"shots": shots}), path)
    return status, path


def still_to_make(status: EpisodeStatus) -> list:
    """The episode's takes and lip syncs that a render would make (none: it would only cut the episode):
    a take with synced lips is synced anew once picked."""
    return [s for s in status.shots if s.state not in REUSED] + \
        [u for u in status.syncs if u.id.endswith("-lips") and u.state != State.DONE]


def episode_of(lp: LoadedProject, shot: str) -> int:
    m = re.match(r"^ep(\d+)-sc\d+-sh\d+$", shot)
    numbers = [e.number for e in lp.script.episodes]
    if m is None or int(m.group(1)) not in numbers:
        raise InputError(f"{shot!r} is not a shot of this project", text=shot,
                         hint="a shot id as `dramaforge status` or the shot list shows it, e.g. ep01-sc01-sh001")
    return int(m.group(1))


def _take(s: ShotStatus, paths: BuildPaths, journal: Journal | None) -> Take:
    made = [j for j in (journal.of(s.id) if journal is not None else []) if j.created]
    clip = paths.clip(s.key) if s.key else None
    return Take(s.take, s.id, s.state, s.chosen, str(clip) if clip is not None and clip.exists() else None,
                s.reason, len(made), round(sum(j.billed_s for j in made), 3), s.identity)
