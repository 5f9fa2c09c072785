"""Shot clips + subtitles + audio -> one episode mp4, in a single ffmpeg pass.

Concatenate with the concat demuxer (no per-shot decode graph), draw the transitions on that one
timeline, burn the ASS subtitles with the bundled CJK font, lay the mixed audio, and encode once:
H.264 High yuv420p, AAC 48 kHz, faststart. That encode is the only lossy one between a shot's clip
and the episode: a clip is conformed (near-losslessly) only when its format or length is off.

On the timeline (frames counted from the first clip, so every position is exact; see
`transition_graph`), with the frames of stages.conform_shot's transitions:
  dissolve  the outgoing shot's last frame, held, cross-fades into the incoming shot's first
            `DISSOLVE_S` (blend on those frames only; the concat demuxer still reads one file at a
            time, and the filters that hold frame buffers do not multiply with the dissolves);
  dip       a fade to black over the outgoing shot's last `DIP_S` and from black over the incoming
            shot's first `DIP_S` (fade filters enabled only on those frames).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from stages.backends.registry import make_video_backend
from stages.conform_shot import conform_clip, conform_ops, shot_frames
from stages.core.artifacts import atomic_path, partial_file
from stages.core.fonts import fonts_dir
from stages.core.media import escape_filter_value, ffmpeg_running, probe, run_ffmpeg, video_validator
from stages.core.paths import BuildPaths
from stages.generate_shot import generate_shot
from stages.schema import Project
from stages.units import Cut


class EpisodeClip(type(Path())):
    """A clip of the episode with what the episode pass does to it: its frame count on the timeline
    and its transitions (seconds). A Path, so it goes wherever the clip's path went."""

    frames = 0
    fade_in = fade_out = dissolve = 0.0

    @classmethod
    def of(cls, path: Path, frames: int, fade_in: float = 0.0, fade_out: float = 0.0,
           dissolve: float = 0.0) -> "EpisodeClip":
        clip = cls(path)
        clip.frames, clip.fade_in, clip.fade_out, clip.dissolve = frames, fade_in, fade_out, dissolve
        return clip

    def __reduce__(self):  # pickled (a task runner in another process) with what it carries
        return _episode_clip, (str(self), self.frames, self.fade_in, self.fade_out, self.dissolve)


def _episode_clip(path: str, frames: int, fade_in: float, fade_out: float, dissolve: float) -> EpisodeClip:
    return EpisodeClip.of(Path(path), frames, fade_in, fade_out, dissolve)


def episode_clips(cut: Cut, project: Project, paths: BuildPaths) -> list[Path]:
    """The clips the episode concatenates: card backgrounds (drawn, free), then every shot,
    conformed where its format or length needs it, each with the transitions the episode pass draws."""
    cards = [c for c in (cut.opening, cut.ending) if c is not None]
    drawn = {c.path: generate_shot(c.request, make_video_backend(None, "animatic"), c.path).path for c in cards}

    def card(path: Path) -> EpisodeClip:
        info = probe(path)
        return EpisodeClip.of(path, info.frames or shot_frames(info.duration_s, project.fps))

    out = [card(drawn[cut.opening.path])] if cut.opening is not None else []
    for clip, dur, op in zip(cut.clips, cut.durations, conform_ops(cut.transitions)):
        out.append(EpisodeClip.of(conform_clip(clip, dur, project, paths), shot_frames(dur, project.fps), **op))
    if cut.ending is not None:
        out.append(card(drawn[cut.ending.path]))
    return out


def transition_graph(clips: list[Path], fps: int) -> str | None:
    """The filters that draw the clips' transitions on the concatenated stream ([0:v] in, no label
    out), or None when every join is a cut. A plain Path is a cut-joined clip.

    A filter instance per dissolve that draws pixels would keep its own frame buffers to the end of
    the pass (tens of MB each at 1080x1920, measured with `xfade`), so those do not grow with the
    dissolves: a second copy of the stream has each dissolve window's frames replaced by the outgoing
    shot's last frame (`trim` + `loop`: references, no pixels), and one `blend` per place in a window
    (the j-th frame of every window: j/D of the incoming frame, the rest the held one, as `xfade`'s
    fade does, but in 4:2:0) mixes the two on those frames only. Dips are `fade`s on their frames only.
    """
    ops = [(getattr(c, "frames", 0), getattr(c, "fade_in", 0.0), getattr(c, "fade_out", 0.0),
            getattr(c, "dissolve", 0.0)) for c in clips]
    if not any(fi or fo or d for _, fi, fo, d in ops):
        return None
    if not all(f > 0 for f, *_ in ops):
        raise ValueError("a clip with a transition needs every clip's frame count")
    starts = [0]
    for f, *_ in ops:
        starts.append(starts[-1] + f)
    half = 0.5 / fps  # frames are picked by their centres: t = n / fps exactly (settb, setpts=N)
    graph = f"[0:v]settb=1/{fps},setpts=N"
    windows = [(starts[i], min(round(d * fps), f), round(d * fps)) for i, (f, _, _, d) in enumerate(ops) if d and i]
    if windows:
        # the held copy: the stream cut at each window, each window the outgoing last frame repeated
        pieces, chains, at = [], [], 0
        for k, (start, length, _) in enumerate(windows):
            if start > at:
                pieces.append(f"trim=start_frame={at}:end_frame={start}")
            pieces.append(f"trim=start_frame={start - 1}:end_frame={start},loop=loop={length - 1}:size=1:start=0")
            at = start + length
        if at < starts[-1]:
            pieces.append(f"trim=start_frame={at}")
        chains.append(f"{graph},split={len(pieces) + 1}[main]" + "".join(f"[p{k}]" for k in range(len(pieces))))
        chains += [f"[p{k}]{piece},setpts=PTS-STARTPTS[q{k}]" for k, piece in enumerate(pieces)]
        chains.append("".join(f"[q{k}]" for k in range(len(pieces)))
                      + f"concat=n={len(pieces)}:v=1:a=0,settb=1/{fps},setpts=N[held]")
        mixes: dict[tuple[int, int], list[int]] = {}  # (j, D) -> the frames at that place in their window
        for start, length, full in windows:
            for j in range(length):
                mixes.setdefault((j, full), []).append(start + j)
        chains.append("[held]split=" + str(len(mixes)) + "".join(f"[h{m}]" for m in range(len(mixes))))
        at = "[main]"
        for m, ((j, full), frames) in enumerate(sorted(mixes.items())):
            when = _any([f"lt(abs(t-{n / fps:.6f}),{half:.6f})" for n in frames])
            chains.append(f"{at}[h{m}]blend=all_mode=normal:all_opacity={j / full:.6f}:enable='{when}'[mix{m}]")
            at = f"[mix{m}]"
        graph = ";".join(chains) + f";{at}null"
    fades = []
    for i, (f, fade_in, fade_out, _) in enumerate(ops):
        a, b = starts[i] / fps, starts[i + 1] / fps
        if fade_in:
            fades.append(f"fade=t=in:st={a:.6f}:d={fade_in}:enable='between(t,{a - half:.6f},{a + fade_in:.6f})'")
        if fade_out:
            st = max(b - fade_out, a)
            fades.append(f"fade=t=out:st={st:.6f}:d={fade_out}:enable='between(t,{st - half:.6f},{b - half:.6f})'")
    return graph + ("," + ",".join(fades) if fades else "")


