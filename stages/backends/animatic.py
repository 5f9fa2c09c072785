"""The offline default video backend: a timed storyboard animatic.

Each shot is one still drawn with Pillow (a background for the location and time of day, the
shot's characters as illustrated portraits, a caption), animated by ffmpeg's `zoompan` into a
camera move. A character's look is derived only from their id and canonical description, so
the same character looks the same in every shot, episode and run.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from stages.backends.base import PermanentError, ShotRequest, TransientError, VideoCapabilities

# The still is drawn larger than the frame so camera moves never run out of picture.
_OVERSCAN = 1.25
_MAX_ZOOM = 1.35  # the tightest crop any camera move reaches; captions stay inside it
VERSION = 2  # 2: set and figures on separate layers (parallax, breath, lip-flap)

_COLOURS = {
    "red": (178, 34, 52), "crimson": (150, 20, 40), "scarlet": (200, 30, 30), "pink": (230, 130, 170),
    "orange": (230, 120, 40), "yellow": (235, 200, 60), "gold": (212, 175, 55), "green": (50, 130, 70),
    "olive": (110, 120, 50), "teal": (30, 130, 130), "blue": (40, 80, 170), "navy": (25, 35, 80),
    "purple": (110, 60, 150), "violet": (140, 90, 190), "white": (236, 236, 236), "cream": (240, 230, 200),
    "beige": (215, 195, 160), "grey": (128, 128, 132), "gray": (128, 128, 132), "silver": (190, 190, 200),
    "black": (30, 30, 34), "brown": (110, 70, 40), "tan": (190, 150, 100), "charcoal": (60, 62, 66),
    "红": (178, 34, 52), "白": (236, 236, 236), "黑": (30, 30, 34), "蓝": (40, 80, 170), "绿": (50, 130, 70),
    "黄": (235, 200, 60), "灰": (128, 128, 132), "紫": (110, 60, 150), "粉": (230, 130, 170), "金": (212, 175, 55),
}
_HAIR = {"black": (25, 22, 24), "brown": (90, 60, 35), "blond": (220, 190, 120), "blonde": (220, 190, 120),
         "red": (150, 60, 30), "ginger": (170, 80, 35), "grey": (150, 150, 150), "gray": (150, 150, 150),
         "white": (225, 225, 225), "silver": (200, 200, 205), "auburn": (120, 50, 30)}
_SKIN = [(250, 220, 196), (238, 200, 170), (224, 178, 140), (198, 150, 112), (160, 112, 80), (120, 82, 58)]
_CLOTHES = ["coat", "jacket", "dress", "shirt", "suit", "sweater", "hoodie", "uniform", "blouse", "qipao",
            "robe", "vest", "t-shirt", "apron", "外套", "衬衫", "西装", "裙", "旗袍"]


@dataclass(frozen=True)
class Look:
    """A character's drawn appearance, derived deterministically from id + description."""

    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    hair_style: str  # short, long, bun, bald, ponytail
    clothing: tuple[int, int, int]
    accent: tuple[int, int, int]
    glasses: bool
    beard: bool
    build: float  # shoulder width factor


def look_for(char_id: str, description: str) -> Look:
    """Read colours and features from the description; fill the rest from a seeded RNG."""
    d = description.lower()
    rng = random.Random(hashlib.sha256(f"{char_id}|{description}".encode()).digest())
    hair = next((c for w, c in _HAIR.items() if re.search(rf"\b{w}\b[^.,;]*\bhair|{w}-haired", d)), None)
    if hair is None:
        hair = rng.choice(list(_HAIR.values())[:6])
    clothing = None
    for w, c in _COLOURS.items():
        if any(re.search(rf"{re.escape(w)}[^.,;]{{0,20}}{cl}", d) for cl in _CLOTHES):
            clothing = c
            break
    if clothing is None:
        clothing = rng.choice(list(_COLOURS.values())[:24])
    if "bald" in d or "光头" in d:
        style = "bald"
    elif "ponytail" in d or "马尾" in d:
        style = "ponytail"
    elif "bun" in d or "发髻" in d:
        style = "bun"
    elif "long" in d and "hair" in d or "长发" in d:
        style = "long"
    elif "short" in d and "hair" in d or "短发" in d:
        style = "short"
    else:
        style = rng.choice(["short", "long", "bun", "ponytail"])
    elderly = re.search(r"\belderly\b|\bin (his|her|their) (sixties|seventies|eighties)\b|\bold (man|woman)\b|老人|老太", d)
    if elderly and not re.search(r"\b(white|silver)\b[^.,;]*\bhair", d):
        hair = _HAIR["grey"]
    skin_i = rng.randrange(len(_SKIN))
    for word, i in (("pale", 0), ("fair", 1), ("olive", 2), ("tan", 3), ("brown-skinned", 4), ("dark-skinned", 5)):
        if word in d:
            skin_i = i
    return Look(
        skin=_SKIN[skin_i], hair=hair, hair_style=style, clothing=clothing,
        accent=rng.choice(list(_COLOURS.values())),
        glasses="glasses" in d or "spectacles" in d or "眼镜" in d,
        beard="beard" in d or "stubble" in d or "胡" in d,
        build=1.15 if any(w in d for w in ("broad", "burly", "heavy", "stocky", "魁梧")) else
        (0.9 if any(w in d for w in ("slight", "slender", "thin", "petite", "瘦")) else 1.0),
    )


