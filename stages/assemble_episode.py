"""Shot clips + subtitles + audio -> one episode mp4, in a single ffmpeg pass.

Concatenate with the concat demuxer (no per-shot decode graph), burn the ASS subtitles with the
bundled CJK font, lay the mixed audio, and encode once: H.264 High yuv420p, AAC 48 kHz, faststart.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from stages.backends.registry import make_video_backend
from stages.conform_shot import conform_clip, conform_ops
from stages.core.artifacts import atomic_path, partial_file
from stages.core.fonts import fonts_dir
from stages.core.media import escape_filter_value, run_ffmpeg, video_validator
from stages.core.paths import BuildPaths
from stages.generate_shot import generate_shot
from stages.schema import Project
from stages.units import Cut


def episode_clips(cut: Cut, project: Project, paths: BuildPaths) -> list[Path]:
    """The clips the episode concatenates: card backgrounds (drawn, free), then every shot,
    conformed where its format or its transition needs it."""
    cards = [c for c in (cut.opening, cut.ending) if c is not None]
    drawn = {c.path: generate_shot(c.request, make_video_backend(None, "animatic"), c.path).path for c in cards}
    out = [drawn[cut.opening.path]] if cut.opening is not None else []
    for i, (clip, dur, op) in enumerate(zip(cut.clips, cut.durations, conform_ops(cut.transitions))):
        out.append(conform_clip(clip, dur, project, paths, previous=cut.clips[i - 1] if i else None, **op))
    if cut.ending is not None:
        out.append(drawn[cut.ending.path])
    return out


def assemble_episode(shot_clips: list[Path], subtitles_ass: Path, audio_wav: Path, duration_s: float,
                     project: Project, out_mp4: Path) -> None:
    """Write the finished episode; validated (size, duration ±1 frame, audio) before it is moved in."""
    # Named like every partial file, so a restart after kill -9 sweeps it too.
    fd, concat = partial_file(out_mp4.parent, out_mp4.stem, ".txt", tag="concat")
    list_name = str(concat)
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
