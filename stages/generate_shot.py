"""One planned shot -> a validated video clip, content-addressed by everything that determines it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from stages.core.artifacts import atomic_path, file_sha256, is_done, spec_hash
from stages.backends.base import Figure, ShotRequest, VideoBackend
from stages.core.media import video_validator
from stages.schema import Project, Shot


@dataclass(frozen=True)
class ShotResult:
    path: Path
    key: str
    reused: bool
    placeholder: bool = False
    images_made: int = 0  # its keyframe, when the image backend made one for it now


def shot_request(shot: Shot, project: Project, project_dir: Path, names: dict[str, str],
                 references: dict[str, list[Path]] | None = None, keyframe: Path | None = None) -> ShotRequest:
    """What the video backend is asked for: the shot, its figures (this episode's look and reference
    sheet), prompts, size, seed, and the keyframe when the backend starts from one."""
    from stages.shot_prompts import motion_prompt, negative_prompt

    speaker = shot.lines[0].character if shot.lines else None
    figures = []
    for cid in shot.characters:
        try:
            c = project.character(cid)
            ref = (project_dir / c.reference_image) if c.reference_image else None
            figures.append(Figure(cid, c.name, c.look(shot.episode)[0], ref, speaking=cid == speaker,
                                  references=tuple((references or {}).get(cid, ()))))
        except KeyError:  # not in the cast (warned by `check`): drawn from the name alone
            figures.append(Figure(cid, names.get(cid, cid), names.get(cid, cid), None, speaking=cid == speaker))
    seed = (project.seed * 1_000_003 + int(hashlib.sha256(shot.id.encode()).hexdigest()[:8], 16)) % 2**31
    return ShotRequest(shot_id=shot.id, prompt=shot.prompt, size=shot.size, camera=shot.camera,
                       location=shot.location, time=shot.time, action=shot.action,
                       caption=f"{shot.id} · {shot.size} · {shot.camera}", figures=tuple(figures),
                       duration_s=shot.duration_s, width=project.width, height=project.height,
                       fps=project.fps, seed=seed, style=project.style,
                       extra=_extra(shot, project),
                       negative_prompt=negative_prompt(project, project_dir),
                       motion_prompt=motion_prompt(shot, project, project_dir, names), keyframe=keyframe)


def _extra(shot: Shot, project: Project) -> dict:
    """Hints for drawing backends: a clean picture under a text card; when lips move on screen."""
    if shot.card and not shot.lines and not shot.characters:
        return {"under_card": True}  # the text is burned in by the assembly
    from stages.time_shots import GAP_S

    spans, at = [], project.timing.lead_in_s
    for ln in shot.lines:
        if ln.speech_s is None:
            break
        off_screen = (ln.extension or "").upper().replace(" ", "") in ("V.O.", "VO", "O.S.", "O.C.", "OS")
        if not off_screen and ln.character in shot.characters:
            spans.append([round(at, 3), round(at + ln.speech_s, 3)])
        at += ln.speech_s + GAP_S
    return {"speaking": spans} if spans else {}


def wants_references(video: VideoBackend, image) -> bool:
    """Sheets are made when a shot uses them (directly or through its keyframe), or when they are free."""
    return bool({"references", "keyframe"} & video.capabilities.uses) or image.capabilities.free


def planned_requests(shots: list[Shot], project: Project, project_dir: Path, names: dict[str, str],
                     video: VideoBackend, image, paths) -> list[ShotRequest]:
    """Every shot's request with the reference sheets and keyframe paths a render would use
    (computed, not made: `status` keys shots this way, the render makes the files first)."""
    from dataclasses import replace

    from stages.make_keyframe import keyframe_path
    from stages.make_references import sheet_paths

    refs: dict[tuple[int, str], list[Path]] = {}
    if wants_references(video, image):
        for s in shots:
            for cid in s.characters:
                if (s.episode, cid) not in refs and any(c.id == cid for c in project.cast):
                    refs[s.episode, cid] = sheet_paths(project.character(cid), s.episode, project, project_dir,
                                                       image, paths.characters)
    out = []
    for s in shots:
        r = shot_request(s, project, project_dir, names, {cid: p for (ep, cid), p in refs.items() if ep == s.episode})
        if "keyframe" in video.capabilities.uses:
            r = replace(r, keyframe=keyframe_path(r, image, paths.keyframes))
        out.append(r)
    return out


def shot_key(request: ShotRequest, backend: VideoBackend) -> str:
    """Everything that determines the clip. Fields the backend ignores are left out (the animatic
    draws no negative prompt), and files count by their content-addressed names, not their paths."""
    ignored = backend.capabilities.ignores
    spec = {k: v for k, v in request.__dict__.items() if k != "figures" and k not in ignored}
    if "keyframe" in spec:
        spec["keyframe"] = request.keyframe.name if request.keyframe else None
    figures = []
    for f in request.figures:
        fig = {"id": f.id, "name": f.name, "description": f.description, "speaking": f.speaking,
               "reference_sha256": file_sha256(f.reference_image) if f.reference_image
               and f.reference_image.exists() else None}
        if "references" not in ignored:
            fig["references"] = [p.name for p in f.references]
        figures.append(fig)
    spec["figures"] = figures
    return spec_hash("shot", {"request": spec, "backend": backend.identity()})


def generate_shot(request: ShotRequest, backend: VideoBackend, shots_dir: Path, jobs=None) -> ShotResult:
    """Make the shot's clip, or reuse the valid one already made for exactly this request.

    `jobs` (a JobStore) lets a hosted backend resume its provider job after a crash.
    """
    key = shot_key(request, backend)
    path = shots_dir / f"{key}.mp4"
    check = video_validator(width=request.width, height=request.height,
                            min_duration_s=request.duration_s - 1.5 / request.fps)
    if is_done(path, check):
        return ShotResult(path, key, reused=True)
    with atomic_path(path, validate=check) as tmp:
        if backend.capabilities.resumable:
            backend.generate(request, tmp, jobs=jobs)
        else:
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
