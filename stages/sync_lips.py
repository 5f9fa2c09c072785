"""Lip sync: which lines of a shot get the speaker's lips synced, and the stage that syncs them.

The rules (`dialogue: tts+lipsync`, per character and per shot overridable): a line is synced when
its speaker is on screen in the shot, it is said on screen (not V.O., O.S. or a thought), and the
shot's framing is one of `dialogue.sizes` (a shot's `lipsync: true` skips the framing rule, `false`
syncs nothing). A shot's synced lines form turns, one per speaker in a row; each turn is sent as its
own piece (a shot with two speakers is synced per span), grown to the backend's shortest piece
within the shot, split at its longest, or named and not sent when the shot cannot hold it.

The stage cuts each piece and the speech under it, sends them, keeps each synced piece
(content-addressed on both inputs and the backend), splices them into the shot and measures every
piece's sync figure (`core/sync_figure.py`), written beside the clip as its report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from stages.backends.base import LipSyncCapabilities, LipSyncRequest
from stages.core.artifacts import atomic_path, file_sha256, is_done, spec_hash, write_text_atomic
from stages.schema import Project, Shot

PAD_S = 0.15  # a piece starts this long before its first word and ends this long after its last


# --- who is synced, and why not ------------------------------------------------------------------

def dialogue_mode(shot: Shot, character: str, project: Project) -> str:
    """How a line of `character` in `shot` is voiced: the shot's setting, the character's, the project's."""
    if shot.dialogue:
        return shot.dialogue
    try:
        own = project.character(character).dialogue
    except KeyError:
        own = None
    return own or project.dialogue.mode


def line_verdicts(shot: Shot, project: Project) -> list[tuple[int, bool, str]]:
    """(line index, synced, why not) for every line of the shot whose mode is tts+lipsync."""
    from stages.presence import lips_move

    out = []
    sizes = project.dialogue.sizes
    for i, ln in enumerate(shot.lines):
        if dialogue_mode(shot, ln.character, project) != "tts+lipsync":
            continue
        who = _name(ln.character, project)
        if shot.lipsync is False:
            out.append((i, False, "lipsync: false in the shot list"))
        elif not lips_move(ln.extension):
            out.append((i, False, f"{who} is heard, not seen speaking ({ln.extension})"))
        elif ln.character not in shot.characters:
            out.append((i, False, f"{who} is not on screen"))
        elif shot.size not in sizes and shot.lipsync is not True:
            article = "an" if shot.size[0] in "aeio" else "a"
            out.append((i, False, f"{article} {shot.size} does not show the face well enough (dialogue.sizes: "
                                  f"{', '.join(sizes)}; or set lipsync: true on the shot)"))
        else:
            out.append((i, True, ""))
    return out


def _name(character: str, project: Project) -> str:
    try:
        return project.character(character).name
    except KeyError:
        return character


def native_lines(shot: Shot, project: Project) -> list[int]:
    """The lines of a shot the video model speaks itself (`native`): those said on screen by someone in
    the picture. A voice from off screen (V.O., O.S., a phone) keeps our voice: the model speaks only
    for whom it draws."""
    from stages.presence import lips_move

    return [i for i, ln in enumerate(shot.lines) if dialogue_mode(shot, ln.character, project) == "native"
            and lips_move(ln.extension) and ln.character in shot.characters]


def modes_used(project: Project, shots=()) -> set[str]:
    """The dialogue modes a project's lines use (the project's, its cast's, its shots')."""
    return {project.dialogue.mode, *(c.dialogue for c in project.cast if c.dialogue),
            *(s.dialogue for s in shots if s.dialogue)}


def lipsync_plan(lp, shots) -> dict:
    """What `check` says of lip sync: {backend, synced: [{shot, lines}], not_synced: [{shot, why}]}, from
    the planned shots (no timing needed: which lines, not which frames)."""
    synced, skipped = [], []
    for shot in shots:
        verdicts = line_verdicts(shot, lp.project)
        ok = [i + 1 for i, good, _ in verdicts if good]
        if ok:
            synced.append({"shot": shot.id, "lines": ok, "size": shot.size})
        skipped += [{"shot": shot.id, "line": i + 1, "why": why} for i, good, why in verdicts if not good]
    return {"backend": lp.project.backends.lipsync, "synced": synced, "not_synced": skipped} \
        if synced or skipped else {}


