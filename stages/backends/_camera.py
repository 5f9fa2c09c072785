"""The animatic's camera: each move as a zoom and a pan over a still drawn larger than the frame, the
same move for every layer (figures with more of it: parallax), and that move as an ffmpeg zoompan."""

from __future__ import annotations

import math

OVERSCAN = 1.25  # the still is drawn this much larger than the frame: room for the camera to move
PARALLAX = 1.3  # the figures move this much more than the set behind them
# zoompan places its crop on whole pixels of the still (0.8 of the frame's) and a figure's cut on even ones:
# a layer is only ever where the camera puts it to about a pixel, so holding a pose while the camera moves
# it less than that adds no step the placement does not already make
HOLD_PX = 1.0


def move(camera: str, strength: float = 1.0) -> tuple[tuple[float, float], tuple | None, tuple | None]:
    """A camera move as (zoom at start, at end) and the crop's x and y as a fraction of the room left
    to pan, (start, end) (None: centred). Zoom 1 shows the whole still, OVERSCAN exactly one frame."""
    k, m = strength, min(strength, 1.0)
    base = 1.0 + (OVERSCAN - 1.0) * 0.5
    return {
        "push-in": ((base, base + 0.18 * k), None, None),
        "pull-out": ((base + 0.18 * k, base), None, None),
        "pan-left": ((OVERSCAN, OVERSCAN), (0.5 + 0.3 * k, 0.5 - 0.3 * k), None),
        "pan-right": ((OVERSCAN, OVERSCAN), (0.5 - 0.3 * k, 0.5 + 0.3 * k), None),
        "tilt-up": ((OVERSCAN, OVERSCAN), None, (0.5 + 0.5 * m, 0.5 - 0.5 * m)),
        "tilt-down": ((OVERSCAN, OVERSCAN), None, (0.5 - 0.5 * m, 0.5 + 0.5 * m)),
    }.get(camera, ((base, base + 0.02 * k), None, None))  # static: a slow drift keeps a held frame alive


def hold(camera: str, strength: float, still, frame, rect, duration_s: float, fps: int) -> int:
    """Frames each pose of a layer shown in the frame's `rect` is held: the most (up to 3, a divisor of
    fps) in which the camera moves no point of the rect by over HOLD_PX. A slow drift then draws its
    layers at 10 fps (scaling a layer to its rect, per pose, was half of a shot's CPU); pans and pushes
    stay at every frame."""
    (iw, ih), (w, h), steps = still, frame, 10
    corners = [(rect[0], rect[1]), (rect[0], rect[3]), (rect[2], rect[1]), (rect[2], rect[3])]

    def seen(t):  # the still's points at the rect's corners at progress t
        z, x, y = view(camera, strength, still, t)
        return [(x + cx * iw / (z * w), y + cy * ih / (z * h)) for cx, cy in corners]

    moved = 0.0
    for i in range(steps):  # the farthest any of them travels in the frame in a tenth of the move
        z, x, y = view(camera, strength, still, (i + 1) / steps)
        moved = max(moved, *(math.hypot((px - x) * z * w / iw - cx, (py - y) * z * h / ih - cy)
                             for (px, py), (cx, cy) in zip(seen(i / steps), corners)))
    per_frame = moved * steps / max(duration_s * fps, 1)
    return max(k for k in (1, 2, 3) if k == 1 or (fps % k == 0 and per_frame * k <= HOLD_PX))


