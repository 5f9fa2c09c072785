"""The offline default video backend: a timed storyboard animatic.

Each shot is one still drawn with Pillow (a set for the location, lit for the time of day, the
shot's characters as illustrated portraits, a caption), animated by ffmpeg's `zoompan` into a
camera move. A character's look is derived only from their id and canonical description, so
the same character looks the same in every shot, episode and run; a location's set is derived
only from its name and INT./EXT., so one place keeps one look across the series. `layout` says
where everything is, in the picture's pixels, for the whole camera move: the subtitles keep
clear of the faces it names.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from stages.backends._camera import OVERSCAN as _OVERSCAN
from stages.backends._camera import PARALLAX, cut as _cut, to_frame as _to_frame, view as _view  # noqa: F401
from stages.backends._camera import hold as _hold, zoompan as _zoompan
from stages.backends.base import PermanentError, ShotRequest, TransientError, VideoCapabilities

# The still is drawn larger than the frame so camera moves never run out of picture.
_MAX_ZOOM = 1.35  # the tightest crop any camera move reaches; captions stay inside it
VERSION = 6  # 2: set and figures on separate layers (parallax, breath, lip-flap); 3: faces framed above the
# subtitle band, one set per location lit by the time of day, INT./EXT. sets, clean overlays; 4: a keyframe
# every second, so checking a reused clip's end decodes at most a second of it, not the whole shot; 5: each figure
# layer moved as a cut onto its part of the frame, the open mouth as a patch, one thread (SSIM >= 0.99 vs 4);
# 6: x264 at a constant QP, a layer's pose held while the camera moves it under a pixel (SSIM >= 0.98 vs 3)

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
# Read from drawing rules 3 on (the rules 2 tables above stay as they were: the image backend's keyframes
# and sheets are drawn by rules 2, so a hosted model's paid shots keep their keys).
_COLOURS_3 = {**_COLOURS, "棕": (110, 70, 40), "米": (215, 195, 160)}
_CLOTHES_3 = _CLOTHES + ["blazer", "cardigan", "毛衣", "卫衣", "夹克", "大衣", "风衣", "校服", "T恤", "围裙", "制服", "睡衣",
                         "马甲", "羽绒服"]
_HAIR_ZH = {"灰白": (175, 175, 178), "花白": (175, 175, 178), "银": (200, 200, 205), "白": (225, 225, 225),
            "灰": (150, 150, 150), "金": (220, 190, 120), "黄": (220, 190, 120), "棕": (90, 60, 35),
            "红": (150, 60, 30), "黑": (25, 22, 24)}


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


def look_for(char_id: str, description: str, rules: int = 3) -> Look:
    """Read colours and features from the description; fill the rest from a seeded RNG. Rules 3 also
    read Chinese hair colours and more clothes, and fill by gender where the description tells it (a
    man is not given a bun he was never described with); rules 2 are the image backend's."""
    from stages.core.people import read_gender

    d = description.lower()
    new = rules >= 3
    rng = random.Random(hashlib.sha256(f"{char_id}|{description}".encode()).digest())
    hair = next((c for w, c in _HAIR.items() if re.search(rf"\b{w}\b[^.,;]*\bhair|{w}-haired", d)), None)
    if hair is None and new:
        hair = next((c for w, c in _HAIR_ZH.items() if re.search(rf"{w}[^，。、,;]{{0,3}}[发髮]", d)), None)
    if hair is None:
        hair = rng.choice(list(_HAIR.values())[:6])
    clothing = None
    if new:  # the colour word nearest before the first garment named: `red hair in a green coat` is green
        worn = sorted((m.start(), cl) for cl in _CLOTHES_3 for m in re.finditer(re.escape(cl), d))
        for at, _ in worn:
            near = [(d.rfind(w, max(0, at - 20), at), c) for w, c in _COLOURS_3.items()]
            near = [(i, c) for i, c in near if i >= 0 and not re.search(r"[.,;，。]", d[i:at])]
            if near:
                clothing = max(near, key=lambda t: t[0])[1]
                break
    else:
        for w, c in _COLOURS.items():
            if any(re.search(rf"{re.escape(w)}[^.,;]{{0,20}}{cl}", d) for cl in _CLOTHES):
                clothing = c
                break
    if clothing is None:
        clothing = rng.choice(list(_COLOURS.values())[:24])
    if "bald" in d or "光头" in d or new and "秃" in d:
        style = "bald"
    elif "ponytail" in d or "马尾" in d:
        style = "ponytail"
    elif (re.search(r"\bbun\b", d) or "盘发" in d if new else "bun" in d) or "发髻" in d:
        style = "bun"
    elif "long" in d and "hair" in d or "长发" in d:
        style = "long"
    elif "short" in d and "hair" in d or "短发" in d:
        style = "short"
    else:
        men = new and read_gender([description])[0] == "male"
        style = rng.choice(["short"] if men else ["short", "long", "bun", "ponytail"])
    elderly = re.search(r"\belderly\b|\bin (his|her|their) (sixties|seventies|eighties)\b|\bold (man|woman)\b|老人|老太"
                        + (r"|\b[6-9]0s\b|[六七八九]十" if new else ""), d)
    if elderly and not re.search(r"\b(white|silver)\b[^.,;]*\bhair" + ("|白发|银发" if new else ""), d):
        hair = _HAIR["grey"]
    skin_i = rng.randrange(len(_SKIN))
    for word, i in (("pale", 0), ("fair", 1), ("olive", 2), ("tan", 3), ("brown-skinned", 4), ("dark-skinned", 5)):
        if word in d:
            skin_i = i
    thin = ("slight", "slender", "thin", "petite", "瘦") + (("skinny",) if new else ())
    return Look(
        skin=_SKIN[skin_i], hair=hair, hair_style=style, clothing=clothing,
        accent=rng.choice(list(_COLOURS.values())),
        glasses="glasses" in d or "spectacles" in d or "眼镜" in d,
        beard="beard" in d or "stubble" in d or "胡" in d,
        build=1.15 if any(w in d for w in ("broad", "burly", "heavy", "stocky", "魁梧")) else
        (0.9 if any(w in d for w in thin) else 1.0),
    )