class AnimaticBackend:
    """VideoBackend: stills drawn with Pillow, moved by ffmpeg. Offline, deterministic, CPU only."""

    name = "animatic"
    section = None  # no options

    def __init__(self, *, preset: str = "veryfast", crf: int = 20):
        self.preset = preset
        self.crf = crf
        # It draws from the descriptions (no keyframe, no sheets) and takes no negative or motion prompt.
        self.capabilities = VideoCapabilities(
            ignores=frozenset({"negative_prompt", "motion_prompt", "keyframe", "references"}),
            concurrency=os.cpu_count() or 1)  # CPU-bound: one ffmpeg per core

    def identity(self) -> dict:
        return {"backend": "animatic", "version": VERSION, "crf": self.crf}

    def generate(self, request: ShotRequest, out_mp4: Path) -> None:
        import tempfile

        from stages.core.media import ffmpeg_exe

        frames = max(1, round(request.duration_s * request.fps))
        cam = dict(camera=request.camera, size=request.size, frames=frames, w=request.width, h=request.height,
                   fps=request.fps)
        layers = draw_layers(request)
        with tempfile.TemporaryDirectory(prefix=".animatic-", dir=out_mp4.parent) as tmp:
            inputs = []
            for i, img in enumerate(layers):
                path = Path(tmp) / f"{i}.png"
                img.save(path, compress_level=1)
                inputs += ["-i", str(path)]
            graph = _layer_graph(len(layers), cam, _speaking_spans(request))
            cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *inputs,
                   "-filter_complex", graph, "-map", "[v]", "-frames:v", str(frames), "-r", str(request.fps),
                   "-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf), "-pix_fmt", "yuv420p",
                   "-movflags", "+faststart", "-an", str(out_mp4)]
            try:
                proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      timeout=max(120.0, 30 * request.duration_s))
            except subprocess.TimeoutExpired as exc:  # bounded: a wedged encoder is a transient failure
                raise TransientError("animatic: ffmpeg did not finish in time") from exc
        if proc.returncode != 0:
            raise PermanentError("animatic: ffmpeg failed: " + proc.stderr.decode("utf-8", "replace")[-500:])


PARALLAX = 1.3  # the figures move this much more than the set behind them
BOB_PX, BOB_S = 5, 3.1  # a breath: the figures rise and fall this far, this slowly
FLAP_S = 0.26  # one open-close cycle of the mouth while a line is spoken


def _speaking_spans(request: ShotRequest) -> list[tuple[float, float]]:
    return [(float(a), float(b)) for a, b in request.extra.get("speaking", [])]


def _layer_graph(n_layers: int, cam: dict, speaking: list[tuple[float, float]]) -> str:
    """Set, figures (and figures mid-word) each moved by the camera, the figures with parallax and
    breath, the open mouth shown on alternate beats while a line is spoken."""
    set_move = _camera_filter(**cam)
    if n_layers == 1:
        return f"[0:v]{set_move}[v]"
    fig_move = _camera_filter(**cam, strength=PARALLAX).replace(",format=yuv420p", "")
    bob = f"y='{BOB_PX * cam['w'] / 1080:.2f}*sin(2*PI*t/{BOB_S})'"
    parts = [f"[0:v]{set_move.replace(',format=yuv420p', '')}[set]",
             f"[1:v]format=rgba,{fig_move}[fig]",
             f"[set][fig]overlay=x=0:{bob}:eval=frame[a]"]
    if n_layers == 3 and speaking:
        talking = "+".join(f"between(t,{a:.3f},{b:.3f})" for a, b in speaking)
        parts += [f"[2:v]format=rgba,{fig_move}[say]",
                  f"[a][say]overlay=x=0:{bob}:eval=frame:enable='lt(mod(t,{FLAP_S}),{FLAP_S / 2})*({talking})'[b]",
                  "[b]format=yuv420p[v]"]
    else:
        parts.append("[a]format=yuv420p[v]")
    return ";".join(parts)