def _any(terms: list[str]) -> str:
    """The sum of `terms` as a balanced tree: ffmpeg refuses a flat chain of about 100 and more."""
    if len(terms) <= 8:
        return "+".join(terms)
    return f"({_any(terms[:len(terms) // 2])})+({_any(terms[len(terms) // 2:])})"


def assemble_episode(shot_clips: list[Path], subtitles_ass: Path, audio_wav: Path, duration_s: float,
                     project: Project, out_mp4: Path, mix: Callable[[], object]) -> None:
    """Write the finished episode; validated (size, duration ±1 frame, audio) before it is moved in.

    `mix` makes `audio_wav` (the sound mix). It runs while ffmpeg encodes the pictures alone, its AAC is
    encoded beside them, and the two are joined without another encode: the mix costs no wall time,
    where one pass would wait for it (ffmpeg reads its inputs in step: a late one stalls all)."""
    # Named like every partial file, so a restart after kill -9 sweeps it too.
    fd, concat = partial_file(out_mp4.parent, out_mp4.stem, ".txt", tag="concat")
    list_name = str(concat)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for clip in shot_clips:
            f.write("file '" + str(clip.resolve()).replace("'", "'\\''") + "'\n")
    burn = (f"subtitles=filename={escape_filter_value(str(subtitles_ass.resolve()))}"
            f":fontsdir={escape_filter_value(str(fonts_dir()))},format=yuv420p")
    transitions = transition_graph(shot_clips, project.fps)
    video = ["-vf", burn]
    graph_name = None
    if transitions is not None:  # a file: a long episode's graph can pass what one argument may hold
        fd, graph = partial_file(out_mp4.parent, out_mp4.stem, ".txt", tag="graph")
        graph_name = str(graph)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"{transitions},{burn}[v]")
        video = ["-/filter_complex", graph_name]
    check = video_validator(width=project.width, height=project.height,
                            min_duration_s=duration_s - 1.0 / project.fps, audio=True)
    e = project.encoding
    # One graph for the whole timeline: a clip tagged with other colour metadata must not restart it
    # (the frame counts the transitions are placed by would start again).
    pictures = ["-reinit_filter", "0", "-f", "concat", "-safe", "0", "-i", list_name]
    encode = [*video, "-map", "0:v:0" if transitions is None else "[v]", "-r", str(project.fps), "-c:v", "libx264",
              "-profile:v", "high", "-preset", e.x264_preset, "-crf", str(e.crf), "-pix_fmt", "yuv420p"]
    sound = ["-c:a", "aac", "-b:a", f"{e.audio_kbps}k", "-ar", "48000", "-ac", "2"]
    length = ["-t", f"{duration_s:.6f}"]
    parts: list[Path] = []
    try:
        with atomic_path(out_mp4, validate=check) as tmp:
            for suffix in (".mp4", ".m4a"):
                fd, part = partial_file(out_mp4.parent, out_mp4.stem, suffix, tag="part")
                os.close(fd)
                parts.append(part)
            with ffmpeg_running([*pictures, *encode, "-an", *length, str(parts[0])],
                                what=f"encoding the pictures of {out_mp4.name}"):
                mix()
                run_ffmpeg(["-i", str(audio_wav), "-map", "0:a:0", *sound, *length, str(parts[1])],
                           what=f"encoding the sound of {out_mp4.name}")
            run_ffmpeg(["-i", str(parts[0]), "-i", str(parts[1]), "-map", "0:v:0", "-map", "1:a:0", "-c", "copy",
                        "-movflags", "+faststart", str(tmp)], what=f"assembling {out_mp4.name}")
    finally:
        for name in filter(None, (list_name, graph_name, *parts)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