class AnimaticBackend:
    """VideoBackend: stills drawn with Pillow, moved by ffmpeg. Offline, deterministic, CPU only."""

    name = "animatic"
    section = None  # no options

    def __init__(self, *, preset: str = "ultrafast", qp: int = 16):
        # ultrafast: x264 was 2/3 of a shot's CPU at veryfast. A constant QP, not CRF: CRF's rate control
        # measures every frame at low resolution first (a fifth of the encode); QP 16 is as faithful as CRF 20
        # was here (SSIM 0.9995 to the frames) in about 3/4 of its bytes. The episode encodes the clip again.
        self.preset, self.qp = preset, qp
        # It draws from the descriptions (no keyframe, no sheets) and takes no negative or motion prompt;
        # it reads the staging hints (INT./EXT., clean overlays) and knows where it put every face.
        self.capabilities = VideoCapabilities(
            uses=frozenset({"staging"}), ignores=frozenset({"negative_prompt", "motion_prompt", "keyframe",
                                                            "references"}),
            concurrency=os.cpu_count() or 1, faces=True, seeded=False,  # CPU-bound: one ffmpeg per core
            seconds_each=0.2)  # wall s per second of 1080x1920 video, two at once on 2 cores (measured 0.16-0.17)

    def identity(self) -> dict:
        return {"backend": "animatic", "version": VERSION, "qp": self.qp}

    def faces(self, request: ShotRequest) -> list[tuple[str, tuple[float, float, float, float]]]:
        """(character id, box) of every head in the clip, in its pixels, over the whole camera move."""
        return [(p.figure.id, p.face) for p in layout(request).placed]

    def generate(self, request: ShotRequest, out_mp4: Path) -> None:
        from stages.core.artifacts import partial_dir
        from stages.core.media import ffmpeg_exe

        frames = max(1, round(request.duration_s * request.fps))
        layers = draw_layers(request)
        with partial_dir(out_mp4.parent, "animatic") as tmp:
            graph, inputs, pixels = _layer_graph(layers, request, frames, Path(tmp))
            # one thread: one ffmpeg runs per core (concurrency); more only add CPU, and bytes that vary by machine
            cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *inputs,
                   "-filter_complex_threads", "1", "-filter_complex", graph, "-map", "[v]", "-frames:v", str(frames),
                   "-r", str(request.fps), "-c:v", "libx264", "-preset", self.preset, "-qp", str(self.qp),
                   "-g", str(request.fps), "-threads", "1", "-pix_fmt", "yuv420p",
                   "-movflags", "+faststart", "-an", str(out_mp4)]
            try:
                proc = subprocess.run(cmd, input=pixels, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      timeout=max(120.0, 30 * request.duration_s))
            except subprocess.TimeoutExpired as exc:  # bounded: a wedged encoder is a transient failure
                raise TransientError("animatic: ffmpeg did not finish in time") from exc
        if proc.returncode != 0:
            raise PermanentError("animatic: ffmpeg failed: " + proc.stderr.decode("utf-8", "replace")[-500:])