def _camera_filter(camera: str, size: str, frames: int, w: int, h: int, fps: int, strength: float = 1.0) -> str:
    """A zoompan expression per camera move; `on` is the output frame number. `strength` scales the
    move (the figures' layer moves more than the set: parallax)."""
    n = max(frames - 1, 1)
    p = f"(on/{n})"
    k = strength
    # The still is _OVERSCAN times the frame: zoom 1 shows all of it, 1.25 shows exactly one frame.
    base = 1.0 + (_OVERSCAN - 1.0) * 0.5
    centre_x, centre_y = "iw/2-(iw/zoom/2)", "ih/2-(ih/zoom/2)"
    if camera == "push-in":
        z, x, y = f"{base}+{0.18 * k:.4f}*{p}", centre_x, centre_y
    elif camera == "pull-out":
        z, x, y = f"{base + 0.18 * k:.4f}-{0.18 * k:.4f}*{p}", centre_x, centre_y
    elif camera == "pan-left":
        z, x, y = f"{_OVERSCAN}", f"(iw-iw/zoom)*({0.5 + 0.3 * k:.4f}-{0.6 * k:.4f}*{p})", centre_y
    elif camera == "pan-right":
        z, x, y = f"{_OVERSCAN}", f"(iw-iw/zoom)*({0.5 - 0.3 * k:.4f}+{0.6 * k:.4f}*{p})", centre_y
    elif camera == "tilt-up":
        z, x, y = f"{_OVERSCAN}", centre_x, f"(ih-ih/zoom)*({0.5 + 0.5 * min(k, 1):.4f}-{min(k, 1):.4f}*{p})"
    elif camera == "tilt-down":
        z, x, y = f"{_OVERSCAN}", centre_x, f"(ih-ih/zoom)*({0.5 - 0.5 * min(k, 1):.4f}+{min(k, 1):.4f}*{p})"
    else:  # static: a slow drift keeps a held frame alive
        z, x, y = f"{base}+{0.02 * k:.4f}*{p}", centre_x, centre_y
    return f"zoompan=z='{z}':x='{x}':y='{y}':d={frames}:s={w}x{h}:fps={fps},setsar=1,format=yuv420p"


# --- drawing -----------------------------------------------------------------------------------

def draw_still(req: ShotRequest):
    """The shot's still at overscan size (RGB Pillow image): set, figures and labels in one."""
    layers = draw_layers(req, talking=False)
    img = layers[0]
    for layer in layers[1:]:
        img.paste(layer, (0, 0), layer)
    return img


def draw_layers(req: ShotRequest, talking: bool = True) -> list:
    """[set (RGB), figures (RGBA)], plus figures mid-word (RGBA) when someone speaks: the set
    carries the place, cards and labels; the figures move on their own layer."""
    from PIL import Image, ImageDraw

    W, H = _even(req.width * _OVERSCAN), _even(req.height * _OVERSCAN)
    img = Image.new("RGB", (W, H))
    _draw_background(img, req.location, req.time, req.width / 1080)
    d = ImageDraw.Draw(img)
    s = req.width / 1080  # scale factor: everything is designed at 1080 wide
    figures = list(req.figures)
    layers = [img]
    if req.extra.get("under_card"):
        pass  # the episode's text card is burned over this plain background
    elif req.size == "insert" or not figures:
        _draw_card(d, W, H, s, req.action or req.location)
    else:
        speaking = any(f.speaking for f in figures) and talking
        for mouth in ((0.0, 1.0) if speaking else (None,)):
            layer = Image.new("RGBA", (W, H), (0, 0, 0, 0))
            _draw_figures(layer, req.size, figures, s, mouth=mouth)
            layers.append(layer)
    if req.action and figures and req.size in ("establishing", "wide", "medium"):
        _draw_action_box(d, W, H, s, req.action)
    if req.caption:
        _draw_caption(d, W, H, s, req.caption)
    return layers


def _even(v: float) -> int:
    return int(round(v / 2) * 2)


def _palette(location: str, time: str) -> tuple[tuple, tuple, tuple]:
    rng = random.Random(hashlib.sha256(location.encode()).digest())
    night = bool(re.search(r"night|夜|evening|dusk|黄昏", time, re.I))
    hue = rng.random()
    import colorsys

    def rgb(h, s, v):
        return tuple(int(c * 255) for c in colorsys.hsv_to_rgb(h % 1, s, v))

    if night:
        return rgb(0.62 + hue * 0.1, 0.55, 0.18), rgb(0.62 + hue * 0.1, 0.45, 0.35), rgb(hue, 0.3, 0.25)
    return rgb(hue, 0.25, 0.92), rgb(hue + 0.05, 0.35, 0.75), rgb(hue + 0.5, 0.3, 0.55)


