"""What the studio page shows (`flows/studio.py`): the series as the ledger and the shot lists have it now,
with the files it plays as paths under the build folder."""

from __future__ import annotations

import json
from pathlib import Path

from stages.core.paths import BuildPaths
from stages.load_project import LoadedProject
from stages.project_status import project_status


def series_view(lp: LoadedProject, running: str | None = None) -> dict:
    """The series: each episode's cut and shots, every shot's takes (state, clip, identity, lip sync), the
    cost so far (every run's report) and the render the studio is running, if any."""
    paths = BuildPaths(lp.build)
    episodes = []
    for e in project_status(lp, cached_only=True):
        syncs = {s.shot: s for s in e.syncs}
        shots = []
        for plan in e.plan.shots:
            takes = [s for s in e.shots if s.shot == plan.id]
            chosen = next((t for t in takes if t.chosen), takes[0])
            sync = syncs.get(plan.id)
            shots.append({
                "id": plan.id, "size": plan.size, "camera": plan.camera, "prompt": plan.prompt, "locked": plan.locked,
                "duration_s": round(plan.duration_s, 2), "characters": plan.characters, "state": str(chosen.state),
                "lines": [f"{ln.character}: {ln.text}" for ln in plan.lines], "action": plan.action,
                "take": chosen.take, "lipsync": None if sync is None else {
                    "state": str(sync.state), "figure": sync.figure, "low": sync.low},
                "takes": [{"take": t.take, "id": t.id, "state": str(t.state), "chosen": t.chosen, "reason": t.reason,
                           "clip": _media(paths.clip(t.key), paths) if t.key else None,
                           "identity": t.identity and {**t.identity, "frame": _media(Path(t.identity["frame"]), paths)
                                                       if t.identity.get("frame") else None}}
                          for t in takes]})
        episodes.append({"number": e.number, "id": e.id, "title": lp.script.episode(e.number).title,
                         "cut": str(e.assembly), "mp4": _media(paths.episode_mp4(e.id), paths), "shots": shots})
    return {"title": lp.script.title or lp.project.title, "currency": lp.project.rates.currency,
            "spent": spent(paths), "running": running, "episodes": episodes}


def spent(paths: BuildPaths) -> float | None:
    """What every render of the project cost, from their reports (None: one could not be priced)."""
    total = 0.0
    for report in sorted(paths.reports.glob("*.json")) if paths.reports.exists() else []:
        try:
            cost = json.loads(report.read_text(encoding="utf-8")).get("cost", 0)
        except (OSError, ValueError):
            continue
        if cost is None:
            return None
        total += cost
    return round(total, 4)


def _media(path: Path, paths: BuildPaths) -> str | None:
    """The studio's URL of a file under the build folder, if it is there."""
    try:
        return "media/" + path.resolve().relative_to(paths.root.resolve()).as_posix() if path.is_file() else None
    except ValueError:
        return None
