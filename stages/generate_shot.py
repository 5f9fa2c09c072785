"""One planned shot -> the request its video backend gets, and the validated clip it makes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from stages.core.artifacts import atomic_path, is_done
from stages.backends.base import Figure, ShotRequest, VideoBackend
from stages.core.media import video_validator
from stages.schema import Project, Shot


@dataclass(frozen=True)
class ShotResult:
    path: Path
    reused: bool
    placeholder: bool = False
    images_made: int = 0  # its keyframe, when the image backend made one for it now


def shot_request(shot: Shot, project: Project, project_dir: Path, names: dict[str, str],
                 references: dict[str, list[Path]] | None = None, keyframe: Path | None = None) -> ShotRequest:
    """What the video backend is asked for: the shot, its figures (this episode's look and reference
    sheet), prompts, size, seed, and the keyframe when the backend starts from one."""
    from stages.shot_prompts import motion_prompt, negative_prompt

    from stages.sync_lips import native_lines

    speaker = shot.lines[0].character if shot.lines else None
    speaks = {shot.lines[i].character for i in native_lines(shot, project)}  # the model speaks for them
    figures = []
    for cid in shot.characters:
        try:
            c = project.character(cid)
            ref = (project_dir / c.reference_image) if c.reference_image else None
            figures.append(Figure(cid, c.name, c.look(shot.episode)[0], ref, speaking=cid == speaker,
                                  references=tuple((references or {}).get(cid, ())),
                                  assets=tuple(sorted(c.assets.items())),
                                  voices=tuple(sorted(c.voice.ids.items())) if cid in speaks else (),
                                  voice_clip=project_dir / c.voice.reference if cid in speaks and c.voice.reference
                                  else None))
        except KeyError:  # not in the cast (warned by `check`): drawn from the name alone
            figures.append(Figure(cid, names.get(cid, cid), names.get(cid, cid), None, speaking=cid == speaker))
    seed = (project.seed * 1_000_003 + int(hashlib.sha256(shot.id.encode()).hexdigest()[:8], 16)) % 2**31
    prompt, motion, extra = shot.prompt, motion_prompt(shot, project, project_dir, names), _extra(shot, project)
    spoken = native_dialogue(shot, project, names)
    if spoken:  # dialogue: native: the model speaks these lines, and its clip keeps its sound
        from stages.core.prompts import render_template

        said = render_template("dialogue_native.j2", project_dir, lines=spoken)
        prompt, motion, extra = f"{prompt} {said}", f"{motion} {said}", {**extra, "dialogue": spoken}
    return ShotRequest(shot_id=shot.id, prompt=prompt, size=shot.size, camera=shot.camera,
                       location=shot.location, time=shot.time, action=shot.action,
                       caption=f"{shot.id} · {shot.size} · {shot.camera}", figures=tuple(figures),
                       duration_s=shot.duration_s, width=project.width, height=project.height,
                       fps=project.fps, seed=seed, style=project.style.prompt, extra=extra,
                       negative_prompt=negative_prompt(project, project_dir), motion_prompt=motion,
                       keyframe=keyframe)


def native_dialogue(shot: Shot, project: Project, names: dict[str, str]) -> list[dict]:
    """The lines the video model speaks itself (dialogue: native): speaker, words, acting note, voice notes,
    and where each falls in the shot (our timing: the subtitles show them there)."""
    from stages.sync_lips import native_lines
    from stages.time_shots import GAP_S

    idx = set(native_lines(shot, project))
    out, at = [], project.timing.lead_in_s
    for i, ln in enumerate(shot.lines):
        if i in idx:
            try:
                c = project.character(ln.character)
                name, voice = c.name, c.voice.notes
            except KeyError:
                name, voice = names.get(ln.character, ln.character), ""
            out.append({"speaker": name, "text": ln.text, "note": ln.parenthetical or "", "voice": voice,
                        "start_s": round(at, 3), "end_s": round(at + (ln.speech_s or 0.0), 3)})
        at += (ln.speech_s or 0.0) + GAP_S
    return out


def _extra(shot: Shot, project: Project) -> dict:
    """Hints for drawing backends: a clean picture under a text card; when lips move on screen."""
    if shot.card and not shot.lines and not shot.characters:
        return {"under_card": True}  # the text is burned in by the assembly
    from stages.presence import lips_move
    from stages.time_shots import GAP_S

    spans, at = [], project.timing.lead_in_s
    for ln in shot.lines:
        if ln.speech_s is None:
            break
        if lips_move(ln.extension) and ln.character in shot.characters:
            spans.append([round(at, 3), round(at + ln.speech_s, 3)])
        at += ln.speech_s + GAP_S
    return {"speaking": spans} if spans else {}


def shot_validator(request: ShotRequest):
    """What a made clip of this shot must be (before it is reused): its size, its length, sound if spoken."""
    return video_validator(width=request.width, height=request.height,
                           min_duration_s=request.duration_s - 1.5 / request.fps,
                           audio=True if request.extra.get("dialogue") else None)  # native: its sound is the line


def generate_shot(request: ShotRequest, backend: VideoBackend, out_mp4: Path, jobs=None) -> ShotResult:
    """Make the shot's clip at `out_mp4` (its content-addressed path), or reuse the valid one there.

    `jobs` (a `ShotJobs`, the shot's paid-job journal) lets a hosted backend resume its provider job.
    """
    check = shot_validator(request)
    if is_done(out_mp4, check):
        return ShotResult(out_mp4, reused=True)
    with atomic_path(out_mp4, validate=check) as tmp:
        if backend.capabilities.resumable:
            backend.generate(request, tmp, jobs=jobs)
        else:
            backend.generate(request, tmp)
    return ShotResult(out_mp4, reused=False)


PLACEHOLDER_REASON = "accepted as a placeholder"


def placeholder_request(request: ShotRequest, reason: str | None) -> ShotRequest:
    """The card that stands in for an accepted failed shot: same id, length and size."""
    from dataclasses import replace

    return replace(request, size="insert", camera="static", figures=(),
                   action=f"PLACEHOLDER {request.shot_id}: {reason or PLACEHOLDER_REASON}"[:300],
                   caption=f"{request.shot_id} · placeholder")