BOB_PX, BOB_S = 5, 3.1  # a breath: the figures rise and fall this far, this slowly
FLAP_S = 0.26  # one open-close cycle of the mouth while a line is spoken


def _layer_graph(layers: list, req: ShotRequest, frames: int, tmp: Path) -> tuple[str, list[str], bytes]:
    """(graph, inputs, the set's pixels for ffmpeg's stdin): the set, the figures (and the open mouth) each moved
    by the camera, the figures with parallax and breath, the open mouth shown on alternate beats while a line is
    spoken, or exactly when `mouth` says (open intervals from the speech itself: the lip-sync backend's). A figure
    layer is cut to what it draws, moved onto just its part of the frame as the whole layer would be; the open
    mouth is a patch. Raw inputs. Where the set and the figures hold their poses alike, the two are composed
    once a pose and each composed frame shown `hold` times; the open mouth still opens on any frame."""
    from PIL import ImageChops

    still, frame, mouth, fps = layers[0].size, (req.width, req.height), req.extra.get("mouth"), req.fps
    speaking = [(float(a), float(b)) for a, b in req.extra.get("speaking", [])]
    cuts = [(layers[0], (0, 0) + still, (0, 0) + frame, "")]  # layer, its box, where that lands, when shown
    cuts += [(fig, fig.getchannel("A").getbbox(), None, "") for fig in layers[1:2]]
    if len(layers) == 3 and speaking:
        talking = "+".join(f"between(t,{a:.3f},{b:.3f})" for a, b in speaking)
        beats = f"lt(mod(t,{FLAP_S}),{FLAP_S / 2})*({talking})"
        if mouth is not None:  # open from each interval's first frame to the frame before its end
            beats = "+".join(f"between(t,{a:.4f},{b - 0.5 / fps:.4f})" for a, b in mouth) or "0"
        diff = ImageChops.difference(layers[1], layers[2]).getbbox(alpha_only=False)
        cuts.append((layers[2], diff, None, f":enable='{beats}'"))
    placed = []  # (image, box, rect, enable, hold) of each layer in the frame
    for img, box, rect, enable in cuts:
        if rect is None and box:
            box, rect = _cut(box, req.camera, still, frame)
        if rect is not None:  # else nothing drawn, or never in the frame
            hold = (_hold(req.camera, PARALLAX if placed else 1.0, still, frame, rect, req.duration_s, fps)
                    if len(placed) < 2 else placed[1][4])  # the open mouth is held as its figure is
            placed.append((img, box, rect, enable, hold))
    together = placed[0][4] if len({p[4] for p in placed[:2]}) == 1 else 1  # set and figures: one rate
    shown = f",fps={fps},tpad=stop_mode=clone:stop={{}}"  # each pose (or composed frame) shown `hold` times
    inputs, parts, pixels = [], [], b""
    for n, (img, box, rect, enable, hold) in enumerate(placed):
        move = _zoompan(req.camera, PARALLAX if n else 1.0, still, frame, box, rect, frames, fps, hold)
        move += shown.format(hold) * (hold > 1 and (n > 1 or together == 1))
        if not n:  # the set through a pipe: as a file it is 10 MB a shot, and PNG costs more than it saves
            inputs += ["-f", "rawvideo", "-pix_fmt", {"RGB": "rgb24"}.get(img.mode, "rgba"), "-s", "%dx%d" % still,
                       "-i", "pipe:0"]
            pixels = img.tobytes()
            parts.append(f"[0:v]{move},setsar=1[l0]")
            continue
        cut = img.crop(box)
        (tmp / f"{n}.raw").write_bytes(cut.tobytes())
        inputs += ["-f", "rawvideo", "-pix_fmt", "rgba", "-s", "%dx%d" % cut.size, "-i", str(tmp / f"{n}.raw")]
        # the breath where the figure's pose was composed: at the pose's own time when composed together
        t = f"trunc(t*{fps / together:g}+0.001)/{fps / together:g}" if n > 1 and together > 1 else "t"
        bob = f"{BOB_PX * req.width / 1080:.2f}*sin(2*PI*{t}/{BOB_S})"
        then = shown.format(together) * (together > 1 and n == min(len(placed), 2) - 1)
        parts += [f"[{n}:v]format=yuva420p,{move}[f{n}]",  # converted once, before the frames are made
                  f"[l{n - 1}][f{n}]overlay=x={rect[0]}:y='{rect[1]}+trunc({bob})':eval=frame{enable}{then}[l{n}]"]
    if together > 1 and len(placed) == 1:  # the set alone
        parts[0] = parts[0].replace(",setsar=1[l0]", shown.format(together) + ",setsar=1[l0]")
    return ";".join(parts + [f"[l{len(placed) - 1}]format=yuv420p[v]"]), inputs, pixels