def lipsync_blockers(project: Project, video, lipsync, shots=()) -> list[tuple[str, str]]:
    """(problem, fix) for dialogue modes the project's backends cannot serve."""
    out = []
    used = modes_used(project, shots)
    needs = lipsync.capabilities.needs_video if "tts+lipsync" in used else None
    if needs and needs != video.name:
        out.append((f"backends.lipsync: {lipsync.name} can sync only {needs} clips, and the video backend is "
                    f"{video.name}", "set backends.lipsync to sync, kling-lipsync or fal-lipsync (and its section)"))
    if "native" in used and not video.capabilities.native_audio:
        out.append((f"dialogue native: the video backend {video.name} makes no sound of its own",
                    f"ask it for sound (backends.{video.section or video.name}.audio: true where the model "
                    "speaks, e.g. veo, seedance 2.0, kling omni), or use dialogue tts / tts+lipsync"))
    return out


@dataclass(frozen=True)
class Turn:
    """One speaker's synced lines in a row within a shot; times on the shot's clock."""

    character: str
    lines: tuple[int, ...]
    start_s: float  # the first word
    end_s: float  # the last word
    lo_s: float  # how far a piece of it may reach without covering another speaker's words
    hi_s: float


def turns(shot: Shot, project: Project) -> list[Turn]:
    """The synced turns of a timed shot (every line's `speech_s` measured)."""
    from stages.time_shots import GAP_S

    synced = {i for i, ok, _ in line_verdicts(shot, project) if ok}
    times, at = [], project.timing.lead_in_s
    for ln in shot.lines:
        times.append((at, at + (ln.speech_s or 0.0)))
        at += (ln.speech_s or 0.0) + GAP_S
    out: list[list] = []
    for i, ln in enumerate(shot.lines):
        if i not in synced:
            continue
        if out and out[-1][0] == ln.character and out[-1][1][-1] == i - 1:
            out[-1][1].append(i)
        else:
            out.append([ln.character, [i]])
    result = []
    for character, idx in out:
        first, last = idx[0], idx[-1]
        lo = (times[first - 1][1] + times[first][0]) / 2 if first > 0 else 0.0
        hi = (times[last][1] + times[last + 1][0]) / 2 if last + 1 < len(times) else shot.duration_s
        result.append(Turn(character, tuple(idx), times[first][0], times[last][1], round(lo, 4), round(hi, 4)))
    return result


def pieces_of(turn: Turn, caps: LipSyncCapabilities, fps: int) -> tuple[list[tuple[int, int]], str]:
    """The pieces (first frame, frame count) a turn is sent as, or ([], why it cannot be sent)."""
    import math

    a = max(turn.lo_s, turn.start_s - PAD_S)
    b = min(turn.hi_s, turn.end_s + PAD_S)
    short = caps.min_s - (b - a)
    if short > 0:  # grow it evenly into the silence around it, as far as the shot allows
        a = max(turn.lo_s, a - short / 2)
        b = min(turn.hi_s, a + caps.min_s)
        a = max(turn.lo_s, b - caps.min_s)
    start, end = math.floor(a * fps + 1e-6), math.ceil(b * fps - 1e-6)
    span = (end - start) / fps
    if span + 1e-6 < caps.min_s:
        return [], (f"{span:.2f} s of the shot is free around the line, and the lip-sync backend takes pieces of "
                    f"{caps.min_s:g} s or more")
    count = 1 if not caps.max_s else max(1, math.ceil(span / caps.max_s - 1e-9))
    frames = end - start
    cuts = [start + round(frames * k / count) for k in range(count + 1)]
    return [(cuts[k], cuts[k + 1] - cuts[k]) for k in range(count)], ""


# --- the stage --------------------------------------------------------------------------------

@dataclass(frozen=True)
class SyncResult:
    path: Path
    reused: bool
    figure: float | None  # the lowest piece's sync figure


def sync_lips(unit, backend, jobs_for: Callable[[object], object] | None = None) -> SyncResult:
    """Make `unit.path` (a `units.LipSyncUnit`): every piece synced (or reused), spliced into the shot's
    clip, each piece's figure measured and the report written beside it."""
    check = _whole(unit.request)
    _drop_older(unit.source, [unit.path, *(p.path for p in unit.pieces)])
    if synced(unit):
        return SyncResult(unit.path, True, _lowest(unit.report))
    unit.path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for piece in unit.pieces:
        rows.append(_sync_piece(unit, piece, backend, jobs_for))
    with atomic_path(unit.path, validate=check) as tmp:
        splice(unit.source, [(p.start, p.frames, p.path) for p in unit.pieces], unit.request.fps, tmp)
    report = {"shot": unit.shot_id, "backend": backend.name, "identity": backend.identity(),
              "source": {"path": unit.source.name, "sha256": file_sha256(unit.source)},
              "pieces": rows, "not_sent": list(unit.not_sent),
              "figure": min((r["figure"] for r in rows), default=None)}
    write_text_atomic(unit.report, json.dumps(report, indent=1, ensure_ascii=False))
    return SyncResult(unit.path, False, report["figure"])


