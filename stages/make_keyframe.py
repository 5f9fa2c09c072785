"""A shot -> its first frame (a keyframe) for image-to-video backends, conditioned on the
characters' reference sheets."""

from __future__ import annotations

from dataclasses import replace

from stages.backends.base import ImageBackend, ImageRequest, ShotRequest
from stages.core.artifacts import atomic_path, is_done
from stages.core.media import image_validator
from stages.units import KeyframeUnit


def keyframe_request(shot: ShotRequest) -> ImageRequest:
    refs = tuple(p for f in shot.figures for p in f.references)
    return ImageRequest(purpose="keyframe", prompt=shot.prompt, negative_prompt=shot.negative_prompt,
                        width=shot.width, height=shot.height, seed=shot.seed, references=refs,
                        figures=tuple(replace(f, speaking=False) for f in shot.figures),
                        location=shot.location, time=shot.time, size=shot.size)


def make_keyframe(keyframe: KeyframeUnit, backend: ImageBackend) -> bool:
    """Make (or reuse) the keyframe at its content-addressed path; whether it was made now."""
    r = keyframe.request
    check = image_validator(width=r.width, height=r.height)
    if is_done(keyframe.path, check):
        return False
    keyframe.path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(keyframe.path, validate=check) as tmp:
        backend.generate_image(r, tmp)
    return True
