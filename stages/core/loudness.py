"""Loudness to a platform's target (EBU R128 / ITU-R BS.1770-4), in-process on the mix in memory.

`normalize_samples` measures the integrated loudness of the mix (K-weighting, 400 ms blocks every
100 ms, -70 LUFS and -10 LU gates), applies one linear gain and a look-ahead true-peak limiter
(peaks found at 4x oversampling) that touches only the peaks, and makes up what the limiting cost,
all in numpy: no ffmpeg pass. `measure_ebur128` reads integrated loudness and true peak back with
ffmpeg's own meter, for checks, tests and reports: the result lands within `TOLERANCE_LU` of the
target and under the ceiling by that meter.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from stages.core.errors import RenderError
from stages.core.media import ffmpeg_exe

SILENT_LUFS = -70.0  # below this there is nothing to normalise (a silent episode)
TOLERANCE_LU = 0.3  # how close to the target a normalised mix must land
LIMIT_MARGIN_DB = 0.6  # aimed under the ceiling: 16-bit rounding and the AAC encode overshoot (up to 0.6 dB seen)
RATE = 48_000
ATTACK_S, RELEASE_S = 0.005, 0.05  # the limiter: gain falls over 5 ms before a peak, holds 50 ms after
_AIM_LU = 0.05  # the in-process loop stops this close to the target
# BS.1770-4 K-weighting at 48 kHz: a high shelf (+4 dB above ~1.7 kHz), then the RLB high-pass.
_K_FILTERS = (((1.53512485958697, -2.69169618940638, 1.19839281085285), (1.0, -1.69065929318241, 0.73248077421585)),
              ((1.0, -2.0, 1.0), (1.0, -1.99004745483398, 0.99007225036621)))
_SEGMENT = RATE // 10  # 100 ms: gating blocks are 4 segments, one segment apart
_TAIL = RATE // 10  # zero padding after the signal: the filters' responses have died out by then


@dataclass(frozen=True)
class Loudness:
    integrated_lufs: float
    true_peak_dbtp: float


def _fft_size(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n (fast for numpy's FFT)."""
    best, p5 = 1 << max(n - 1, 1).bit_length(), 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


class _Analysis:
    """One FFT of the mix, from which the K-weighted power and the 4x-oversampled peaks come."""

    def __init__(self, x):
        import numpy as np

        self.n = len(x)
        self.size = _fft_size(self.n + _TAIL)
        self.spectrum = np.fft.rfft(np.ascontiguousarray(x.T), self.size, axis=1)  # float32 in: complex64 out
        bins = np.arange(self.spectrum.shape[1])
        self.quarter = np.exp(0.5j * np.pi / self.size * bins).astype(np.complex64)  # a quarter-sample advance

    def _back(self, response):
        import numpy as np

        return np.fft.irfft(self.spectrum * response, self.size, axis=1)[:, : self.n]

    def power(self):
        """Per sample, the K-weighted power summed over the channels (BS.1770: each weighted 1)."""
        z = self.quarter * self.quarter
        z = (z * z).conj()  # z^-1 on the bins
        h = 1.0
        for b, a in _K_FILTERS:
            h = h * (b[0] + z * (b[1] + z * b[2])) / (a[0] + z * (a[1] + z * a[2]))
        y = self._back(h)
        y *= y
        return y.sum(axis=0)

    def peaks(self, x):
        """Per sample n, the largest magnitude over the channels at n, n+1/4, n+1/2 and n+3/4."""
        import numpy as np

        env = np.abs(x[:, 0])
        for channel in x.T[1:]:
            np.maximum(env, np.abs(channel), out=env)
        shift = self.quarter
        for _ in range(3):  # band-limited fractional delays: the ideal interpolator
            y = self._back(shift)
            np.abs(y, out=y)
            for channel in y:
                np.maximum(env, channel, out=env)
            shift = shift * self.quarter
        return env


def gated_lufs(power) -> float:
    """Integrated loudness from per-sample K-weighted power: 400 ms blocks every 100 ms, gated."""
    import numpy as np

    segs = len(power) // _SEGMENT
    return _gated(power[: segs * _SEGMENT].reshape(segs, _SEGMENT).sum(axis=1, dtype=np.float64))


def _gated(segments) -> float:
    """Integrated loudness from the K-weighted energy of each 100 ms segment (BS.1770-4 gating)."""
    import numpy as np

    if len(segments) < 4:
        return float("-inf")
    s = segments
    blocks = (s[:-3] + s[1:-2] + s[2:-1] + s[3:]) / (4 * _SEGMENT)
    with np.errstate(divide="ignore"):
        loud = -0.691 + 10 * np.log10(blocks)
    kept = blocks[loud > SILENT_LUFS]
    if not len(kept):
        return float("-inf")
    relative = -0.691 + 10 * np.log10(kept.mean()) - 10.0
    kept = blocks[(loud > SILENT_LUFS) & (loud > relative)]
    return float(-0.691 + 10 * np.log10(kept.mean()))


def integrated_lufs(x) -> float:
    """BS.1770-4 integrated loudness of a 48 kHz (samples, channels) array."""
    import numpy as np

    return gated_lufs(_Analysis(np.asarray(x, dtype=np.float32)).power())


def true_peak_dbtp(x) -> float:
    """True peak (dBTP) of a 48 kHz (samples, channels) array, found at 4x oversampling."""
    import numpy as np

    x = np.asarray(x, dtype=np.float32)
    peak = float(_Analysis(x).peaks(x).max(initial=0.0))
    return 20 * np.log10(peak) if peak > 0 else float("-inf")


