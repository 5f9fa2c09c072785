"""Loudness to a platform's target, measured with ffmpeg's own meters (EBU R128 / ITU-R BS.1770).

Two passes on the audio alone (cheap next to video): `loudnorm` measures, then applies one linear
gain with a true-peak limiter, so the result is the target within a fraction of a LU without
pumping. `measure_ebur128` reads integrated loudness and true peak back, for checks and reports.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from stages.errors import RenderError
from stages.media import ffmpeg_exe, run_ffmpeg

SILENT_LUFS = -70.0  # below this there is nothing to normalise (a silent episode)


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


def normalize(in_wav: Path, out_wav: Path, *, lufs: float, true_peak: float, lra: float = 11.0) -> None:
    """Write `in_wav` at `lufs` integrated with peaks under `true_peak` dBTP (48 kHz stereo WAV)."""
    target = f"I={lufs}:TP={true_peak}:LRA={lra}"
    log = _ffmpeg_stderr(["-i", str(in_wav), "-af", f"loudnorm={target}:print_format=json"], "measuring loudness")
    stats = json.loads(log[log.rindex("{"):log.rindex("}") + 1])
    if float(stats["input_i"]) < SILENT_LUFS:
        run_ffmpeg(["-i", str(in_wav), "-c:a", "pcm_s16le", str(out_wav)], what="copying silent audio")
        return
    measured = (f"measured_I={stats['input_i']}:measured_TP={stats['input_tp']}:measured_LRA={stats['input_lra']}"
                f":measured_thresh={stats['input_thresh']}:offset={stats['target_offset']}")
    # loudnorm works at 192 kHz internally; resample back to 48 kHz for the episode.
    run_ffmpeg(["-i", str(in_wav), "-af", f"loudnorm={target}:{measured}:linear=true,aresample=48000",
                "-ar", "48000", "-ac", "2", "-c:a", "pcm_s16le", str(out_wav)], what="normalising loudness")


def measure_ebur128(path: Path) -> Loudness:
    """Integrated loudness (LUFS) and true peak (dBTP) of a file's first audio stream."""
    log = _ffmpeg_stderr(["-i", str(path), "-map", "0:a:0", "-af", "ebur128=peak=true"], "metering loudness")
    summary = log[log.rindex("Summary:"):]
    i = float(re.search(r"I:\s+(-?[\d.]+|-inf) LUFS", summary).group(1))
    peak = re.search(r"True peak:\s+Peak:\s+(-?[\d.]+|-inf) dBFS", summary)
    return Loudness(i, float(peak.group(1)) if peak else float("-inf"))
