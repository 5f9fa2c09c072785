"""A finished episode -> its poster (cover) image: one frame with the series title and episode drawn on.

The frame is a central shot with people in it; the text sits on a dark gradient band in the lower
third, above the strip that platform UI covers, in the bundled CJK font.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from stages.core.artifacts import atomic_path, partial_file, spec_hash
from stages.schema import ShotList

JPEG_QUALITY = 88
VERSION = 1  # in each poster's key: a change to how posters are drawn remakes them
NEARBY = 2  # how many shots either side of the middle may stand in for an empty one


def poster_frame(cut, shotlist: ShotList) -> tuple[Path, float]:
    """(clip, time in it) of the poster frame: the chosen shot's own clip, the picture without subtitles
    or cards (`cut`: the episode's `units.Cut`)."""
    at, i = poster_time(shotlist), 0
    while i < len(cut.durations) - 1 and at >= cut.durations[i]:
        at -= cut.durations[i]
        i += 1
    return cut.clips[i], at


def poster_time(shotlist: ShotList, *, lead_s: float = 0.0) -> float:
    """When to grab the poster frame: the middle of the shot at the episode's midpoint, or of the
    nearest shot within two of it that has characters on screen (an empty street sells nothing).

    Times are on the shot list's clock; `lead_s` (the opening card's length) moves them onto the
    episode's.
    """
    shots = shotlist.shots
    if not shots:
        raise ValueError(f"{shotlist.id} has no shots")
    starts, t = [], 0.0
    for s in shots:
        starts.append(t)
        t += s.duration_s
    mid = t / 2
    centre = next((i for i, s in enumerate(shots) if starts[i] <= mid < starts[i] + s.duration_s), len(shots) - 1)
    nearby = [i for i in range(max(0, centre - NEARBY), min(len(shots), centre + NEARBY + 1)) if shots[i].characters]

    def shot_mid(i: int) -> float:
        return starts[i] + shots[i].duration_s / 2

    # nearest by position, then by time, so a long neighbour does not lose to a short far one
    pick = min(nearby, key=lambda i: (abs(i - centre), abs(shot_mid(i) - mid))) if nearby else centre
    return round(lead_s + shot_mid(pick), 4)


def make_poster(mp4: Path, at_s: float, title: str, episode_label: str, out_jpg: Path, *,
                font_name: str = "Noto Sans CJK SC") -> None:
    """Write `out_jpg`: the frame of `mp4` at `at_s` (clamped into the video) at the video's size,
    with `title` and `episode_label` wrapped to the width on a gradient band."""
    from PIL import Image

    from stages.core.errors import RenderError
    from stages.core.media import image_validator, probe, run_ffmpeg

    st = mp4.stat()  # the clip's name is its content key; size and time catch it made again
    key = "dramaforge-poster:" + spec_hash("poster", {
        "version": VERSION, "clip": [mp4.name, st.st_size, st.st_mtime_ns], "at_s": round(at_s, 4), "title": title,
        "label": episode_label, "font": font_name})
    if _made_from(out_jpg) == key.encode():  # a line edited elsewhere in the episode: the same poster
        return
    info = probe(mp4)
    # Past the last frame's timestamp ffmpeg writes no frame at all: stay 1.5 frames inside the end.
    last = max(0.0, info.duration_s - 1.5 / (info.fps or 30.0))
    at_s = min(max(0.0, at_s), last)
    out_jpg.parent.mkdir(parents=True, exist_ok=True)
    # Named like every partial file, so a restart after kill -9 sweeps it too.
    fd, frame = partial_file(out_jpg.parent, out_jpg.stem, ".png", tag="frame")
    frame_name = str(frame)
    os.close(fd)
    try:
        # -ss before -i: a keyframe seek then an exact decode to the time, not a decode from 0
        run_ffmpeg(["-ss", f"{at_s:.4f}", "-i", str(mp4), "-map", "0:v:0", "-frames:v", "1", "-update", "1",
                    str(frame_name)], what=f"grabbing the poster frame of {mp4.name}")
        if os.path.getsize(frame_name) == 0:
            raise RenderError(f"no frame of {mp4.name} at {at_s:.3f} s", hint="is the video complete?")
        with Image.open(frame_name) as im:
            frame = im.convert("RGB")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(frame_name)
    poster = draw_title(frame, title, episode_label, font_name=font_name)
    with atomic_path(out_jpg, validate=image_validator(width=frame.width, height=frame.height)) as tmp:
        poster.save(tmp, "JPEG", quality=JPEG_QUALITY, optimize=True, comment=key.encode())


def _made_from(jpg: Path) -> bytes | None:
    """The key a poster was made from (its JPEG comment), or None where there is no whole poster."""
    from PIL import Image, UnidentifiedImageError

    try:
        with open(jpg, "rb") as f:
            f.seek(-2, os.SEEK_END)
            if f.read() != b"\xff\xd9":  # cut short (written atomically: only damage from outside)
                return None
        with Image.open(jpg) as im:  # the header alone: the comment is before the picture
            return im.info.get("comment")
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def draw_title(frame, title: str, episode_label: str, *, font_name: str = "Noto Sans CJK SC"):
    """`frame` (a Pillow RGB image) with the title block drawn on; returns a new image."""
    from PIL import Image, ImageDraw

    from stages.core.fonts import pil_font
    from stages.core.text import wrap_text

    w, h = frame.size
    max_w = w * 0.86
    size = max(12, w // 9)
    # a long title shrinks rather than covering the picture with more than three lines
    while True:
        font = pil_font(size, font_name)
        lines = [ln for para in title.splitlines() for ln in wrap_text(para, font, max_w)]
        if len(lines) <= 3 or size <= 12:
            break
        size = max(12, int(size * 0.85))
    small = pil_font(max(10, int(size * 0.5)), font_name)
    label = wrap_text(episode_label, small, max_w)
    gap = int(size * 0.25)
    line_h = int(size * 1.25)
    label_h = int(small.size * 1.3)
    block_h = len(lines) * line_h + (gap + len(label) * label_h if label else 0)
    bottom = h - int(h * 0.12)  # clear of the bottom strip that a feed's captions and buttons cover
    top = max(0, bottom - block_h)

    # the band: transparent above the text, darkening to ~80% black from the text down
    band_top = max(0, top - int(size * 1.5))
    overlay = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    od = ImageDraw.Draw(overlay)
    ramp = max(1, top - band_top)
    for y in range(band_top, h):
        alpha = int(205 * min(1.0, (y - band_top) / ramp))
        od.line([(0, y), (w, y)], fill=(0, 0, 0, alpha))
    out = Image.alpha_composite(frame.convert("RGBA"), overlay)

    d = ImageDraw.Draw(out)
    stroke = max(1, size // 24)
    y = top
    for ln in lines:
        d.text((w / 2, y), ln, font=font, fill=(255, 255, 255, 255), anchor="mt",
               stroke_width=stroke, stroke_fill=(0, 0, 0, 255))
        y += line_h
    y += gap
    for ln in label:
        d.text((w / 2, y), ln, font=small, fill=(255, 214, 102, 255), anchor="mt",
               stroke_width=max(1, stroke // 2), stroke_fill=(0, 0, 0, 255))
        y += label_h
    return out.convert("RGB")
