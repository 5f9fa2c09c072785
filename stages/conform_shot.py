"""A shot clip -> one that concatenates cleanly into its episode; its transitions, for the episode pass.

Clips from our own backends already match the project (size, fps, yuv420p, H.264, the shot's
frame count) and go into the episode untouched. A clip that does not (a model's 24 fps, a
provider's 720x1280, a user's file, a take a frame short) is re-encoded once here, near-losslessly
and content-addressed, so the episode itself stays one sequential concat-demuxer pass (memory flat
however many shots) and the one lossy encode of every shot is the episode's.

Transitions are not baked in here: `conform_ops` says what each shot's transitions ask of it and
the episode pass draws them on its timeline (see `stages.assemble_episode`). They keep every
shot's planned length (the sound was timed to it): a dip to black fades the outgoing shot's tail
and the incoming shot's head; a cross-dissolve blends the outgoing shot's last frame into the
incoming shot's head.
"""

from __future__ import annotations

from pathlib import Path

from stages.core.artifacts import atomic_path, is_done, spec_hash
from stages.core.media import probe, run_ffmpeg, video_validator
from stages.core.paths import BuildPaths
from stages.schema import Project

DIP_S = 0.3  # each side of a dip to black
DISSOLVE_S = 0.5
# The intermediate's encoding: x264 at QP 1, about 72 dB PSNR on our drawn shots (a difference
# of one level in a few pixels): no visible loss, and a fraction of the episode encode's time.
# Not QP 0 (true lossless): FFmpeg's H.264 decoder misdecodes a lossless (transform-bypass)
# clip that follows a lossy one in one concat stream; tests/test_assembly.py checks this choice.
NEAR_LOSSLESS = ("-preset", "ultrafast", "-qp", "1")


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


def shot_frames(duration_s: float, fps: int) -> int:
    """The frames a shot of `duration_s` has on the episode's timeline."""
    return max(1, round(duration_s * fps))


def matches(clip: Path, project: Project, frames: int | None = None) -> bool:
    """Whether a clip can go into the episode's concat as it is (and, given `frames`, is that long)."""
    info = probe(clip)
    return (info.width, info.height) == (project.width, project.height) and info.video_codec == "h264" \
        and info.pix_fmt == "yuv420p" and abs(info.fps - project.fps) < 0.01 \
        and (frames is None or info.frames == frames)


def conform_clip(clip: Path, duration_s: float, project: Project, paths: BuildPaths) -> Path:
    """The clip at the project's size and fps, exactly `duration_s` long (trimmed, or its last frame held).

    Returns `clip` itself when nothing needs doing. `clip` is a content-addressed file, so its
    name stands for its contents in the key. (An intermediate of the cut, keyed here: whether a
    clip needs conforming at all is only known from the file itself.)
    """
    w, h, fps = project.width, project.height, project.fps
    frames = shot_frames(duration_s, fps)
    if matches(clip, project, frames):
        return clip
    key = spec_hash("conform", {"clip": clip.name, "duration_s": duration_s, "size": [w, h], "fps": fps,
                                "encode": " ".join(NEAR_LOSSLESS)})
    out = paths.conformed_clip(key)
    check = video_validator(width=w, height=h, min_duration_s=duration_s - 1.0 / fps)
    if is_done(out, check):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    vf = (f"scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},setsar=1,fps={fps},format=yuv420p,"
          f"tpad=stop_mode=clone:stop_duration={duration_s:.3f},trim=end_frame={frames},setpts=PTS-STARTPTS")
    with atomic_path(out, validate=check) as tmp:
        run_ffmpeg(["-i", str(clip), "-map", "0:v:0", "-vf", vf, "-frames:v", str(frames), "-r", str(fps),
                    "-c:v", "libx264", *NEAR_LOSSLESS, "-g", str(fps), "-pix_fmt", "yuv420p",
                    "-an", "-movflags", "+faststart", str(tmp)], what=f"conforming {clip.name}")
    return out
