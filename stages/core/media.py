"""Media helpers shared by stages: the bundled ffmpeg, probing with PyAV, validation, escaping.

ffmpeg comes from imageio-ffmpeg (a static build with libx264, libass and aac); there is no
ffprobe, so probing and decode checks use PyAV.
"""

from __future__ import annotations

import contextlib
import functools
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from stages.core.errors import RenderError


@functools.cache
def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


FFMPEG_TIMEOUT_S = 3600  # a wedged encoder ends in a named error, not a render that never returns


def run_ffmpeg(args: list[str], *, cwd: Path | None = None, what: str = "ffmpeg",
               timeout_s: float = FFMPEG_TIMEOUT_S) -> None:
    """Run ffmpeg with an argument list (never a shell string); raise RenderError with its log."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    try:
        proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:  # run() kills the child before raising
        raise RenderError(f"{what} took over {timeout_s:.0f} s and was stopped") from exc
    _check_exit(proc.returncode, proc.stderr, what)


@contextlib.contextmanager
def ffmpeg_running(args: list[str], *, what: str = "ffmpeg", timeout_s: float = FFMPEG_TIMEOUT_S):
    """`run_ffmpeg`, but in the background while the block runs: on leaving it, ffmpeg is waited for
    (the same errors); if the block raises, ffmpeg is stopped and its partial output left to the caller."""
    import tempfile
    import time

    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    deadline = time.monotonic() + timeout_s
    with tempfile.TemporaryFile() as log:  # never an undrained pipe: ffmpeg would stop when it filled
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
        try:
            yield
            proc.wait(timeout=max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired as exc:
            raise RenderError(f"{what} took over {timeout_s:.0f} s and was stopped") from exc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        log.seek(0)
        _check_exit(proc.returncode, log.read(), what)


def _check_exit(returncode: int, stderr: bytes, what: str) -> None:
    if returncode != 0:
        tail = stderr.decode("utf-8", "replace").strip().splitlines()[-8:]
        raise RenderError(
            f"{what} failed (ffmpeg exit {returncode})",
            text="\n    ".join(tail) or None,
            hint=_ffmpeg_hint("\n".join(tail)),
        )


def decode_audio(path: Path, *, rate: int = 48_000, filters: str | None = None, what: str = "decoding audio"):
    """Any audio ffmpeg reads -> float32 array (samples, 2) at `rate`, optionally through `filters`.

    A WAV or FLAC without filters is decoded in-process (PyAV: the same decoder and resampler as the
    ffmpeg command, the same samples, without a process start per file). Other codecs go through
    ffmpeg: it trims their encoder delay and padding to the stream's length, a plain decode does not."""
    import numpy as np

    if filters is None and Path(path).suffix.lower() in (".wav", ".flac"):
        try:
            return _decode_in_process(path, rate)
        except Exception as exc:  # noqa: BLE001 - PyAV's errors are many; the message says which
            raise RenderError(f"{what} {path} failed: {exc}",
                              hint="is it an audio file ffmpeg can read (wav, mp3, m4a, ogg, flac)?") from exc
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:a:0",
           *(["-af", filters] if filters else []), "-ac", "2", "-ar", str(rate), "-f", "f32le", "-"]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=FFMPEG_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise RenderError(f"{what} {Path(path).name} took over {FFMPEG_TIMEOUT_S:.0f} s and was stopped") from exc
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-4:]
        raise RenderError(f"{what} {path} failed (ffmpeg exit {proc.returncode})", text="\n    ".join(tail) or None,
                          hint="is it an audio file ffmpeg can read (wav, mp3, m4a, ogg, flac)?")
    return np.frombuffer(proc.stdout, dtype="<f4").reshape(-1, 2).copy()


def _decode_in_process(path: Path, rate: int):
    """The first audio stream, resampled to float stereo at `rate` (libswresample, as ffmpeg -ac 2 -ar)."""
    import av
    import numpy as np

    chunks = []
    with av.open(str(path)) as c:
        if not c.streams.audio:
            raise ValueError("no audio stream")
        resampler = av.AudioResampler(format="flt", layout="stereo", rate=rate)
        for frame in c.decode(c.streams.audio[0]):
            chunks += [f.to_ndarray().reshape(-1, 2) for f in resampler.resample(frame)]
        chunks += [f.to_ndarray().reshape(-1, 2) for f in resampler.resample(None)]
    return np.concatenate(chunks) if chunks else np.zeros((0, 2), dtype=np.float32)


def _ffmpeg_hint(log: str) -> str | None:
    if "No space left" in log:
        return "free disk space under the project's build/ folder"
    if "Invalid data found" in log or "moov atom not found" in log:
        return "an input file is corrupt; delete it and render again"
    if "Fontconfig" in log or "font" in log.lower():
        return "check the subtitle font name in project.yaml (subtitles.font)"
    return None


