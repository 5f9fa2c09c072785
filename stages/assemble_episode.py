"""Shot clips + subtitles + audio -> one episode mp4, in a single ffmpeg pass.

Concatenate with the concat demuxer (no per-shot decode graph), burn the ASS subtitles with the
bundled CJK font, lay the mixed audio, and encode once: H.264 High yuv420p, AAC 48 kHz, faststart.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from stages.artifacts import atomic_path, spec_hash
from stages.fonts import fonts_dir
from stages.media import escape_filter_value, run_ffmpeg, video_validator
from stages.mix_audio import Effect, MusicSpan, cue_spec, sound_cues, voice_treatment
from stages.schema import Project, ShotList
from stages.time_shots import TimedLine, card_times, timeline


CRF, PRESET = 20, "veryfast"


@dataclass(frozen=True)
class Cut:
    """Everything one finished episode is made of, with its content address `key`."""

    key: str
    duration_s: float
    clips: list[Path]
    lines: list[TimedLine]
    speech: list[Path]  # one WAV per entry of `lines`
    cards: list[tuple[float, float, str]]
    music: list[MusicSpan]
    effects: list[Effect]


def plan_cut(timed: ShotList, clip_keys: list[str], clips: list[Path], speech: dict[tuple[str, int], tuple[str, Path]],
             project: Project, project_dir: Path) -> Cut:
    """The cut of a timed shot list: `speech` maps (shot id, line index) to (speech key, wav)."""
    lines = timeline(timed, project)
    spans, effects = sound_cues(timed, project, project_dir)
    cards = card_times(timed)
    key = spec_hash("episode", {
        "clips": clip_keys, "duration_s": timed.duration_s, "cards": [list(c) for c in cards],
        "lines": [[ln.start_s, speech[ln.shot_id, ln.index][0], ln.text, ln.character,
                   voice_treatment(ln.extension, project)] for ln in lines],
        "sound": cue_spec(spans, effects, project.audio.music),
        "picture": {"width": project.width, "height": project.height, "fps": project.fps,
                    "crf": CRF, "preset": PRESET},
        "subtitles": project.subtitles.model_dump(mode="json"),
        "loudness": list(project.audio.target), "voice_over": project.audio.voice_over})
    return Cut(key, timed.duration_s, list(clips), lines, [speech[ln.shot_id, ln.index][1] for ln in lines],
               cards, spans, effects)


def assemble_episode(shot_clips: list[Path], subtitles_ass: Path, audio_wav: Path, duration_s: float,
                     project: Project, out_mp4: Path, *, crf: int = CRF, preset: str = PRESET) -> None:
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
    try:
        with atomic_path(out_mp4, validate=check) as tmp:
            run_ffmpeg(["-f", "concat", "-safe", "0", "-i", list_name, "-i", str(audio_wav),
                        "-map", "0:v:0", "-map", "1:a:0", "-vf", vf, "-r", str(project.fps),
                        "-c:v", "libx264", "-profile:v", "high", "-preset", preset, "-crf", str(crf),
                        "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "192k", "-ar", "48000", "-ac", "2",
                        "-t", f"{duration_s:.6f}", "-movflags", "+faststart", str(tmp)],
                       what=f"assembling {out_mp4.name}")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(list_name)
