"""The series manifest (series.json): every finished episode with its files, for a publisher or a script.

Absolute `Path`s under the manifest's own folder are written relative to it, so the folder can be
moved or uploaded as a whole; other paths (and strings) are kept as given.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from stages.core.artifacts import write_text_atomic
from stages.core.ledger import Kind, Ledger, State
from stages.core.media import probe
from stages.core.paths import BuildPaths
from stages.core.trust import redact_settings

SERIES_FORMAT = 1  # bump when a field changes meaning


def dramaforge_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dramaforge")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "dev"


def write_series(lp, statuses, paths: BuildPaths) -> Path:
    """build/series.json from the project's status: every episode made so far, its files, length,
    shots and content keys."""
    rows = {r.id: r for r in Ledger(paths.ledger).rows(kind=Kind.EPISODE)} if paths.ledger.exists() else {}
    episodes = []
    for e in statuses:
        mp4 = paths.episode_mp4(e.id)
        if e.assembly != State.DONE or not mp4.exists():
            continue
        ep = lp.script.episode(e.number)
        extra = [paths.episode_srt(e.id), paths.episode_vtt(e.id), paths.episode_ass(e.id)]
        episodes.append({"episode": e.number, "title": ep.title, "mp4": mp4,
                         "duration_s": round(probe(mp4).duration_s, 3),
                         "cut_key": rows[e.id].spec_hash if e.id in rows else None,
                         "shots": [{"id": s.id, "key": s.key, "state": str(s.state)} for s in e.shots],
                         "subtitles": [p for p in extra if p.exists()],
                         "poster": paths.poster(e.id), "otio": paths.otio(e.id),
                         **({"languages": _dubs(e, paths, rows)} if e.dubs else {})})
    write_series_json(paths.series_json, title=lp.script.title or lp.project.title,
                      project_settings=redact_settings(lp.project.model_dump(mode="json")), episodes=episodes)
    return paths.series_json


def _dubs(e, paths: BuildPaths, rows: dict) -> dict:
    """Each dub language of an episode that is made: its files, length and cut key."""
    out = {}
    for d in e.dubs:
        mp4 = paths.episode_mp4(d.id)
        if d.state == State.DONE and mp4.exists():
            out[d.language] = {"mp4": mp4, "duration_s": round(probe(mp4).duration_s, 3),
                               "cut_key": rows[d.id].spec_hash if d.id in rows else None,
                               "subtitles": [p for p in (paths.episode_srt(d.id), paths.episode_vtt(d.id)) if p.exists()],
                               "otio": paths.otio(d.id), "held": d.held}
    return out


def write_series_json(path: Path, *, title: str, project_settings: dict, episodes: list[dict]) -> None:
    """Write the manifest: episodes sorted by number, totals, when and by which version it was made.

    Each episode carries at least `episode` (its number) and `duration_s`; the usual rest is
    title, mp4, shots [{id, key, duration_s}], cut_key, subtitles [paths], poster, otio.
    """
    numbers = [ep.get("episode") for ep in episodes]
    for ep, n in zip(episodes, numbers):
        if not isinstance(n, int) or isinstance(n, bool):
            raise ValueError(f"an episode without a whole 'episode' number: {ep!r:.200}")
        if "duration_s" not in ep:
            raise ValueError(f"episode {n} has no duration_s")
    dupes = sorted({n for n in numbers if numbers.count(n) > 1})
    if dupes:
        raise ValueError(f"episodes listed twice: {dupes}")
    base = Path(path).resolve().parent
    listed = [_portable(ep, base) for ep in sorted(episodes, key=lambda ep: ep["episode"])]
    doc = {
        "format": SERIES_FORMAT,
        "title": title,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "dramaforge_version": dramaforge_version(),
        "settings": _portable(project_settings, base),
        "episode_count": len(listed),
        "shot_count": sum(len(ep.get("shots") or []) for ep in listed),
        "total_duration_s": round(sum(float(ep["duration_s"]) for ep in listed), 3),
        "episodes": listed,
    }
    write_text_atomic(Path(path), json.dumps(doc, sort_keys=True, ensure_ascii=False, indent=2) + "\n")


def read_series_json(path: Path) -> dict:
    """The manifest as written (paths as strings, relative ones relative to its folder)."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("episodes"), list):
        raise ValueError(f"{path} is not a series manifest (no episodes list)")
    return doc


def _portable(obj, base: Path):
    """JSON-able copy of `obj`: Paths become strings, relative to `base` when they lie under it."""
    if isinstance(obj, Path):
        try:
            return obj.resolve().relative_to(base).as_posix() if obj.is_absolute() else obj.as_posix()
        except ValueError:
            return obj.as_posix()
    if isinstance(obj, dict):
        return {str(k): _portable(v, base) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_portable(v, base) for v in obj]
    return obj
