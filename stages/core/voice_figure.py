"""A speaker-similarity figure that needs no downloaded model: does a line sound like its reference clip?

A rough figure, not a speaker-verification model. Each recording is reduced to the statistics a voice
keeps whatever it says: the mean and spread of its MFCCs (the spectral envelope of the vocal tract,
c1-c19, loudness left out) over the frames with speech, and its median pitch. Two recordings are
compared by the MFCC means' distance in units of their spread, and the pitch gap in semitones:

    figure = exp(-(d_mfcc / 1.4)^2 - (d_pitch / 6)^2)

so 1 is the same voice and 0 none. It tells a line in the wrong voice (another speaker, another
sex, a provider that fell back to a stock voice); it cannot tell two similar speakers apart, and a
whisper or a shout reads lower than a calm line of the same voice. Measured numbers are in
tests/test_voice_figure.py and the README ("Voices").
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

RATE = 16_000
FRAME, HOP = 400, 160  # 25 ms frames every 10 ms
MFCC_SCALE, PITCH_SCALE = 1.4, 6.0  # figure halves (about) at these distances: MFCC spread units, semitones


@dataclass(frozen=True)
class VoicePrint:
    mean: tuple[float, ...]
    spread: tuple[float, ...]
    pitch_hz: float | None  # median over voiced frames (None: too little voicing to say)
    speech_s: float  # seconds of frames with speech


def voiceprint_of(samples, rate: int = RATE) -> VoicePrint:
    """The statistics of mono float `samples` at `rate` (16 kHz expected)."""
    import numpy as np

    x = np.asarray(samples, dtype=np.float64)
    if len(x) < FRAME * 4:
        return VoicePrint((), (), None, 0.0)
    x = np.append(x[0], x[1:] - 0.97 * x[:-1])  # pre-emphasis: the envelope, not the tilt of the source
    n = 1 + (len(x) - FRAME) // HOP
    idx = np.arange(FRAME)[None, :] + HOP * np.arange(n)[:, None]
    frames = x[idx] * np.hamming(FRAME)
    energy = np.log(np.sum(frames ** 2, axis=1) + 1e-10)
    speech = energy > max(np.percentile(energy, 90) - np.log(1e3), np.percentile(energy, 30))  # within 30 dB
    if speech.sum() < 10:
        return VoicePrint((), (), None, 0.0)
    power = np.abs(np.fft.rfft(frames[speech], 512)) ** 2
    mel = np.log(power @ _mel_bank(rate).T + 1e-10)
    mfcc = mel @ _dct(mel.shape[1]).T
    coeffs = mfcc[:, 1:20]
    pitch = _pitch(x, idx[speech], rate)
    return VoicePrint(tuple(coeffs.mean(axis=0)), tuple(coeffs.std(axis=0)), pitch, float(speech.sum() * HOP / rate))


@functools.lru_cache(maxsize=64)
def voiceprint(path: str, size: int, mtime_ns: int) -> VoicePrint:
    """A file's print (cached by path, size and time: a reference clip serves every line)."""
    from stages.core.media import decode_audio

    return voiceprint_of(decode_audio(Path(path), rate=RATE, what="reading a voice").mean(axis=1))


def print_of_file(path: Path) -> VoicePrint:
    st = path.stat()
    return voiceprint(str(path), st.st_size, st.st_mtime_ns)


def similarity(a: VoicePrint, b: VoicePrint) -> float | None:
    """How alike two voices are, 0-1 (None when either has too little speech to say)."""
    import numpy as np

    if not a.mean or not b.mean:
        return None
    spread = (np.asarray(a.spread) + np.asarray(b.spread)) / 2 + 1e-6
    d_mfcc = float(np.sqrt(np.mean(((np.asarray(a.mean) - np.asarray(b.mean)) / spread) ** 2)))
    d_pitch = 0.0 if a.pitch_hz is None or b.pitch_hz is None else abs(12 * np.log2(a.pitch_hz / b.pitch_hz))
    return round(float(np.exp(-(d_mfcc / MFCC_SCALE) ** 2 - (d_pitch / PITCH_SCALE) ** 2)), 3)


def figure(line: Path, reference: Path) -> float | None:
    """The figure of one spoken line against its character's reference clip."""
    return similarity(print_of_file(reference), print_of_file(line))


@functools.cache
def _mel_bank(rate: int, bands: int = 40, lo: float = 60.0, hi: float = 7600.0):
    import numpy as np

    def mel(f):
        return 2595 * np.log10(1 + f / 700)

    edges = 700 * (10 ** (np.linspace(mel(lo), mel(hi), bands + 2) / 2595) - 1)
    bins = np.fft.rfftfreq(512, 1 / rate)
    bank = np.zeros((bands, len(bins)))
    for i in range(bands):
        left, mid, right = edges[i:i + 3]
        bank[i] = np.clip(np.minimum((bins - left) / (mid - left), (right - bins) / (right - mid)), 0, None)
    return bank


@functools.cache
def _dct(n: int, keep: int = 20):
    import numpy as np

    k = np.arange(keep)[:, None]
    return np.cos(np.pi * k * (2 * np.arange(n)[None, :] + 1) / (2 * n))


def _pitch(x, idx, rate: int) -> float | None:
    """Median F0 of the voiced frames (autocorrelation, 60-500 Hz), over 40 ms windows."""
    import numpy as np

    lo, hi = rate // 500, rate // 60
    f0 = []
    for start in idx[::2, 0]:
        seg = x[start:start + 640]
        if len(seg) < 640:
            continue
        seg = seg - seg.mean()
        ac = np.correlate(seg, seg, "full")[len(seg) - 1:]
        if ac[0] <= 0:
            continue
        ac = ac / ac[0]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.5:
            f0.append(rate / lag)
    return float(np.median(f0)) if len(f0) >= 5 else None
