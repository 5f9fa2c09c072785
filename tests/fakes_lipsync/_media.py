"""What the fake lip-sync models make, and how a test sees it: the video they were sent with a red box
drawn over the lower middle of the frame (where a mouth would be redrawn) and the audio they were
sent as its sound track (a real provider's clip has sound; dramaforge drops it)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from stages.core.media import probe, run_ffmpeg

BOX = (0.3, 0.55, 0.4, 0.3)  # x, y, width, height of the mark, as fractions of the frame


def marked(video: bytes, audio: bytes) -> bytes:
    """`video` with the mark drawn on every frame and `audio` as its sound, as an mp4 (made by ffmpeg)."""
    x, y, w, h = BOX
    with tempfile.TemporaryDirectory(prefix="fake-lipsync-") as tmp:
        src, wav, out = Path(tmp) / "in.mp4", Path(tmp) / "in.wav", Path(tmp) / "out.mp4"
        src.write_bytes(video)
        wav.write_bytes(audio)
        run_ffmpeg(["-i", str(src), "-i", str(wav), "-map", "0:v:0", "-map", "1:a:0",
                    "-vf", f"drawbox=x=iw*{x}:y=ih*{y}:w=iw*{w}:h=ih*{h}:color=red:t=fill",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    "-movflags", "+faststart", str(out)], what="drawing the fake lip-sync mark")
        return out.read_bytes()


def video_info(video: bytes):
    """`probe` of an mp4 given as bytes (None when it is not a video)."""
    with tempfile.TemporaryDirectory(prefix="fake-lipsync-") as tmp:
        path = Path(tmp) / "in.mp4"
        path.write_bytes(video)
        try:
            info = probe(path)
        except Exception:  # noqa: BLE001 -- any decoder's complaint: not a video
            return None
        return info if info.video_codec else None


def mark_seen(mp4: Path) -> bool:
    """Whether the middle frame of `mp4` shows the mark (the box's inside is red)."""
    import av
    import numpy as np

    with av.open(str(mp4)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    frame = frames[len(frames) // 2].astype(np.int32)
    rows, cols = frame.shape[:2]
    x, y, w, h = BOX
    inside = frame[int(rows * (y + h * 0.25)):int(rows * (y + h * 0.75)), int(cols * (x + w * 0.25)):int(cols * (x + w * 0.75))]
    r, g, b = (inside[..., i].mean() for i in range(3))
    return bool(r > 180 and g < 70 and b < 70)
