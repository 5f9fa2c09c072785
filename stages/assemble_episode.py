"""Shot clips + subtitles + audio -> one episode mp4, in a single ffmpeg pass.

Concatenate with the concat demuxer (no per-shot decode graph), burn the ASS subtitles with the
bundled CJK font, lay the mixed audio, and encode once: H.264 High yuv420p, AAC 48 kHz, faststart.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from stages.core.artifacts import atomic_path, spec_hash
from stages.backends.base import ShotRequest
from stages.core.fonts import fonts_dir
from stages.core.media import escape_filter_value, run_ffmpeg, video_validator
from stages.mix_audio import Effect, MusicSpan, cue_spec, sound_cues, voice_treatment
from stages.schema import Project, ShotList
from stages.time_shots import TimedLine, card_times, timeline


END_TEXT = {"en": ("To be continued", "The End"), "zh": ("未完待续", "全剧终")}


@dataclass(frozen=True)
class Cut:
    """Everything one finished episode is made of, with its content address `key`.

    Times (lines, cards, music, effects) are on the episode's clock, after the opening card.
    """

    key: str
    duration_s: float  # the whole episode, cards included
    clips: list[Path]  # the story's shots, in order
    durations: list[float]  # each shot's planned length
    transitions: list[str]  # into each shot: cut, dissolve, dip
    lines: list[TimedLine]
    speech: list[Path]  # one WAV per entry of `lines`
    cards: list[tuple[float, float, str]]
    music: list[MusicSpan]
    effects: list[Effect]
    opening: ShotRequest | None = None  # the backgrounds of the title and end cards (the animatic draws them)
    ending: ShotRequest | None = None


def plan_cut(timed: ShotList, clip_keys: list[str], clips: list[Path], speech: dict[tuple[str, int], tuple[str, Path]],
             project: Project, project_dir: Path, *, series: str = "", episode_title: str = "",
             final: bool = False) -> Cut:
    """The cut of a timed shot list: `speech` maps (shot id, line index) to (speech key, wav).

    Adds the opening card (series title, episode number and title) and the end card.
    """
    c = project.cards
    lead = c.opening_s if c.opening and timed.shots else 0.0
    tail = c.end_s if c.end and timed.shots else 0.0
    story = timed.duration_s
    lines = [replace(ln, start_s=round(ln.start_s + lead, 4), end_s=round(ln.end_s + lead, 4))
             for ln in timeline(timed, project)]
    spans, effects = sound_cues(timed, project, project_dir)
    # the music runs under the cards too when the story starts or ends on it
    spans = [MusicSpan(0.0 if sp.start_s == 0 else sp.start_s + lead,
                       sp.end_s + lead + (tail if abs(sp.end_s - story) < 1e-6 else 0.0), sp.file) for sp in spans]
    effects = [Effect(e.start_s + lead, e.file) for e in effects]
    cards = [(round(a + lead, 4), round(b + lead, 4), t) for a, b, t in card_times(timed)]
    opening = ending = None
    first, last = (timed.shots[0], timed.shots[-1]) if timed.shots else (None, None)
    if lead:
        label = f"Episode {timed.episode}" if not project.language.lower().startswith("zh") else f"第{timed.episode}集"
        cards.insert(0, (0.0, lead, "\n".join(t for t in (series, label, episode_title) if t)))
        opening = _card_background(f"ep{timed.episode:02d}-opening", first, lead, project)
    if tail:
        words = END_TEXT.get(project.language.lower()[:2], END_TEXT["en"])
        cards.append((round(lead + story, 4), round(lead + story + tail, 4), c.end_text or words[1 if final else 0]))
        ending = _card_background(f"ep{timed.episode:02d}-end", last, tail, project)
    total = round(lead + story + tail, 6)
    e = project.encoding
    key = spec_hash("episode", {
        "clips": clip_keys, "duration_s": total, "cards": [list(x) for x in cards],
        "transitions": [s.transition for s in timed.shots],
        "lines": [[ln.start_s, speech[ln.shot_id, ln.index][0], ln.text, ln.character,
                   voice_treatment(ln.extension, project)] for ln in lines],
        "sound": cue_spec(spans, effects, project.audio.music),
        "picture": {"width": project.width, "height": project.height, "fps": project.fps,
                    "crf": e.crf, "preset": e.x264_preset, "audio_kbps": e.audio_kbps},
        "card_backgrounds": [r.location if r else None for r in (opening, ending)],
        "subtitles": project.subtitles.model_dump(mode="json"),
        "loudness": list(project.audio.target), "voice_over": project.audio.voice_over})
    return Cut(key, total, list(clips), [s.duration_s for s in timed.shots], [s.transition for s in timed.shots],
               lines, [speech[ln.shot_id, ln.index][1] for ln in lines], cards, spans, effects, opening, ending)


def _card_background(shot_id: str, near, duration_s: float, project: Project) -> ShotRequest:
    """A plain, drawn background for a title or end card: the place of the shot beside it."""
    return ShotRequest(shot_id=shot_id, prompt="", size="wide", camera="static", location=near.location,
                       time=near.time, action="", caption="", figures=(), duration_s=duration_s,
                       width=project.width, height=project.height, fps=project.fps, seed=0,
                       extra={"under_card": True})


def episode_clips(cut: Cut, project: Project, shots_dir: Path) -> list[Path]:
    """The clips the episode concatenates: card backgrounds (drawn, free), then every shot,
    conformed where its format or its transition needs it."""
    from stages.backends.animatic import AnimaticBackend
    from stages.conform_shot import conform_clip, conform_ops
    from stages.generate_shot import generate_shot

    out = []
    if cut.opening is not None:
        out.append(generate_shot(cut.opening, AnimaticBackend(), shots_dir).path)
    conformed = shots_dir.parent / "conformed"
    for i, (clip, dur, op) in enumerate(zip(cut.clips, cut.durations, conform_ops(cut.transitions))):
        out.append(conform_clip(clip, dur, project, conformed, previous=cut.clips[i - 1] if i else None, **op))
    if cut.ending is not None:
        out.append(generate_shot(cut.ending, AnimaticBackend(), shots_dir).path)
    return out


def assemble_episode(shot_clips: list[Path], subtitles_ass: Path, audio_wav: Path, duration_s: float,
                     project: Project, out_mp4: Path) -> None:
    """Write the finished episode; validated (size, duration ±1 frame, audio) before it is moved in."""
    # Named like every partial file, so a restart after kill -9 sweeps it too.
    fd, list_name = tempfile.mkstemp(prefix=f".{out_mp4.stem}.concat.", suffix=".part.txt", dir=out_mp4.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for clip in shot_clips:
            f.write("file '" + str(clip.resolve()).replace("'", "'\\''") + "'\n")
    vf = (f"subtitles=filename={escape_filter_value(str(subtitles_ass.resolve()))}"
          f":fontsdir={escape_filter_value(str(fonts_dir()))},format=yuv420p")
    check = video_validator(width=project.width, height=project.height,
                            min_duration_s=duration_s - 1.0 / project.fps, audio=True)
    e = project.encoding
    try:
        with atomic_path(out_mp4, validate=check) as tmp:
            run_ffmpeg(["-f", "concat", "-safe", "0", "-i", list_name, "-i", str(audio_wav),
                        "-map", "0:v:0", "-map", "1:a:0", "-vf", vf, "-r", str(project.fps),
                        "-c:v", "libx264", "-profile:v", "high", "-preset", e.x264_preset, "-crf", str(e.crf),
                        "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", f"{e.audio_kbps}k", "-ar", "48000", "-ac", "2",
                        "-t", f"{duration_s:.6f}", "-movflags", "+faststart", str(tmp)],
                       what=f"assembling {out_mp4.name}")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(list_name)
