"""Loudness to a platform's target, measured with ffmpeg's own meters (EBU R128 / ITU-R BS.1770).

Two passes on the audio alone (cheap next to video): `loudnorm` measures, then one linear gain
and an oversampled peak limiter, so the result is the target within a fraction of a LU without
pumping. `measure_ebur128` reads integrated loudness and true peak back, for checks and reports.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from stages.core.errors import RenderError
from stages.core.media import ffmpeg_exe, run_ffmpeg

SILENT_LUFS = -70.0  # below this there is nothing to normalise (a silent episode)
TOLERANCE_LU = 0.3  # how close to the target a normalised mix must land
LIMIT_MARGIN_DB = 0.3  # the limiter aims a little under the ceiling: resampling back can overshoot


@dataclass(frozen=True)
class Loudness:
    integrated_lufs: float
    true_peak_dbtp: float


def _ffmpeg_stderr(args: list[str], what: str) -> str:
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *args, "-f", "null", "-"]
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    if proc.returncode != 0:
        raise RenderError(f"{what} failed (ffmpeg exit {proc.returncode})",
                          text=proc.stderr.decode("utf-8", "replace")[-800:])
    return proc.stderr.decode("utf-8", "replace")


def normalize(in_wav: Path, out_wav: Path, *, lufs: float, true_peak: float) -> None:
    """Write `in_wav` at `lufs` integrated with peaks under `true_peak` dBTP (48 kHz stereo WAV).

    One linear gain, then a look-ahead limiter at 4x oversampling (so sample peaks there are
    true peaks) that touches only the peaks. Not `loudnorm`'s second pass: it silently falls back
    to dynamic mode whenever the gain would raise a peak past the ceiling or the loudness range is
    wide, and its gain riding would undo the music ducking.
    """
    log = _ffmpeg_stderr(["-i", str(in_wav), "-af", "loudnorm=print_format=json"], "measuring loudness")
    stats = json.loads(log[log.rindex("{"):log.rindex("}") + 1])
    if float(stats["input_i"]) < SILENT_LUFS:
        run_ffmpeg(["-i", str(in_wav), "-c:a", "pcm_s16le", str(out_wav)], what="copying silent audio")
        return
    gain = lufs - float(stats["input_i"])
    limit = 10 ** ((true_peak - LIMIT_MARGIN_DB) / 20)
    for _ in range(3):
        run_ffmpeg(["-i", str(in_wav), "-af", f"volume={gain:.3f}dB,aresample=192000,"
                    f"alimiter=limit={limit:.5f}:attack=5:release=50:level=false:latency=true,aresample=48000",
                    "-ar", "48000", "-ac", "2", "-c:a", "pcm_s16le", str(out_wav)], what="normalising loudness")
        # Limiting peaky speech (eSpeak's crest factor is high) costs loudness: make it up and re-limit.
        short = lufs - measure_ebur128(out_wav).integrated_lufs
        if abs(short) <= TOLERANCE_LU:
            return
        gain += short


def measure_ebur128(path: Path) -> Loudness:
    """Integrated loudness (LUFS) and true peak (dBTP) of a file's first audio stream."""
    log = _ffmpeg_stderr(["-i", str(path), "-map", "0:a:0", "-af", "ebur128=peak=true"], "metering loudness")
    summary = log[log.rindex("Summary:"):]
    i = float(re.search(r"I:\s+(-?[\d.]+|-inf) LUFS", summary).group(1))
    peak = re.search(r"True peak:\s+Peak:\s+(-?[\d.]+|-inf) dBFS", summary)
    return Loudness(i, float(peak.group(1)) if peak else float("-inf"))