def _sliding_min(r, before: int, after: int):
    """m[n] = min(r[n - before: n + after + 1]) (van Herk / Gil-Werman, O(n))."""
    import numpy as np

    w = before + after + 1
    padded = np.concatenate([np.ones(before, r.dtype), r, np.ones(after + (-(len(r) + w - 1)) % w, r.dtype)])
    blocks = padded.reshape(-1, w)
    ahead = np.minimum.accumulate(blocks, axis=1).ravel()  # min from each block's start
    behind = np.minimum.accumulate(blocks[:, ::-1], axis=1)[:, ::-1].ravel()  # min to each block's end
    return np.minimum(behind[: len(r)], ahead[w - 1: w - 1 + len(r)])


def _smooth(g, width: int):
    """A centred moving average over `width` samples (the ends held)."""
    import numpy as np

    c = np.concatenate([[0.0], np.cumsum(np.pad(g.astype(np.float64), (width // 2, width - 1 - width // 2),
                                                 mode="edge"))])
    return ((c[width:] - c[:-width]) / width).astype(np.float32)


def limiter_gain(peaks, limit: float):
    """Where and how much to turn down so that `peaks` (per-sample true peaks) stay under `limit`.

    Returns None if no sample needs it, else (samples, gain there): the gain falls over `ATTACK_S`
    ahead of each peak and holds `RELEASE_S` after it, with corners smoothed by a triangle narrower
    than both (so the gain at every peak is still enough); it is 1 everywhere else. Worked out only
    around the peaks over the limit: the cost follows how much there is to limit, not the length."""
    import numpy as np

    over = np.flatnonzero(peaks > limit)
    if not len(over):
        return None
    n = len(peaks)
    attack, release = int(ATTACK_S * RATE), int(RELEASE_S * RATE)
    half = attack // 2  # two moving averages of half the attack: a triangle as wide as the attack
    margin = attack + release + 2 * half  # around each peak: its reach, and ones that keep runs apart
    edges = np.bincount(np.maximum(over - margin, 0), minlength=n + 1)
    edges -= np.bincount(np.minimum(over + margin + 1, n), minlength=n + 1)
    where = np.flatnonzero(np.cumsum(edges[:n]) > 0)  # runs, each with `margin` of ones either side
    need = np.ones(len(where), dtype=np.float32)
    at = np.searchsorted(where, over)
    need[at] = limit / peaks[over]
    held = _sliding_min(need, before=release, after=attack)
    return where, np.minimum(_smooth(_smooth(held, half), half), 1.0)


def normalize_samples(x, *, lufs: float, true_peak: float):
    """`x` (48 kHz (samples, 2), float) at `lufs` integrated, true peaks under `true_peak` dBTP.

    One linear gain, then a look-ahead limiter on the 4x-oversampled peaks; the loudness the
    limiting costs is made up and the limiter re-run until the mix is within `_AIM_LU` of the
    target. Not a dynamic normaliser (like `loudnorm`'s): its gain riding would undo the music
    ducking. Silence stays silence. Returns float32, within [-1, 1]."""
    import numpy as np

    x = np.asarray(x, dtype=np.float32)
    if not len(x):
        return x
    analysis = _Analysis(x)
    power = analysis.power()
    measured = gated_lufs(power)
    if measured < SILENT_LUFS:
        return x
    peaks = analysis.peaks(x)
    del analysis
    segs = len(power) // _SEGMENT
    seg_power = power[: segs * _SEGMENT].reshape(segs, _SEGMENT).sum(axis=1, dtype=np.float64)
    limit = 10 ** ((true_peak - LIMIT_MARGIN_DB) / 20)
    gain_db, slope, last = lufs - measured, 1.0, None
    for _ in range(12):  # limiting peaky speech (eSpeak's crest factor is high) costs loudness: make it up
        g = 10 ** (gain_db / 20)
        limited = limiter_gain(peaks * np.float32(g), limit)
        s = seg_power
        if limited is not None:  # what the limiter takes off each 100 ms segment
            where, env = limited
            inside = where < segs * _SEGMENT
            s = s - np.bincount(where[inside] // _SEGMENT, weights=(power[where] * (1 - env * env))[inside],
                                minlength=segs)
        got = _gated(s * g * g)
        if abs(lufs - got) <= _AIM_LU:
            break
        if last is not None and abs(got - last[1]) > 1e-3:  # the secant: limiting makes each dB worth less
            slope = min(max((got - last[1]) / (gain_db - last[0]), 0.05), 1.0)
        last = (gain_db, got)
        gain_db += (lufs - got) / slope
    y = x * np.float32(g)
    if limited is not None:
        y[where] *= env[:, None]
    return np.clip(y, -1.0, 1.0, out=y)


def _ffmpeg_stderr(args: list[str], what: str) -> str:
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *args, "-f", "null", "-"]
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    if proc.returncode != 0:
        raise RenderError(f"{what} failed (ffmpeg exit {proc.returncode})",
                          text=proc.stderr.decode("utf-8", "replace")[-800:])
    return proc.stderr.decode("utf-8", "replace")


def measure_ebur128(path: Path) -> Loudness:
    """Integrated loudness (LUFS) and true peak (dBTP) of a file's first audio stream (ffmpeg's meter)."""
    log = _ffmpeg_stderr(["-i", str(path), "-map", "0:a:0", "-af", "ebur128=peak=true"], "metering loudness")
    summary = log[log.rindex("Summary:"):]
    i = float(re.search(r"I:\s+(-?[\d.]+|-inf) LUFS", summary).group(1))
    peak = re.search(r"True peak:\s+Peak:\s+(-?[\d.]+|-inf) dBFS", summary)
    return Loudness(i, float(peak.group(1)) if peak else float("-inf"))
