"""A shot clip -> one that concatenates cleanly into its episode, with its transition baked in.

Clips from our own backends already match the project (size, fps, SAR, yuv420p, H.264) and go
into the episode untouched. A clip that does not (a model's 24 fps, a provider's 720x1280, a
user's file) or that has a transition is re-encoded once here, content-addressed, so the
episode itself stays one sequential concat-demuxer pass: memory flat however many shots.

Transitions keep every shot's planned length (the sound was timed to it): a dip to black fades
the outgoing shot's tail and the incoming shot's head; a cross-dissolve blends the outgoing
shot's last frame into the incoming shot's head.
"""

from __future__ import annotations

from pathlib import Path

from stages.core.artifacts import atomic_path, is_done, spec_hash
from stages.core.media import probe, run_ffmpeg, video_validator
from stages.core.paths import BuildPaths
from stages.schema import Project

DIP_S = 0.3  # each side of a dip to black
DISSOLVE_S = 0.5


def conform_ops(transitions: list[str]) -> list[dict]:
    """Per shot, what its transitions ask of it: fade in/out for dips, a dissolve from the previous shot."""
    ops = [dict(fade_in=0.0, fade_out=0.0, dissolve=0.0) for _ in transitions]
    for i, t in enumerate(transitions):
        if i == 0 or t == "cut":
            continue
        if t == "dip":
            ops[i]["fade_in"] = DIP_S
            ops[i - 1]["fade_out"] = DIP_S
        elif t == "dissolve":
            ops[i]["dissolve"] = DISSOLVE_S
    return ops


def matches(clip: Path, project: Project) -> bool:
    """Whether a clip can go into the episode's concat as it is."""
    info = probe(clip)
    return (info.width, info.height) == (project.width, project.height) and info.video_codec == "h264" \
        and info.pix_fmt == "yuv420p" and abs(info.fps - project.fps) < 0.01


def conform_clip(clip: Path, duration_s: float, project: Project, paths: BuildPaths, *, fade_in: float = 0.0,
                 fade_out: float = 0.0, dissolve: float = 0.0, previous: Path | None = None) -> Path:
    """The clip at the project's size and fps, exactly `duration_s` long, with the given transitions.

    Returns `clip` itself when nothing needs doing. `clip` and `previous` are content-addressed
    files, so their names stand for their contents in the key. (An intermediate of the cut, keyed
    here: whether a clip needs conforming at all is only known from the file itself.)
    """
    if not (fade_in or fade_out or dissolve) and matches(clip, project):
        return clip
    e = project.encoding
    key = spec_hash("conform", {"clip": clip.name, "previous": previous.name if previous and dissolve else None,
                                "duration_s": duration_s, "size": [project.width, project.height],
                                "fps": project.fps, "fade_in": fade_in, "fade_out": fade_out, "dissolve": dissolve,
                                "crf": e.crf, "preset": e.x264_preset})
    out = paths.conformed_clip(key)
    check = video_validator(width=project.width, height=project.height, min_duration_s=duration_s - 1.0 / project.fps)
    if is_done(out, check):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    w, h, fps = project.width, project.height, project.fps
    frames = max(1, round(duration_s * fps))
    norm = (f"scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},setsar=1,fps={fps},format=yuv420p,"
            f"tpad=stop_mode=clone:stop_duration={duration_s:.3f},trim=end_frame={frames},setpts=PTS-STARTPTS")
    chain = []
    if fade_in:
        chain.append(f"fade=t=in:st=0:d={fade_in}")
    if fade_out:
        chain.append(f"fade=t=out:st={max(duration_s - fade_out, 0):.4f}:d={fade_out}")
    inputs = ["-i", str(clip)]
    if dissolve and previous is not None:
        # the outgoing shot's last frame, held for the dissolve, blended into this shot's head
        inputs += ["-sseof", "-0.5", "-i", str(previous)]
        graph = (f"[1:v]{norm.split(',tpad')[0]},reverse,trim=end_frame=1,"
                 f"tpad=stop_mode=clone:stop_duration={dissolve},setpts=PTS-STARTPTS[held];"
                 f"[0:v]{norm}[shot];"
                 f"[held][shot]xfade=transition=fade:duration={dissolve}:offset=0"
                 + ("," + ",".join(chain) if chain else "") + f",trim=end_frame={frames}[v]")
    else:
        graph = f"[0:v]{norm}" + ("," + ",".join(chain) if chain else "") + "[v]"
    with atomic_path(out, validate=check) as tmp:
        run_ffmpeg([*inputs, "-filter_complex", graph, "-map", "[v]", "-frames:v", str(frames), "-r", str(fps),
                    "-c:v", "libx264", "-preset", e.x264_preset, "-crf", str(e.crf), "-pix_fmt", "yuv420p",
                    "-an", "-movflags", "+faststart", str(tmp)], what=f"conforming {clip.name}")
    return out
