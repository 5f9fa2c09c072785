"""A shot's clip or a line's take reused as the ledger recorded it: no decode, no lock, no task run.

A unit is kept when its row is done under the unit's current key and its file is the very one it
made and checked then (same path, size and modification time: `Row.unchanged`). The episode flow
leaves kept units out of its task maps (`flows.tasks.map_new`), and each task asks the same before
it does anything, so a unit is judged the same either way. Anything else (a new key, a touched or
missing file, a row written before sizes were recorded, a unit asked for again) goes to its task,
which checks the file and makes or reuses it as before.
"""

from __future__ import annotations

from stages.core.ledger import Ledger
from stages.core.media import wav_duration_s
from stages.core.paths import BuildPaths
from stages.generate_shot import ShotResult
from stages.synthesize_speech import SpeechResult
from stages.units import LineUnit, ShotUnit


def kept_clip(shot: ShotUnit, ledger: Ledger, paths: BuildPaths, remake: frozenset[str] = frozenset()) \
        -> ShotResult | None:
    """The clip this shot made and checked, untouched since (a 4 s 1080x1920 clip's decode is 0.12 CPU-s);
    None when it must go to its task: an accepted placeholder, a shot to make anew, or a clip whose
    model spoke its lines but whose report of how well is missing."""
    if shot.placeholder is not None or shot.id in remake:
        return None
    if shot.request.extra.get("dialogue") and not paths.lipsync_file(shot.key, ".native.json").exists():
        return None
    return ShotResult(shot.path, reused=True) if _as_recorded(ledger, shot.id, shot.key, shot.path) else None


def kept_take(line: LineUnit, ledger: Ledger, paths: BuildPaths, remake: frozenset[str] = frozenset()) \
        -> SpeechResult | None:
    """The take this line spoke and checked, untouched since, with its voice figure where it has a
    reference clip; None when it must go to its task."""
    if line.id in remake or (line.reference is not None and not paths.voice_figure(line.key).exists()):
        return None
    if not _as_recorded(ledger, line.id, line.key, line.path):
        return None
    return SpeechResult(line.path, wav_duration_s(line.path), reused=True)


def _as_recorded(ledger: Ledger, unit_id: str, key: str, path) -> bool:
    """The unit's row is done under `key`, and `path` is the file it recorded, untouched since."""
    row = ledger.get(unit_id)
    return row is not None and row.spec_hash == key and row.unchanged(path)


def pictures_kept(work, ledger: Ledger, paths: BuildPaths, remake: frozenset[str], respoken: list[str]) -> bool:
    """Every reference sheet, shot and lip-synced clip of the episode (a `plan_work.EpisodeWork`) is made
    and untouched, and no line under a synced piece was spoken again: its pictures need no backend."""
    from stages.make_references import sheet_made
    from stages.sync_lips import synced

    return not (respoken and work.syncs) and all(sheet_made(s) for s in work.sheets) \
        and all(kept_clip(u, ledger, paths, remake) is not None for u in work.shots) \
        and all(synced(u) for u in work.syncs)