def _draw_background(img, location: str, time: str, s: float) -> None:
    from PIL import ImageDraw

    W, H = img.size
    top, bottom, floor = _palette(location, time)
    d = ImageDraw.Draw(img)
    horizon = int(H * 0.62)
    for yy in range(0, horizon, 4):  # vertical gradient in 4 px bands: cheap and smooth enough
        t = yy / horizon
        c = tuple(int(a + (b - a) * t) for a, b in zip(top, bottom))
        d.rectangle([0, yy, W, yy + 4], fill=c)
    d.rectangle([0, horizon, W, H], fill=floor)
    rng = random.Random(hashlib.sha256(("props|" + location).encode()).digest())
    exterior = bool(re.search(r"\b(street|park|roof|garden|beach|road|market|ext)\b|街|外|公园|天台|门口", location, re.I))
    if exterior:  # skyline silhouettes
        x = 0
        while x < W:
            bw = rng.randint(int(90 * s), int(240 * s))
            bh = rng.randint(int(200 * s), int(700 * s))
            shade = tuple(max(0, c - 40) for c in bottom)
            d.rectangle([x, horizon - bh, x + bw, horizon], fill=shade)
            for wy in range(horizon - bh + 20, horizon - 20, int(60 * s)):
                for wx in range(x + 15, x + bw - 20, int(45 * s)):
                    if rng.random() < 0.5:
                        d.rectangle([wx, wy, wx + int(18 * s), wy + int(26 * s)], fill=(250, 220, 140))
            x += bw + rng.randint(0, int(30 * s))
    else:  # a window and a door on the back wall
        wx = rng.randint(int(W * 0.1), int(W * 0.55))
        d.rectangle([wx, int(H * 0.18), wx + int(W * 0.3), int(H * 0.42)], fill=tuple(min(255, c + 40) for c in top),
                    outline=floor, width=int(12 * s))
        dx = rng.randint(int(W * 0.65), int(W * 0.8))
        d.rectangle([dx, int(H * 0.3), dx + int(W * 0.16), horizon], fill=tuple(max(0, c - 50) for c in bottom))


def _draw_figures(img, size: str, figures, s: float, mouth: float | None = None) -> None:
    from PIL import ImageDraw

    W, H = img.size
    d = ImageDraw.Draw(img)
    scale = {"establishing": 0.45, "wide": 0.6, "medium": 1.0, "two-shot": 0.95, "over-shoulder": 1.05,
             "close-up": 1.7, "extreme-close-up": 2.6}.get(size, 1.0) * s
    n = len(figures)
    if size == "over-shoulder" and n >= 2:
        speaker, listener = figures[0], figures[1]
        _draw_person(d, W * 0.62, H * 0.62, scale, speaker, mouth=mouth if speaker.speaking else None)
        _draw_person(d, W * 0.18, H * 0.78, scale * 1.6, listener, back=True)
        return
    if size in ("close-up", "extreme-close-up"):
        figures = figures[:1]
        n = 1
    for i, fig in enumerate(figures):
        cx = W * (i + 1) / (n + 1)
        foot = H * (0.85 if size in ("establishing", "wide") else 0.70)
        if size in ("close-up", "extreme-close-up"):
            foot = H * 0.95
        _draw_person(d, cx, foot, scale, fig, mouth=mouth if fig.speaking else None)


