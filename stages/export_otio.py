"""An episode's cut -> an OpenTimelineIO timeline (.otio), for finishing it in an editor.

Picture, dialogue, music and effects go on their own tracks, subtitles and text cards become
markers, all on the frame grid of the episode, so the timeline lines up with the rendered mp4.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

from stages.core.artifacts import atomic_path
from stages.schema import ShotList


def to_frames(seconds: float, fps: int) -> int:
    """The frame nearest to a time, halves up: Python's round() sends 22.5 down and 37.5 up, which
    would make a 0.5 s line 16 frames at 0.75 s. The 1e-6 absorbs float noise (3.15 * 30 = 94.4999...)."""
    return math.floor(round(seconds * fps, 6) + 0.5)


def frame_bounds(durations_s: list[float], fps: int) -> list[int]:
    """Frame numbers where each segment starts, plus the end: cumulative rounding, so the segments'
    frame counts add up to to_frames(sum) however many there are (no drift from rounding each)."""
    out, t = [0], 0.0
    for d in durations_s:
        t += d
        out.append(to_frames(t, fps))
    return out


def write_otio(cut, shotlist: ShotList, fps: int, out_path: Path, *, title: str,
               card_clips: tuple[Path | None, Path | None] = (None, None)) -> None:
    """Write the cut as an OTIO timeline named after the series and the episode.

    `cut` is a `units.Cut` (times on the episode's clock, opening card included);
    `shotlist` the timed shot list it was planned from. `card_clips` are the drawn backgrounds of
    the opening and end cards when the caller has them; without them those stretches are gaps.
    """
    import opentimelineio as otio

    if len(cut.clips) != len(shotlist.shots):
        raise ValueError(f"{len(cut.clips)} clips for {len(shotlist.shots)} shots")
    if len(cut.speech) != len(cut.lines):
        raise ValueError(f"{len(cut.speech)} speech files for {len(cut.lines)} lines")
    # The card stretches are not shots: the cut knows them as the clips that draw them.
    lead = cut.opening.request.duration_s if cut.opening is not None else 0.0
    tail = cut.ending.request.duration_s if cut.ending is not None else 0.0
    total_f = to_frames(cut.duration_s, fps)

    def rt(frames: int):
        return otio.opentime.RationalTime(frames, fps)

    def rng(start: int, dur: int):
        return otio.opentime.TimeRange(rt(start), rt(dur))

    def ref(path: Path, available_f: int | None = None):
        r = otio.schema.ExternalReference(target_url=Path(path).resolve().as_uri())
        if available_f:
            r.available_range = rng(0, available_f)
        return r

    # --- picture: [opening card] shots [end card], on the cumulative frame grid --------------
    segments: list[tuple[str, object]] = []
    if lead:
        segments.append(("opening", card_clips[0]))
    segments += [("shot", (shot, clip)) for shot, clip in zip(shotlist.shots, cut.clips)]
    if tail:
        segments.append(("end", card_clips[1]))
    lengths = ([lead] if lead else []) + [s.duration_s for s in shotlist.shots] + ([tail] if tail else [])
    bounds = frame_bounds(lengths, fps)
    if abs(bounds[-1] - total_f) > 1:
        raise ValueError(f"the shots and cards last {bounds[-1]} frames but the episode {total_f}")
    bounds[-1] = total_f  # the episode's own length wins a half-frame disagreement

    video = otio.schema.Track(name="video", kind=otio.schema.TrackKind.Video)
    for (kind, item), a, b in zip(segments, bounds, bounds[1:]):
        if b <= a:
            continue  # a shot shorter than half a frame has no frame of its own
        if kind == "shot":
            shot, clip = item
            video.append(otio.schema.Clip(
                name=shot.id, media_reference=ref(clip), source_range=rng(0, b - a),
                metadata={"dramaforge": {"id": shot.id, "size": shot.size, "camera": shot.camera,
                                         "characters": list(shot.characters), "prompt": shot.prompt,
                                         "transition": shot.transition, "duration_s": shot.duration_s}}))
        elif item is not None:
            video.append(otio.schema.Clip(name=f"{kind} card", media_reference=ref(item),
                                          source_range=rng(0, b - a),
                                          metadata={"dramaforge": {"card": kind}}))
        else:
            video.append(otio.schema.Gap(name=f"{kind} card", source_range=rng(0, b - a)))

    # --- sound: dialogue, music, effects, each laid at its start with gaps between -----------
    dialogue = [(ln.start_s, ln.end_s, otio.schema.Clip(
        name=f"{ln.shot_id}#{ln.index + 1} {ln.character}", media_reference=ref(wav, _frames(_length_s(wav), fps)),
        metadata={"dramaforge": {"shot": ln.shot_id, "line": ln.index, "character": ln.character,
                                 "text": ln.text}}))
        for ln, wav in zip(cut.lines, cut.speech)]
    music = [(sp.start_s, sp.end_s, otio.schema.Clip(
        name=Path(sp.file).name, media_reference=ref(sp.file),  # looped to fit: no available range
        metadata={"dramaforge": {"kind": "music"}})) for sp in cut.music]
    effects = []
    for e in cut.effects:
        length = _length_s(e.file)
        effects.append((e.start_s, e.start_s + length, otio.schema.Clip(
            name=Path(e.file).name, media_reference=ref(e.file, _frames(length, fps)),
            metadata={"dramaforge": {"kind": "sfx"}})))

    tracks = [video, *_lanes(otio, "dialogue", dialogue, fps, total_f), *_lanes(otio, "music", music, fps, total_f),
              *_lanes(otio, "sfx", effects, fps, total_f)]

    name = f"{title} {shotlist.id}" + (f" {shotlist.title}" if shotlist.title else "")
    timeline = otio.schema.Timeline(name=name, global_start_time=rt(0), metadata={"dramaforge": {
        "episode": shotlist.episode, "title": shotlist.title, "cut_key": cut.key, "fps": fps,
        "duration_s": cut.duration_s}})
    timeline.tracks.extend(tracks)

    # --- markers on the timeline (the stack): every subtitle cue and every text card ----------
    for ln in cut.lines:
        a, b = _span(ln.start_s, ln.end_s, fps)
        timeline.tracks.markers.append(otio.schema.Marker(
            name=ln.text, marked_range=rng(a, b - a), color=otio.schema.MarkerColor.YELLOW,
            metadata={"dramaforge": {"kind": "subtitle", "shot": ln.shot_id, "character": ln.character}}))
    for start, end, text in cut.cards:
        a, b = _span(start, end, fps)
        timeline.tracks.markers.append(otio.schema.Marker(
            name=text, marked_range=rng(a, b - a), color=otio.schema.MarkerColor.CYAN,
            metadata={"dramaforge": {"kind": "card"}}))

    def check(tmp: Path) -> None:  # never move a file in that OTIO cannot read back
        back = otio.adapters.read_from_file(str(tmp), adapter_name="otio_json")
        if back.video_tracks()[0].duration().to_frames() != total_f:
            raise ValueError("the written timeline's picture track has the wrong length")

    with atomic_path(out_path, validate=check) as tmp:
        otio.adapters.write_to_file(timeline, str(tmp), adapter_name="otio_json")


def _frames(seconds: float, fps: int) -> int:
    """Whole frames that hold a file of `seconds` (its last, partial frame counts)."""
    return max(1, math.ceil(seconds * fps - 1e-6))


def _span(start_s: float, end_s: float, fps: int) -> tuple[int, int]:
    """Start and end frames of a timed event, at least one frame long."""
    a = to_frames(start_s, fps)
    return a, max(a + 1, to_frames(end_s, fps))


def _length_s(path: Path) -> float:
    """A sound file's length: the WAV header when it is one (exact, no decoder), else PyAV."""
    path = Path(path)
    if path.suffix.lower() == ".wav":
        try:
            with wave.open(str(path), "rb") as w:
                return w.getnframes() / float(w.getframerate())
        except (wave.Error, EOFError):
            pass  # WAV float or extensible: PyAV reads those
    from stages.core.media import probe

    return probe(path).duration_s


def _lanes(otio, name: str, events: list, fps: int, total_f: int) -> list:
    """Audio tracks `name`, `name 2`, ... holding `events`: a track cannot hold two clips at once,
    and effects may overlap (two starting with one shot), so an overlapping event opens a lane."""
    tracks, rest = [], events
    while True:
        track, rest = _audio_track(otio, name if not tracks else f"{name} {len(tracks) + 1}", rest, fps, total_f)
        tracks.append(track)
        if not rest:
            return tracks


def _audio_track(otio, name: str, events: list, fps: int, total_f: int):
    """One audio track of `events` (start_s, end_s, clip) with gaps between; returns the track and
    the events that overlap one already placed (for another lane). Nothing runs past the episode."""
    track = otio.schema.Track(name=name, kind=otio.schema.TrackKind.Audio)
    cursor, rest = 0, []
    for start_s, end_s, clip in sorted(events, key=lambda e: e[0]):
        a, b = _span(start_s, end_s, fps)
        b = min(b, total_f)
        if a < cursor:
            # Rounding may nudge a line one frame into the one before: start it where that ends.
            if cursor - a <= 1 and b > cursor:
                a = cursor
            else:
                rest.append((start_s, end_s, clip))
                continue
        have = clip.media_reference.available_range
        if have is not None:
            b = min(b, a + have.duration.to_frames())  # rounding must not reach past the file
        if b <= a:
            continue  # starts at or after the episode's end: not heard in the mix either
        if a > cursor:
            track.append(otio.schema.Gap(source_range=otio.opentime.TimeRange(
                otio.opentime.RationalTime(0, fps), otio.opentime.RationalTime(a - cursor, fps))))
        clip.source_range = otio.opentime.TimeRange(otio.opentime.RationalTime(0, fps),
                                                    otio.opentime.RationalTime(b - a, fps))
        track.append(clip)
        cursor = b
    return track, rest
