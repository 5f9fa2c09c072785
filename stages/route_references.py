"""Which characters' references each shot carries to the project's backends, and what does not fit:
the table `check` prints, and the warnings it gives where identity is at risk.

The video backend's fit is `base.fit_references` (the rule every backend applies when it sends), run
here on the planned shots with each character's sheet as a render would make it (their own images
for the episode's look, else the image backend's views), so `check` needs no file and no model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stages.backends.base import Figure, fit_references
from stages.schema import Project, Warning_

# Image pipelines that take a picture to build on (their `image` argument): all sheets go in, composed
_TAKES_IMAGE = ("Img2Img", "Kontext", "Edit", "Inpaint", "Redux", "Reference")


@dataclass(frozen=True)
class ShotRefs:
    shot: str
    sent: tuple[str, ...]  # "ANN (front)", in slot order
    dropped: tuple[str, ...]
    unseen: tuple[str, ...]  # characters on screen none of whose references is sent
    ids: tuple[str, ...] = ()  # the cast members on screen


def _figures(shot, project: Project) -> tuple[Figure, ...]:
    from stages.make_references import VIEWS

    speaker = shot.lines[0].character if shot.lines else None
    out = []
    for cid in shot.characters:
        try:
            c = project.character(cid)
        except KeyError:
            continue
        _, own = c.look(shot.episode)
        refs = tuple(Path(p) for p in own) or tuple(Path(f"{cid}/{view}") for view in VIEWS)
        out.append(Figure(cid, c.name, "", speaking=cid == speaker, references=refs,
                          assets=tuple(sorted(c.assets.items()))))
    return tuple(out)


def shot_references(lp, backends) -> tuple[str, int, list[ShotRefs]]:
    """(the video backend, its reference limit, each shot's references) for a project that sends
    references to its video backend; empty where it sends none."""
    video = backends.video
    caps = video.capabilities
    if "references" not in caps.uses:
        return video.name, 0, []
    rows = [r for r in (shot_fit(s, lp.project, video) for s in planned_shots(lp)) if r is not None]
    return video.name, caps.max_references, rows


def planned_shots(lp):
    """Every episode's shots as planned now (the user's edits kept; an LLM planner's cached answer, else
    the rules planner's), without asking any model."""
    from stages.plan_shots import plan_shots
    from stages.plan_shots_llm import NotPlanned
    from stages.schema import Planner

    project = lp.project
    for ep in lp.script.episodes:
        try:
            shots = plan_shots(ep, project, project_dir=lp.root, characters=lp.script.characters, cached_only=True)
        except NotPlanned:
            rules = project.model_copy(update={"planner": Planner(kind="rules")})
            shots = plan_shots(ep, rules, project_dir=lp.root, characters=lp.script.characters)
        yield from shots.shots


def shot_fit(shot, project: Project, video) -> ShotRefs | None:
    """One planned shot's references to `video` (a backend that takes them), or None."""
    figures = _figures(shot, project)
    if not figures or "references" not in video.capabilities.uses:
        return None
    fit = fit_references(figures, video.capabilities.max_references, video.name)
    return ShotRefs(shot.id, tuple(_label(r) for r in fit.sent), tuple(_label(r) for r in fit.dropped),
                    tuple(f.name for f in fit.unseen()), tuple(f.id for f in figures))


def _label(ref) -> str:
    if ref.asset:
        return f"{ref.figure.name} (saved {ref.asset})"
    return f"{ref.figure.name} ({ref.view})"


def reference_warnings(lp, backends, rows: list[ShotRefs], limit: int) -> list[Warning_]:
    """Where identity is at risk: a character left without any reference in some shots (named, with
    the shots), references dropped past the limit, drawn sheets sent to a real model, an image-to-video
    model that would start from a drawn keyframe, keyframes made from the prompt alone."""
    project = lp.project
    yaml_file, out = str(lp.root / "project.yaml"), []
    video, image = backends.video, project.backends.image
    unseen: dict[str, list[str]] = {}
    for r in rows:
        for name in r.unseen:
            unseen.setdefault(name, []).append(r.shot)
    more = "raise backends.diffusers.max_frames (VACE gives each reference a frame)" if video.name == "diffusers" \
        else f"raise backends.{video.section}.max_references if the model takes more"
    for name, shots in unseen.items():
        out.append(Warning_(file=yaml_file, line=1, message=(
            f"{name} gets no reference image in {len(shots)} shot(s) ({', '.join(shots[:3])}"
            f"{', ...' if len(shots) > 3 else ''}): {video.name} takes {limit} per request and the speaker and "
            f"the characters named first fill them; {more}, or give fewer references per character "
            "(cast[].references)")))
    dropped = sum(len(r.dropped) for r in rows)
    if dropped and not unseen:
        out.append(Warning_(file=yaml_file, line=1, message=(
            f"{dropped} reference image(s) do not fit {video.name}'s limit of {limit} per request and are left "
            "out (every character on screen still has one); `dramaforge check --json` lists them per shot")))
    drawn = [c.id for c in project.cast if c.id in {i for r in rows for i in r.ids} and not c.references
             and not c.reference_image and not c.assets]
    if drawn and image.kind == "animatic" and video.capabilities.billed:
        out.append(Warning_(file=yaml_file, line=lp.cast_line(drawn[0]), message=(
            f"{video.name} would get the animatic's drawn sheets as the references of {', '.join(drawn)} "
            "(backends.image is animatic): give them cast[].references (photos or renders), or set "
            "backends.image to an image model")))
    if "keyframe" in video.capabilities.uses:
        if image.kind == "animatic":
            out.append(Warning_(file=yaml_file, line=1, message=(
                f"{video.name} makes each shot from its keyframe, and backends.image is animatic: the model would "
                "start from a drawing; set backends.image to an image model (diffusers or openai)")))
        elif image.kind == "diffusers" and image.pipeline and image.ip_adapter is None \
                and not any(t in image.pipeline for t in _TAKES_IMAGE):
            out.append(Warning_(file=yaml_file, line=1, message=(
                f"keyframes from {image.pipeline} are made from the prompt alone (it takes no reference images): "
                "characters may not match their sheets; load an IP-Adapter (backends.image.ip_adapter) or use an "
                "image-to-image or edit pipeline")))
    return out