# --- layout: the set, and where each figure stands ---------------------------------------------

# Per shot size: figure scale and where the head's centre sits in the frame (fraction of its height,
# before the camera moves). Faces stay above the bottom fifth, where subtitles and the platform's
# captions go.
_FRAMING = {"establishing": (0.45, 0.60), "wide": (0.6, 0.56), "medium": (1.0, 0.42), "two-shot": (0.95, 0.42),
            "over-shoulder": (1.05, 0.38), "close-up": (1.7, 0.40), "extreme-close-up": (2.6, 0.40)}


@dataclass(frozen=True)
class Placed:
    """A figure where the still puts it: chest line `base_y` at `cx`, head unit `u` (still pixels)."""

    figure: object  # base.Figure
    cx: float
    base_y: float
    u: float
    back: bool = False  # seen from behind (the listener in an over-the-shoulder)
    face: tuple[float, float, float, float] = (0, 0, 0, 0)  # the head, in the output frame, over the move


@dataclass(frozen=True)
class SetLook:
    """A location's set: the same in every shot there (its name and INT./EXT. decide it)."""

    name: str  # the location as one key: case, spacing and punctuation do not make a new set
    hue: float
    exterior: bool
    props: int  # the seed of its furniture, windows or skyline


@dataclass(frozen=True)
class Layout:
    set: SetLook
    light: str  # day | dusk | night: how the set is lit
    still: tuple[int, int]
    placed: tuple[Placed, ...]


