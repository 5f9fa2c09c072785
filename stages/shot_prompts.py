"""A shot's prompts from templates/: the video prompt (the character bible inserted), the negative
prompt, and the image-to-video motion prompt. Every planner (rules or LLM) and every request uses these."""

from __future__ import annotations

import math
from pathlib import Path

from stages.core.prompts import render_template
from stages.presence import lips_move
from stages.schema import Project, Shot


def shot_prompt(shot: Shot, project: Project, project_dir: Path | None, names: dict[str, str]) -> str:
    """The shot's video prompt from templates/shot_prompt.j2 (the character bible inserted)."""
    chars = []
    for cid in shot.characters:
        try:
            c = project.character(cid)
            chars.append({"name": c.name, "description": c.look(shot.episode)[0]})  # this episode's look
        except KeyError:
            chars.append({"name": names.get(cid, cid), "description": names.get(cid, cid)})
    speaker, heard = _speaker(shot, project, names)
    return render_template("shot_prompt.j2", project_dir, frame=frame(project.width, project.height),
                           size=shot.size, camera=shot.camera, characters=chars,
                           location=shot.location, time=shot.time, action=shot.action, speaker=speaker,
                           # The words shape the picture (lips, expression) for models that make speech;
                           # a voice from off screen (V.O., a phone) is heard by those on screen.
                           words=" ".join(ln.text for ln in shot.lines), heard=heard, style=project.style.prompt)


def _speaker(shot: Shot, project: Project, names: dict[str, str]) -> tuple[str | None, str | None]:
    """(the name of who speaks on screen, or of the voice heard from off screen), one of them or neither."""
    if not shot.lines:
        return None, None
    cid = shot.lines[0].character
    name = next((c.name for c in project.cast if c.id == cid), names.get(cid, cid))
    if cid in shot.characters and lips_move(shot.lines[0].extension):
        return name, None
    return None, name if cid not in shot.characters else None


RATIOS = ((9, 16), (2, 3), (3, 4), (4, 5), (1, 1), (5, 4), (4, 3), (3, 2), (16, 9), (21, 9))


def frame(width: int, height: int) -> str:
    """The output's shape in words, as the nearest usual ratio: "Vertical 9:16" (also for a model's
    480x832), "Square 1:1", "Landscape 16:9"."""
    w, h = min(RATIOS, key=lambda r: abs(math.log(width / height) - math.log(r[0] / r[1])))
    shape = "Vertical" if h > w else "Landscape" if w > h else "Square"
    return f"{shape} {w}:{h}"


def negative_prompt(project: Project, project_dir: Path | None) -> str:
    """What every shot should avoid (templates/negative_prompt.j2), for models that take one."""
    return render_template("negative_prompt.j2", project_dir, avoid=project.avoid)


def motion_prompt(shot: Shot, project: Project, project_dir: Path | None, names: dict[str, str]) -> str:
    """The image-to-video variant: only the motion, since the keyframe fixes faces and place."""
    speaker, _ = _speaker(shot, project, names)
    return render_template("shot_motion.j2", project_dir, camera=shot.camera, speaker=speaker,
                           words=" ".join(ln.text for ln in shot.lines), action=shot.action)