def synced(unit) -> bool:
    """`sync_lips` would reuse the unit's synced clip as it is: made from its shot's current clip, whole,
    with its report (nothing to send)."""
    try:
        if unit.path.stat().st_mtime < unit.source.stat().st_mtime:
            return False
    except FileNotFoundError:
        return False
    return bool(is_done(unit.path, _whole(unit.request))) and unit.report.exists()


def _whole(req):
    """The synced clip's check: the shot's size, and no more than a frame and a half short."""
    from stages.core.media import video_validator

    return video_validator(width=req.width, height=req.height, min_duration_s=req.duration_s - 1.5 / req.fps)


def _sync_piece(unit, piece, backend, jobs_for) -> dict:
    from stages.core.artifacts import partial_file
    from stages.core.media import video_validator
    from stages.core.sync_figure import sync_figure

    req = unit.request
    fps, seconds = req.fps, piece.frames / req.fps
    if not piece.audio.exists():
        place_speech(piece.lines, piece.start / fps, seconds, piece.audio)
    check = video_validator(width=req.width, height=req.height, min_duration_s=seconds - 1.5 / fps)
    if not is_done(piece.path, check):
        import contextlib
        import os

        fd, cut = partial_file(piece.path.parent, piece.path.stem, ".mp4", tag="cut")
        os.close(fd)
        try:
            caps = backend.capabilities
            cut_frames(unit.source, piece.start, piece.frames, fps, cut, min_side=caps.min_side_px,
                       max_side=caps.max_side_px or 0)
            request = LipSyncRequest(unit.shot_id, piece.character, cut, piece.audio, seconds, req.width, req.height,
                                     fps, start_s=piece.start / fps, shot=req)
            with atomic_path(piece.path, validate=check) as tmp:
                backend.sync(request, tmp, jobs=jobs_for(piece) if jobs_for and backend.capabilities.resumable
                             else None)
        finally:
            with contextlib.suppress(FileNotFoundError):
                cut.unlink()
    box = mouth_box(unit.faces, piece.character)
    measured = sync_figure(piece.path, piece.audio, fps, box)
    return {"character": piece.character, "lines": [ln[2] for ln in piece.lines],
            "start_s": round(piece.start / fps, 4), "end_s": round((piece.start + piece.frames) / fps, 4),
            "sent": {"seconds": round(seconds, 4), "audio_sha256": file_sha256(piece.audio)},
            "returned": {"path": piece.path.name, "sha256": file_sha256(piece.path)}, **measured}


def native_report(clip: Path, fps: int, out_json: Path) -> dict:
    """dialogue: native: the same sync figure, on the model's own sound against its own mouths (where it
    drew them is not known: the cell that moves most), written beside the shot's other reports."""
    from stages.core.sync_figure import sync_figure

    measured = sync_figure(clip, clip, fps)
    report = {"clip": clip.name, "sha256": file_sha256(clip), "mode": "native", **measured}
    write_text_atomic(out_json, json.dumps(report, indent=1))
    return report


def _drop_older(source: Path, made: list[Path]) -> None:
    """A synced clip older than its shot's clip synced an earlier take (`rerun --shot` made the shot
    anew under the same key): it is made again from the new one."""
    import contextlib

    at = source.stat().st_mtime
    for p in made:
        with contextlib.suppress(FileNotFoundError):
            if p.stat().st_mtime < at:
                p.unlink()


def mouth_box(faces, character: str):
    """Where `character`'s mouth is (the middle of the lowest third of their face box), when the video
    backend said where it drew faces; else None (the figure then reads the cell that moves most). Tight:
    the eyes and the face's edges move with the breath and the camera, the mouth with the words."""
    for cid, (x0, y0, x1, y1) in faces or ():
        if cid == character:
            w, h = x1 - x0, y1 - y0
            return (x0 + 0.25 * w, y0 + 0.6 * h, x1 - 0.25 * w, y1 - 0.05 * h)
    return None


def _lowest(report: Path) -> float | None:
    try:
        return json.loads(report.read_text(encoding="utf-8")).get("figure")
    except (OSError, ValueError):
        return None


