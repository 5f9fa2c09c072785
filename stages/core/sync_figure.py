"""A lip-sync figure that needs no model: how well mouth motion follows speech.

Per frame: the speech envelope (RMS of the audio under that frame) and the mouth region's motion
energy (mean absolute change of its grey levels from the frame before). A mouth moves when the sound
changes (it opens as a syllable starts, closes as it ends), so the energy is compared with how much
the envelope changes from frame to frame. Both are smoothed over three frames and compared by Pearson
correlation, at the best lag within `MAX_LAG_S` (a video that runs a frame or two early or late still
syncs; one a second off does not). 1 is perfect, 0 none.

Measured on the animatic (tests/test_sync_figure.py; 540x960, 24 fps, two 5 s lines): synced 0.55
and 0.76; the same clips against the other line's audio 0.30 and 0.16, shifted 1 s 0.09 and 0.31, the
animatic's fixed-rate flap 0.25 and 0.29. Against the envelope's level instead of its change the
synced figures were 0.37 and 0.71 with the other line's audio at 0.32: less apart. At 12 fps the
figure does not tell them apart (synced 0.36 and 0.51, the other line's 0.19 and 0.55): read it on
clips of 24 fps or more.
"""

from __future__ import annotations

from pathlib import Path

MAX_LAG_S = 0.2  # audio and picture may be this far apart and still count as in sync
SMOOTH = 3  # frames


def speech_envelope(audio: Path, fps: int, frames: int | None = None):
    """RMS of the audio under each video frame (float array, one value per frame)."""
    import numpy as np

    from stages.core.media import decode_audio

    rate = 16_000
    x = decode_audio(audio, rate=rate, what="reading speech").mean(axis=1)
    hop = rate / fps
    n = frames if frames is not None else int(len(x) / hop)
    out = np.zeros(n, dtype=np.float64)
    for i in range(n):
        seg = x[int(i * hop):int((i + 1) * hop)]
        out[i] = float(np.sqrt(np.mean(seg.astype(np.float64) ** 2))) if len(seg) else 0.0
    return out


def mouth_intervals(envelope, fps: int, *, floor: float = 0.15) -> list[tuple[float, float]]:
    """Where a drawn mouth is open (seconds), from a speech envelope: at each syllable's peak (a frame
    near its neighbourhood's loudest, and above `floor` of the loudest), so the mouth opens and closes
    with the syllables rather than at a fixed rate."""
    import numpy as np

    e = np.asarray(envelope, dtype=np.float64)
    if not len(e) or e.max() <= 0:
        return []
    e = e / e.max()
    opened = []
    for i in range(len(e)):
        near = e[max(0, i - 2):i + 3].max()
        opened.append(bool(e[i] > floor and e[i] >= 0.75 * near))
    out, start = [], None
    for i, o in enumerate([*opened, False]):
        if o and start is None:
            start = i
        elif not o and start is not None:
            out.append((round(start / fps, 4), round(i / fps, 4)))
            start = None
    return out


def motion_energy(video: Path, box: tuple[float, float, float, float] | None = None, *, start_frame: int = 0,
                  frames: int | None = None):
    """(per-frame motion energy in `box` (x0, y0, x1, y1, pixels; None: the 4x4 cell of the frame that
    moves most), the box used). The first frame's energy is 0."""
    import numpy as np

    from stages.core.media import probe

    info = probe(video)
    w, h = info.width, info.height
    gray = _gray_frames(video, w, h, start_frame, frames)
    if len(gray) < 2:
        return np.zeros(len(gray)), box
    diff = np.abs(np.diff(gray.astype(np.int16), axis=0)).astype(np.float32)
    if box is None:  # the cell whose motion varies most: chosen by motion alone, never by the speech
        best, box = -1.0, (0, 0, w, h)
        for r in range(4):
            for c in range(4):
                cell = (c * w // 4, r * h // 4, (c + 1) * w // 4, (r + 1) * h // 4)
                v = float(diff[:, cell[1]:cell[3], cell[0]:cell[2]].mean(axis=(1, 2)).std())
                if v > best:
                    best, box = v, cell
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, max(x1, x0 + 1)), min(h, max(y1, y0 + 1))
    energy = diff[:, y0:y1, x0:x1].mean(axis=(1, 2))
    return np.concatenate([[0.0], energy]), (x0, y0, x1, y1)


def _gray_frames(video: Path, w: int, h: int, start: int, frames: int | None):
    import subprocess

    import numpy as np

    from stages.core.errors import RenderError
    from stages.core.media import ffmpeg_exe

    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(video), "-vf",
           f"select=between(n\\,{start}\\,{start + (frames or 10**9) - 1}),format=gray", "-fps_mode", "passthrough",
           "-f", "rawvideo", "-"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    if proc.returncode != 0:
        raise RenderError(f"reading {video.name} for its sync figure failed",
                          text=proc.stderr.decode("utf-8", "replace")[-300:])
    data = np.frombuffer(proc.stdout, dtype=np.uint8)
    return data[:len(data) // (w * h) * w * h].reshape(-1, h, w)


def correlation_at_best_lag(a, b, fps: int, max_lag_s: float = MAX_LAG_S) -> tuple[float, float]:
    """(Pearson correlation of the smoothed series at the best lag, that lag in seconds; positive: the
    picture follows the sound)."""
    import numpy as np

    def smooth(x):
        x = np.asarray(x, dtype=np.float64)
        return np.convolve(x, np.ones(SMOOTH) / SMOOTH, mode="same") if len(x) >= SMOOTH else x

    a, b = smooth(a), smooth(b)
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    best, at = -1.0, 0
    for lag in range(-int(round(max_lag_s * fps)), int(round(max_lag_s * fps)) + 1):
        x, y = (a[:n - lag], b[lag:]) if lag >= 0 else (a[-lag:], b[:n + lag])
        if len(x) < 4 or x.std() == 0 or y.std() == 0:
            continue
        r = float(np.corrcoef(x, y)[0, 1])
        if r > best:
            best, at = r, lag
    return (round(best, 3) if best > -1.0 else 0.0), round(at / fps, 3)


def sync_figure(video: Path, audio: Path, fps: int, box=None, *, start_frame: int = 0,
                frames: int | None = None) -> dict:
    """{figure, lag_s, region}: the speech envelope of `audio` against mouth motion in `video`'s frames
    [start_frame, start_frame + frames) (the audio starts with that piece)."""
    import numpy as np

    energy, used = motion_energy(video, box, start_frame=start_frame, frames=frames)
    env = speech_envelope(audio, fps, len(energy))
    change = np.abs(np.diff(env, prepend=env[:1]))
    figure, lag = correlation_at_best_lag(change, energy, fps)
    return {"figure": figure, "lag_s": lag, "region": [int(v) for v in used] if used else None,
            "region_from": "face" if box is not None else "most-moving cell"}