def set_look(location: str, interior: str | None) -> SetLook:
    name = re.sub(r"[\W_]+", " ", location.casefold()).strip()
    seed = int(hashlib.sha256(name.encode()).hexdigest()[:12], 16)
    if interior:
        exterior = interior == "EXT"
    else:  # no INT./EXT. given: read it from the place's name
        exterior = bool(re.search(r"\b(street|park|roof|rooftop|garden|beach|road|market|dock|harbou?r|pier|field|"
                                  r"forest|yard|ext)\b|街|外|公园|天台|门口|码头|广场", location, re.I))
    return SetLook(name, (seed % 1000) / 1000, exterior, seed // 1000)


def lighting(time: str) -> str:
    if re.search(r"night|midnight|夜|凌晨|深夜", time, re.I):
        return "night"
    if re.search(r"evening|dusk|sunset|twilight|黄昏|黃昏|傍晚|晚", time, re.I):
        return "dusk"
    return "day"


def layout(req: ShotRequest, rules: int = 3) -> Layout:
    """Where the still puts the set and each figure, and each head's box in the output frame.
    Rules 3 frame the faces above the subtitle band; rules 2 (the image backend's) as they were."""
    W, H = _even(req.width * _OVERSCAN), _even(req.height * _OVERSCAN)
    look = set_look(req.location, req.extra.get("interior"))
    figures = list(req.figures)
    if req.extra.get("under_card") or req.size == "insert" or not figures:
        return Layout(look, lighting(req.time), (W, H), ())
    s = req.width / 1080  # everything is designed at 1080 wide
    scale, head_at = _FRAMING.get(req.size, (1.0, 0.42))
    u = 100 * scale * s
    base_zoom = 1.0 + (_OVERSCAN - 1.0) * 0.5

    def chest(frac: float, unit: float) -> float:  # the chest line that puts the head at `frac` of the frame
        return (H / 2 + (frac - 0.5) * H / base_zoom) + 1.5 * unit if rules >= 3 else H * frac

    placed: list[Placed] = []
    if req.size == "over-shoulder" and len(figures) >= 2:
        placed.append(Placed(figures[0], W * 0.62, chest(head_at if rules >= 3 else 0.62, u), u))
        placed.append(Placed(figures[1], W * 0.18, chest(0.52 if rules >= 3 else 0.78, u * 1.6), u * 1.6, back=True))
    else:
        if req.size in ("close-up", "extreme-close-up"):
            figures = figures[:1]
        old = 0.85 if req.size in ("establishing", "wide") else \
            0.95 if req.size in ("close-up", "extreme-close-up") else 0.70
        placed += [Placed(f, W * (i + 1) / (len(figures) + 1), chest(head_at if rules >= 3 else old, u), u)
                   for i, f in enumerate(figures)]
    bob = BOB_PX * req.width / 1080
    out = []
    for p in placed:
        hy = p.base_y - 1.5 * p.u
        head = (p.cx - 1.1 * p.u, hy - 1.6 * p.u, p.cx + 1.3 * p.u, hy + 1.1 * p.u)
        x0, y0, x1, y1 = _to_frame(head, req.camera, PARALLAX, (W, H), (req.width, req.height))
        out.append(Placed(p.figure, p.cx, p.base_y, p.u, p.back,
                          (max(0.0, x0), max(0.0, y0 - bob), min(req.width, x1), min(req.height, y1 + bob))))
    return Layout(look, lighting(req.time), (W, H), tuple(out))


# --- drawing -----------------------------------------------------------------------------------

def draw_still(req: ShotRequest, rules: int = 3):
    """The shot's still at overscan size (RGB Pillow image): set, figures and labels in one."""
    layers = draw_layers(req, talking=False, rules=rules)
    img = layers[0]
    for layer in layers[1:]:
        img.paste(layer, (0, 0), layer)
    return img


def draw_layers(req: ShotRequest, talking: bool = True, rules: int = 3) -> list:
    """[set (RGB), figures (RGBA)], plus figures mid-word (RGBA) when someone speaks: the set
    carries the place, cards and labels; the figures move on their own layer."""
    from PIL import Image, ImageDraw

    lay = layout(req, rules)
    W, H = lay.still
    img = Image.new("RGB", (W, H))
    s = req.width / 1080  # scale factor: everything is designed at 1080 wide
    _draw_background(img, scenery(lay) if rules >= 3 else _scenery_2(req.location, req.time), s)
    d = ImageDraw.Draw(img)
    clean = req.extra.get("overlays") == "clean"
    layers = [img]
    if req.extra.get("under_card"):
        pass  # the episode's text card is burned over this plain background
    elif req.size == "insert" or not lay.placed and rules < 3:
        _draw_card(d, W, H, s, req.action or req.location)
    elif lay.placed:  # (rules 3: a place with nobody in it is the empty set, its action in the box)
        speaking = any(p.figure.speaking for p in lay.placed) and talking
        for mouth in ((0.0, 1.0) if speaking else (None,)):
            layer = Image.new("RGBA", (W, H), (0, 0, 0, 0))
            draw = ImageDraw.Draw(layer)
            for p in lay.placed:
                _draw_person(draw, p.cx, p.base_y, p.u / 100, p.figure, back=p.back,
                             mouth=mouth if p.figure.speaking and not p.back else None, rules=rules,
                             to_bottom=H if rules >= 3 and req.size not in ("establishing", "wide") else None)
            layers.append(layer)
    shown = lay.placed or rules >= 3 and req.size != "insert" and not req.extra.get("under_card")
    if not clean and req.action and shown and req.size in ("establishing", "wide", "medium"):
        _draw_action_box(d, W, H, s, req.action)
    if req.caption and not clean:
        _draw_caption(d, W, H, s, req.caption)
    return layers


def _even(v: float) -> int:
    return int(round(v / 2) * 2)


@dataclass(frozen=True)
class Scenery:
    """What the set's layer draws: wall gradient and floor, the skyline or the back wall, and their lights."""

    top: tuple
    bottom: tuple
    floor: tuple
    exterior: bool
    props: random.Random
    window: tuple  # an interior's window: the sky outside
    shade: tuple  # an exterior's buildings
    lit: tuple = (250, 220, 140)  # lit windows


def _rgb(h: float, s: float, v: float) -> tuple:
    import colorsys

    return tuple(int(c * 255) for c in colorsys.hsv_to_rgb(h % 1, s, v))


def scenery(lay: Layout) -> Scenery:
    """The set of `lay`'s location in its own hue, lit for the time of day: the same room at night is
    the same room, darker, its window dark."""
    look, light = lay.set, lay.light
    hue, rng = look.hue, random.Random(look.props)
    if look.exterior:  # a sky over the street: blue by day, orange at dusk, dark blue at night
        sky = {"day": (0.57, 0.35, 0.92), "dusk": (0.07, 0.55, 0.85), "night": (0.64, 0.6, 0.22)}[light]
        ground = {"day": 0.55, "dusk": 0.45, "night": 0.16}[light]
        top, bottom = _rgb(*sky), _rgb(sky[0] + 0.03, sky[1] * 0.8, sky[2] * 0.8)
        shade = _rgb(hue, 0.3, {"day": 0.5, "dusk": 0.35, "night": 0.12}[light])
        return Scenery(top, bottom, _rgb(hue, 0.2, ground), True, rng, top, shade)
    value = {"day": 1.0, "dusk": 0.7, "night": 0.34}[light]
    top, bottom = _rgb(hue, 0.25, 0.92 * value), _rgb(hue + 0.05, 0.35, 0.75 * value)
    window = {"day": (190, 215, 240), "dusk": (235, 150, 90), "night": (20, 26, 52)}[light]
    return Scenery(top, bottom, _rgb(hue + 0.5, 0.3, 0.55 * value), False, rng, window, bottom)


def _scenery_2(location: str, time: str) -> Scenery:
    """Drawing rules 2 (the image backend's keyframes): a hue per exact location name, night in blues."""
    rng = random.Random(hashlib.sha256(location.encode()).digest())
    hue = rng.random()
    if re.search(r"night|夜|evening|dusk|黄昏", time, re.I):
        top, bottom, floor = _rgb(0.62 + hue * 0.1, 0.55, 0.18), _rgb(0.62 + hue * 0.1, 0.45, 0.35), _rgb(hue, 0.3, 0.25)
    else:
        top, bottom, floor = _rgb(hue, 0.25, 0.92), _rgb(hue + 0.05, 0.35, 0.75), _rgb(hue + 0.5, 0.3, 0.55)
    exterior = bool(re.search(r"\b(street|park|roof|garden|beach|road|market|ext)\b|街|外|公园|天台|门口", location, re.I))
    return Scenery(top, bottom, floor, exterior, random.Random(hashlib.sha256(("props|" + location).encode()).digest()),
                   tuple(min(255, c + 40) for c in top), tuple(max(0, c - 40) for c in bottom))


def _draw_background(img, sc: Scenery, s: float) -> None:
    from PIL import ImageDraw

    W, H = img.size
    d = ImageDraw.Draw(img)
    horizon = int(H * 0.62)
    for yy in range(0, horizon, 4):  # vertical gradient in 4 px bands: cheap and smooth enough
        t = yy / horizon
        c = tuple(int(a + (b - a) * t) for a, b in zip(sc.top, sc.bottom))
        d.rectangle([0, yy, W, yy + 4], fill=c)
    d.rectangle([0, horizon, W, H], fill=sc.floor)
    rng = sc.props
    if sc.exterior:  # skyline silhouettes
        x = 0
        while x < W:
            bw = rng.randint(int(90 * s), int(240 * s))
            bh = rng.randint(int(200 * s), int(700 * s))
            d.rectangle([x, horizon - bh, x + bw, horizon], fill=sc.shade)
            for wy in range(horizon - bh + 20, horizon - 20, int(60 * s)):
                for wx in range(x + 15, x + bw - 20, int(45 * s)):
                    if rng.random() < 0.5:
                        d.rectangle([wx, wy, wx + int(18 * s), wy + int(26 * s)], fill=sc.lit)
            x += bw + rng.randint(0, int(30 * s))
    else:  # a window and a door on the back wall
        wx = rng.randint(int(W * 0.1), int(W * 0.55))
        d.rectangle([wx, int(H * 0.18), wx + int(W * 0.3), int(H * 0.42)], fill=sc.window, outline=sc.floor,
                    width=int(12 * s))
        dx = rng.randint(int(W * 0.65), int(W * 0.8))
        d.rectangle([dx, int(H * 0.3), dx + int(W * 0.16), horizon], fill=tuple(max(0, c - 50) for c in sc.bottom))


def _draw_person(d, cx: float, base_y: float, scale: float, fig, back: bool = False, turn: bool = False,
                 mouth: float | None = None, to_bottom: float | None = None, rules: int = 3) -> None:
    """A bust: shoulders, neck, head, hair, face. `base_y` is the chest line; `turn` draws the face
    a three-quarter turn to the right; `mouth` (0 closed .. 1 open) overrides the speaking mouth;
    `to_bottom` carries the shoulders down to that line (a figure framed at the chest)."""
    lk = look_for(fig.id, fig.description, rules)
    u = 100 * scale  # head radius unit
    sw = u * 1.9 * lk.build
    # torso
    bottom = max(base_y + u * 3.2, to_bottom or 0)
    d.rounded_rectangle([cx - sw, base_y - u * 0.4, cx + sw, bottom], radius=int(u * 0.7), fill=lk.clothing)
    d.polygon([(cx - u * 0.35, base_y - u * 0.4), (cx + u * 0.35, base_y - u * 0.4), (cx, base_y + u * 0.6)],
              fill=lk.accent)
    # neck and head
    hy = base_y - u * 1.5
    d.rectangle([cx - u * 0.35, hy + u * 0.6, cx + u * 0.35, base_y - u * 0.3], fill=lk.skin)
    if lk.hair_style == "long":
        d.rounded_rectangle([cx - u * 1.1, hy - u * 0.9, cx + u * 1.1, hy + u * 1.6], radius=int(u * 0.8), fill=lk.hair)
    d.ellipse([cx - u * 0.9, hy - u * 1.05, cx + u * 0.9, hy + u * 1.05], fill=lk.skin)
    if back:  # the back of the head: hair over all of it (rules 2 left a sliver of chin, like a smile)
        d.ellipse([cx - u * 0.95, hy - u * 1.1, cx + u * 0.95, hy + u * (1.0 if rules < 3 else 1.12)], fill=lk.hair)
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