def zoompan(camera: str, strength: float, still, frame, box, rect, frames: int, fps: int, hold: int = 1) -> str:
    """`move` as a zoompan that shows the still's `box` (a layer cut to it) in the frame's `rect` as the
    camera shows the whole still in the whole frame; `on` is the output frame number (each pose `hold`
    frames long: zoompan makes one per pose, at fps / hold)."""
    (iw, ih), (w, h), p = still, frame, f"min(on*{hold}/{max(frames - 1, 1)},1)"
    (z0, z1), xs, ys = move(camera, strength)

    def lerp(a: float, b: float) -> str:
        return f"{a:.4f}{'+' if b >= a else '-'}{abs(b - a):.4f}*{p}"

    z = f"({lerp(z0, z1)})"
    x = f"({iw}-{iw}/{z})*({lerp(*xs)})" if xs else f"{iw / 2}-{iw / 2}/{z}"
    y = f"({ih}-{ih}/{z})*({lerp(*ys)})" if ys else f"{ih / 2}-{ih / 2}/{z}"
    k = w * (box[2] - box[0]) / (iw * (rect[2] - rect[0]))  # the cut's zoom per the still's: 1 for the set
    if box != (0, 0) + still:  # a cut (yuva420p: it starts on even pixels): on the nearest, not the one before
        x, y = (f"2*round(({v}+{a * n / o:.4f}/{z}-{b})/2-0.25)" for v, a, n, o, b in
                ((x, rect[0], iw, w, box[0]), (y, rect[1], ih, h, box[1])))
    return (f"zoompan=z='{k:.6f}*{z}':x='{x}':y='{y}':d={-(-frames // hold)}:s={rect[2] - rect[0]}x{rect[3] - rect[1]}"
            f":fps={fps // hold}")


def view(camera: str, strength: float, still: tuple[int, int], t: float) -> tuple[float, float, float]:
    """The camera at progress t (0..1) of its move: its zoom, and the still's point at the frame's top left."""
    (iw, ih), ((z0, z1), xs, ys) = still, move(camera, strength)
    z = z0 + (z1 - z0) * t
    return (z, (iw - iw / z) * (xs[0] + (xs[1] - xs[0]) * t) if xs else iw / 2 - iw / z / 2,
            (ih - ih / z) * (ys[0] + (ys[1] - ys[0]) * t) if ys else ih / 2 - ih / z / 2)


def to_frame(box, camera: str, strength: float, still: tuple[int, int], frame: tuple[int, int]):
    """A box on the still -> the smallest box holding it in the output frame at every moment of the
    camera move (the mapping is linear in the move's progress, so its two ends bound it)."""
    (iw, ih), (w, h) = still, frame
    corners = [((box[i] - x) * z * w / iw, (box[i + 1] - y) * z * h / ih)
               for z, x, y in (view(camera, strength, still, t) for t in (0.0, 1.0)) for i in (0, 2)]
    return (*map(min, zip(*corners)), *map(max, zip(*corners)))


def cut(box, camera: str, still: tuple[int, int], frame: tuple[int, int]):
    """(cut, rect) of a figure layer that draws in `box`: the frame's part (even) where that ever shows, and
    the still's part the camera ever shows there, in its aspect. (None, None): never in the frame."""
    (iw, ih), (w, h), m = still, frame, 3  # m: the resampler's reach, in still pixels
    x0, y0, x1, y1 = to_frame((box[0] - m, box[1] - m, box[2] + m, box[3] + m), camera, PARALLAX, still, frame)
    r = max(0, int(x0 // 2 * 2)), max(0, int(y0 // 2 * 2)), min(w, int(-(-x1 // 2) * 2)), min(h, int(-(-y1 // 2) * 2))
    if r[2] <= r[0] or r[3] <= r[1]:
        return None, None
    seen = [(x + r[i] * iw / (z * w), y + r[i + 1] * ih / (z * h))
            for z, x, y in (view(camera, PARALLAX, still, t) for t in (0.0, 1.0)) for i in (0, 2)]
    (lx, ly), (hx, hy) = map(min, zip(*seen)), map(max, zip(*seen))
    bw = math.ceil(max(hx - lx + 2, (hy - ly + 2) * (r[2] - r[0]) / (r[3] - r[1])))
    bh = round(bw * (r[3] - r[1]) / (r[2] - r[0]))
    cx, cy = math.floor((lx + hx - bw) / 2), math.floor((ly + hy - bh) / 2)
    return (cx, cy, cx + bw, cy + bh), r
