"""The offline image backend: reference views and keyframes drawn the animatic's way.

A character's drawing derives only from their id and description, so the sheet and every
keyframe agree without a model; keyframes are the animatic's still for the shot, framed.
"""

from __future__ import annotations

from pathlib import Path

from stages.backends.base import Capabilities, ImageOptions, ImageRequest, ShotRequest

VERSION = 1
# The animatic's drawing rules it uses, frozen: its keyframes start a hosted model's paid shots and its
# sheets go with them, so a new animatic look must not change their keys (a new look: a new version here).
RULES = 2


class AnimaticImageBackend:
    """ImageBackend: Pillow drawings, deterministic, CPU only."""

    name = "animatic-image"
    section = None  # the image family reads `backends.image`
    # instant and offline: sheets are drawn for review even unused (0.1 s an image, measured)
    capabilities = Capabilities(free=True, seconds_each=0.1)

    def __init__(self, options: ImageOptions | None = None):
        self.options = options  # nothing in `backends.image` changes its drawings

    def identity(self) -> dict:
        return {"backend": "animatic-image", "version": VERSION, "animatic": RULES}

    def generate_image(self, request: ImageRequest, out_png: Path) -> None:
        from PIL import Image, ImageDraw

        from stages.backends import animatic

        if request.purpose == "reference":
            img = Image.new("RGB", (request.width, request.height), (205, 207, 212))
            d = ImageDraw.Draw(img)
            s = request.width / 512
            for fig in request.figures[:1]:
                cx = request.width * (0.5 if request.view == "front" else 0.56)
                animatic._draw_person(d, cx, request.height * 0.66, 1.2 * s, fig, turn=request.view != "front",
                                      rules=RULES)
        else:
            still = animatic.draw_still(ShotRequest(
                shot_id="keyframe", prompt=request.prompt, size=request.size or "medium", camera="static",
                location=request.location, time=request.time, action="", caption="", figures=request.figures,
                duration_s=1.0, width=request.width, height=request.height, fps=1, seed=request.seed), rules=RULES)
            left = (still.width - request.width) // 2
            top = (still.height - request.height) // 2
            img = still.crop((left, top, left + request.width, top + request.height))
        img.save(out_png, format="PNG")