@dataclass(frozen=True)
class MediaInfo:
    duration_s: float
    width: int = 0
    height: int = 0
    fps: float = 0.0
    video_codec: str | None = None
    pix_fmt: str | None = None
    audio_codec: str | None = None
    sample_rate: int = 0
    channels: int = 0
    frames: int = 0


def probe(path: Path) -> MediaInfo:
    """Streams and duration of a media file (PyAV; raises on an unreadable file)."""
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0] if c.streams.video else None
        a = c.streams.audio[0] if c.streams.audio else None
        dur = c.duration / 1_000_000 if c.duration else 0.0
        if v is not None and v.duration and v.time_base:
            dur = float(v.duration * v.time_base)
        return MediaInfo(
            duration_s=dur,
            width=v.width if v else 0,
            height=v.height if v else 0,
            fps=float(v.average_rate) if v and v.average_rate else 0.0,
            video_codec=v.codec_context.name if v else None,
            pix_fmt=v.codec_context.pix_fmt if v else None,
            audio_codec=a.codec_context.name if a else None,
            sample_rate=a.rate if a else 0,
            channels=a.channels if a else 0,
            frames=v.frames if v else 0,
        )


def decode_check(path: Path, *, last_s: float = 0.5) -> None:
    """Decode the tail of every video stream: catches truncated files a header probe misses. It decodes
    from the keyframe before the tail: our encodes put one every second (on a 4 s 1080x1920 shot,
    measured 0.12 s of CPU instead of 0.45-0.52 s with x264's default of one per 250 frames)."""
    import av

    with av.open(str(path)) as c:
        if not c.streams.video:
            return
        s = c.streams.video[0]
        dur = float(s.duration * s.time_base) if s.duration else (c.duration or 0) / 1e6
        target = max(0.0, dur - last_s)
        c.seek(int(target / s.time_base), stream=s, any_frame=False, backward=True)
        n = 0
        for _ in c.decode(s):
            n += 1
        if n == 0:
            raise ValueError("no decodable frames at the end")


def video_validator(*, width: int, height: int, min_duration_s: float = 0.0,
                    audio: bool | None = None) -> Callable[[Path], None]:
    """A validator for `artifacts.is_done` / `atomic_path`: size, duration, streams, decodable."""

    def check(path: Path) -> None:
        info = probe(path)
        if info.video_codec is None:
            raise ValueError("no video stream")
        if (info.width, info.height) != (width, height):
            raise ValueError(f"size {info.width}x{info.height}, expected {width}x{height}")
        if info.duration_s + 1e-3 < min_duration_s:
            raise ValueError(f"duration {info.duration_s:.3f}s < {min_duration_s:.3f}s")
        if audio is True and info.audio_codec is None:
            raise ValueError("no audio stream")
        decode_check(path)

    return check


def wav_duration_s(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / float(w.getframerate())


def image_validator(*, width: int | None = None, height: int | None = None) -> Callable[[Path], None]:
    """A check that a file is a complete image (optionally of an exact size)."""

    def check(path: Path) -> None:
        from PIL import Image

        try:
            with Image.open(path) as im:
                im.load()
                size = im.size
        except Exception as exc:
            raise RenderError(f"{path.name} is not a complete image: {exc}") from exc
        if width is not None and size != (width, height):
            raise RenderError(f"{path.name} is {size[0]}x{size[1]}, expected {width}x{height}")

    return check


def wav_validator(*, min_duration_s: float = 0.05) -> Callable[[Path], None]:
    """Non-empty, long enough, and not silent (peak above -50 dBFS)."""

    def check(path: Path) -> None:
        import numpy as np

        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2:
                raise ValueError(f"expected 16-bit PCM, got {8 * w.getsampwidth()}-bit")
            frames = w.readframes(w.getnframes())
            dur = w.getnframes() / float(w.getframerate())
        if dur < min_duration_s:
            raise ValueError(f"audio is {dur:.3f}s long")
        peak = int(np.abs(np.frombuffer(frames, dtype="<i2").astype(np.int32)).max(initial=0))
        if peak < 100:  # about -50 dBFS
            raise ValueError("audio is silent")

    return check


def escape_filter_value(value: str) -> str:
    """Escape a value for an ffmpeg filter option inside a filter graph (two levels).

    Level 1 protects the option parser (`\\`, `'`, `:`); level 2 the graph parser
    (`\\`, `'`, `[`, `]`, `,`, `;`). Paths with quotes, colons, brackets, CJK and spaces survive.
    """
    lvl1 = value.replace("\\", "\\\\").replace("'", "\\'").replace(":", "\\:")
    out = []
    for ch in lvl1:
        if ch in "\\'[],;":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)
