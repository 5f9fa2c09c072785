"""One planned shot -> a validated video clip, content-addressed by everything that determines it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from stages.artifacts import atomic_path, file_sha256, is_done, spec_hash
from stages.backends.base import Figure, ShotRequest, VideoBackend
from stages.media import video_validator
from stages.schema import Project, Shot


@dataclass(frozen=True)
class ShotResult:
    path: Path
    key: str
    reused: bool
    placeholder: bool = False


def shot_request(shot: Shot, project: Project, project_dir: Path, names: dict[str, str]) -> ShotRequest:
    """What the video backend is asked for: the shot, its figures (with references), size, seed."""
    speaker = shot.lines[0].character if shot.lines else None
    figures = []
    for cid in shot.characters:
        try:
            c = project.character(cid)
            ref = (project_dir / c.reference_image) if c.reference_image else None
            figures.append(Figure(cid, c.name, c.description, ref, speaking=cid == speaker))
        except KeyError:  # not in the cast (warned by `check`): drawn from the name alone
            figures.append(Figure(cid, names.get(cid, cid), names.get(cid, cid), None, speaking=cid == speaker))
    seed = (project.seed * 1_000_003 + int(hashlib.sha256(shot.id.encode()).hexdigest()[:8], 16)) % 2**31
    return ShotRequest(shot_id=shot.id, prompt=shot.prompt, size=shot.size, camera=shot.camera,
                       location=shot.location, time=shot.time, action=shot.action,
                       caption=f"{shot.id} · {shot.size} · {shot.camera}", figures=tuple(figures),
                       duration_s=shot.duration_s, width=project.width, height=project.height,
                       fps=project.fps, seed=seed, style=project.style,
                       # text is burned in by the assembly: the picture under a card stays clean
                       extra={"under_card": True} if shot.card and not shot.lines and not shot.characters else {})


def shot_key(request: ShotRequest, backend: VideoBackend) -> str:
    spec = {k: v for k, v in request.__dict__.items() if k != "figures"}
    spec["figures"] = [{"id": f.id, "name": f.name, "description": f.description, "speaking": f.speaking,
                        "reference_sha256": file_sha256(f.reference_image) if f.reference_image
                        and f.reference_image.exists() else None} for f in request.figures]
    return spec_hash("shot", {"request": spec, "backend": backend.identity()})


def generate_shot(request: ShotRequest, backend: VideoBackend, shots_dir: Path) -> ShotResult:
    """Make the shot's clip, or reuse the valid one already made for exactly this request."""
    key = shot_key(request, backend)
    path = shots_dir / f"{key}.mp4"
    check = video_validator(width=request.width, height=request.height,
                            min_duration_s=request.duration_s - 1.5 / request.fps)
    if is_done(path, check):
        return ShotResult(path, key, reused=True)
    with atomic_path(path, validate=check) as tmp:
        backend.generate(request, tmp)
    return ShotResult(path, key, reused=False)


PLACEHOLDER_REASON = "accepted as a placeholder"


def placeholder_request(request: ShotRequest, reason: str | None) -> ShotRequest:
    """The card that stands in for an accepted failed shot: same id, length and size."""
    from dataclasses import replace

    return replace(request, size="insert", camera="static", figures=(),
                   action=f"PLACEHOLDER {request.shot_id}: {reason or PLACEHOLDER_REASON}"[:300],
                   caption=f"{request.shot_id} · placeholder")


def placeholder_key(request: ShotRequest, reason: str | None) -> str:
    from stages.backends.animatic import AnimaticBackend

    return shot_key(placeholder_request(request, reason), AnimaticBackend())


def make_placeholder(request: ShotRequest, shots_dir: Path, reason: str | None) -> ShotResult:
    """A titled card of the shot's exact length, so its episode can assemble without it."""
    from dataclasses import replace

    from stages.backends.animatic import AnimaticBackend

    return replace(generate_shot(placeholder_request(request, reason), AnimaticBackend(), shots_dir),
                   placeholder=True)