def read_report(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# --- media helpers --------------------------------------------------------------------------------

def place_speech(lines, start_s: float, duration_s: float, out_wav: Path) -> None:
    """The speech under a piece: each (offset in the shot, wav, key) laid at its place, cut to the piece
    [start_s, start_s + duration_s), as 48 kHz mono 16-bit WAV of exactly that length."""
    import wave

    import numpy as np

    from stages.core.media import decode_audio

    rate = 48_000
    n = int(round(duration_s * rate))
    out = np.zeros(n, dtype=np.float32)
    for offset, wav, _ in lines:
        x = decode_audio(Path(wav), rate=rate, what="reading a line for lip sync").mean(axis=1)
        at = int(round((offset - start_s) * rate))
        a, b = max(0, at), min(n, at + len(x))
        if b > a:
            out[a:b] += x[a - at:b - at]
    pcm = (np.clip(out, -1, 1) * 32767).astype("<i2").tobytes()
    with atomic_path(out_wav) as tmp:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(pcm)


def cut_frames(src: Path, start: int, frames: int, fps: int, out: Path, *, min_side: int = 0,
               max_side: int = 0) -> None:
    """Frames [start, start + frames) of `src` as their own H.264 clip, scaled (aspect kept) so its shorter
    side is at least `min_side` and its longer side at most `max_side`, where a provider takes no other
    picture (the synced piece is conformed back to the shot's size)."""
    from stages.core.media import probe, run_ffmpeg

    scale = ""
    if min_side or max_side:
        info = probe(src)
        short, long_ = sorted((info.width, info.height))
        k = max(1.0, min_side / short) if min_side else 1.0
        if max_side and long_ * k > max_side:
            k = max_side / long_
        if k != 1.0:
            w, h = (2 * round(info.width * k / 2), 2 * round(info.height * k / 2))
            scale = f",scale={w}:{h}:flags=lanczos"
    run_ffmpeg(["-i", str(src), "-vf", f"select=between(n\\,{start}\\,{start + frames - 1}),setpts=N/{fps}/TB"
                f"{scale},tpad=stop_mode=clone:stop_duration=1", "-frames:v", str(frames), "-r", str(fps),
                "-c:v", "libx264", "-preset", "veryfast", "-crf", "16", "-pix_fmt", "yuv420p", "-an",
                "-movflags", "+faststart", "-f", "mp4", str(out)], what="cutting a piece to sync")


def splice(src: Path, pieces: list[tuple[int, int, Path]], fps: int, out: Path) -> None:
    """`src` with frames [start, start + frames) replaced by each piece's clip, in one pass; same
    length, size and fps."""
    from stages.core.media import probe, run_ffmpeg

    total = max(1, round(probe(src).duration_s * fps))
    inputs, parts, labels, at = ["-i", str(src)], [], [], 0
    k = 0
    for i, (start, frames, path) in enumerate(sorted(pieces)):
        if start > at:
            parts.append(f"[0:v]trim=start_frame={at}:end_frame={start},setpts=PTS-STARTPTS,setsar=1[o{k}]")
            labels.append(f"[o{k}]")
            k += 1
        inputs += ["-i", str(path)]
        parts.append(f"[{i + 1}:v]trim=end_frame={frames},setpts=PTS-STARTPTS,setsar=1[s{i}]")
        labels.append(f"[s{i}]")
        at = start + frames
    if at < total:
        parts.append(f"[0:v]trim=start_frame={at},setpts=PTS-STARTPTS,setsar=1[o{k}]")
        labels.append(f"[o{k}]")
    graph = ";".join(parts) + f";{''.join(labels)}concat=n={len(labels)}:v=1:a=0,fps={fps},tpad=stop_mode=clone:stop_duration=1,format=yuv420p[v]"
    run_ffmpeg([*inputs, "-filter_complex", graph, "-map", "[v]", "-frames:v", str(total), "-r", str(fps),
                "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-an", "-movflags", "+faststart",
                "-f", "mp4", str(out)], what="splicing the synced pieces into the shot")


def drop_synced(syncs, retaken: set) -> None:
    """Remove the synced pieces (and their shots) made over speech that was just spoken again
    (`retaken`: the lines' WAVs): their lips follow the old take, and are synced again."""
    if not retaken:
        return
    for unit in syncs:
        stale = [p for p in unit.pieces if any(wav in retaken for _, wav, _ in p.lines)]
        for piece in stale:
            piece.path.unlink(missing_ok=True)
            piece.audio.unlink(missing_ok=True)
        if stale and unit.path is not None:
            unit.path.unlink(missing_ok=True)


def piece_key(source_key: str, start: int, frames: int, character: str, lines, identity: dict) -> str:
    return spec_hash("lipsync-piece", {"source": source_key, "start": start, "frames": frames,
                                       "character": character, "lines": [[round(o, 4), k] for o, _, k in lines],
                                       "backend": identity})