def _draw_person(d, cx: float, base_y: float, scale: float, fig, back: bool = False, turn: bool = False,
                 mouth: float | None = None) -> None:
    """A bust: shoulders, neck, head, hair, face. `base_y` is the chest line; `turn` draws the face
    a three-quarter turn to the right; `mouth` (0 closed .. 1 open) overrides the speaking mouth."""
    lk = look_for(fig.id, fig.description)
    u = 100 * scale  # head radius unit
    sw = u * 1.9 * lk.build
    # torso
    d.rounded_rectangle([cx - sw, base_y - u * 0.4, cx + sw, base_y + u * 3.2], radius=int(u * 0.7), fill=lk.clothing)
    d.polygon([(cx - u * 0.35, base_y - u * 0.4), (cx + u * 0.35, base_y - u * 0.4), (cx, base_y + u * 0.6)],
              fill=lk.accent)
    # neck and head
    hy = base_y - u * 1.5
    d.rectangle([cx - u * 0.35, hy + u * 0.6, cx + u * 0.35, base_y - u * 0.3], fill=lk.skin)
    if lk.hair_style == "long":
        d.rounded_rectangle([cx - u * 1.1, hy - u * 0.9, cx + u * 1.1, hy + u * 1.6], radius=int(u * 0.8), fill=lk.hair)
    d.ellipse([cx - u * 0.9, hy - u * 1.05, cx + u * 0.9, hy + u * 1.05], fill=lk.skin)
    if back:
        d.ellipse([cx - u * 0.95, hy - u * 1.1, cx + u * 0.95, hy + u * 1.0], fill=lk.hair)
        return
    if lk.hair_style != "bald":
        d.chord([cx - u * 0.98, hy - u * 1.15, cx + u * 0.98, hy + u * 0.5], 180, 360, fill=lk.hair)
    if lk.hair_style == "bun":
        d.ellipse([cx - u * 0.4, hy - u * 1.6, cx + u * 0.4, hy - u * 0.8], fill=lk.hair)
    if lk.hair_style == "ponytail":
        d.ellipse([cx + u * 0.7, hy - u * 0.6, cx + u * 1.3, hy + u * 0.9], fill=lk.hair)
    # face (a three-quarter turn shifts the features toward the turned side)
    fx = cx + (u * 0.28 if turn else 0)
    ey = hy + u * 0.05
    for ex in (fx - u * 0.35, fx + u * 0.35):
        d.ellipse([ex - u * 0.1, ey - u * 0.1, ex + u * 0.1, ey + u * 0.1], fill=(30, 30, 40))
        if lk.glasses:
            d.ellipse([ex - u * 0.25, ey - u * 0.22, ex + u * 0.25, ey + u * 0.22], outline=(20, 20, 20),
                      width=max(2, int(u * 0.05)))
    if lk.beard:
        d.chord([fx - u * 0.75, hy + u * 0.1, fx + u * 0.75, hy + u * 1.05], 0, 180, fill=lk.hair)
    opening = (0.14 if fig.speaking else 0.03) if mouth is None else 0.03 + 0.13 * mouth
    mouth_open = u * opening
    d.ellipse([fx - u * 0.22, hy + u * 0.5 - mouth_open, fx + u * 0.22, hy + u * 0.5 + mouth_open],
              fill=(120, 40, 40))


def _wrap(text: str, font, max_w: float) -> list[str]:
    from stages.core.text import wrap_text

    return wrap_text(text, font, max_w)


def _draw_card(d, W: int, H: int, s: float, text: str) -> None:
    from stages.core.fonts import pil_font

    font = pil_font(int(64 * s))
    lines = _wrap(text, font, W * 0.62)[:8]
    y = H * 0.5 - len(lines) * 45 * s
    d.rounded_rectangle([W * 0.15, y - 60 * s, W * 0.85, y + len(lines) * 90 * s + 60 * s], radius=int(30 * s),
                        fill=(250, 246, 235), outline=(40, 40, 40), width=int(6 * s))
    for i, ln in enumerate(lines):
        d.text((W / 2, y + i * 90 * s), ln, font=font, fill=(30, 30, 30), anchor="ma")


def _draw_action_box(d, W: int, H: int, s: float, text: str) -> None:
    from stages.core.fonts import pil_font

    font = pil_font(int(40 * s))
    lines = _wrap(text, font, W * 0.55)[:4]
    top = H * (1 - 1 / _MAX_ZOOM) / 2 + 110 * s
    d.rounded_rectangle([W * 0.2, top, W * 0.8, top + 60 * s * len(lines) + 40 * s], radius=int(20 * s),
                        fill=(0, 0, 0))
    for i, ln in enumerate(lines):
        d.text((W * 0.22, top + 20 * s + i * 60 * s), ln, font=font, fill=(240, 240, 240))


def _draw_caption(d, W: int, H: int, s: float, caption: str) -> None:
    from stages.core.fonts import pil_font

    font = pil_font(int(34 * s))
    # centred and inset so it stays in frame at the tightest zoom and across a pan
    y0 = H * (1 - 1 / _MAX_ZOOM) / 2 + 20 * s
    box = d.textbbox((W / 2, y0), caption, font=font, anchor="ma")
    d.rectangle([box[0] - 12 * s, box[1] - 8 * s, box[2] + 12 * s, box[3] + 8 * s], fill=(0, 0, 0))
    d.text((W / 2, y0), caption, font=font, fill=(255, 215, 0), anchor="ma")
