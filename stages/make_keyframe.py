"""A shot -> its first frame (a keyframe) for image-to-video backends, conditioned on the
characters' reference sheets, content-addressed like every other artifact."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from stages.core.artifacts import atomic_path, is_done, spec_hash
from stages.backends.base import ImageBackend, ImageRequest, ShotRequest
from stages.core.media import image_validator


def keyframe_request(shot: ShotRequest) -> ImageRequest:
    refs = tuple(p for f in shot.figures for p in f.references)
    return ImageRequest(purpose="keyframe", prompt=shot.prompt, negative_prompt=shot.negative_prompt,
                        width=shot.width, height=shot.height, seed=shot.seed, references=refs,
                        figures=tuple(replace(f, speaking=False) for f in shot.figures),
                        location=shot.location, time=shot.time, size=shot.size)


def keyframe_path(shot: ShotRequest, backend: ImageBackend, out_dir: Path) -> Path:
    """Where this shot's keyframe lives: named by the request (references by their own content
    names) and the backend, so it is known before it is made."""
    r = keyframe_request(shot)
    spec = {k: v for k, v in r.__dict__.items() if k not in ("figures", "references")}
    spec["figures"] = [[f.id, f.description] for f in r.figures]
    spec["references"] = [p.name for p in r.references]  # content-addressed names under build/characters
    return out_dir / f"{spec_hash('keyframe', {'request': spec, 'backend': backend.identity()})}.png"


def make_keyframe(shot: ShotRequest, backend: ImageBackend, out_dir: Path) -> tuple[Path, bool]:
    """Make (or reuse) the keyframe; returns its path and whether it was made now."""
    path = keyframe_path(shot, backend, out_dir)
    check = image_validator(width=shot.width, height=shot.height)
    if is_done(path, check):
        return path, False
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, validate=check) as tmp:
        backend.generate_image(keyframe_request(shot), tmp)
    return path, True
