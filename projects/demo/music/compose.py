"""Synthesises the demo's original music and effects (so the repo needs no licensed audio).

    python projects/demo/music/compose.py      # rewrites theme.ogg, tension.ogg and ../sfx/foghorn.ogg

Additive synthesis with numpy, encoded with the ffmpeg that imageio-ffmpeg ships.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np

RATE = 44_100
HERE = Path(__file__).resolve().parent


def note(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def pad(chords: list[list[int]], beat_s: float, seed: int) -> np.ndarray:
    """Slow detuned pads, one chord per bar, with a soft swell on each bar: loops seamlessly."""
    rng = np.random.default_rng(seed)
    bar = int(beat_s * 4 * RATE)
    t = np.arange(bar) / RATE
    swell = np.sin(np.pi * t / t[-1]) ** 0.6
    out = []
    for chord in chords:
        x = np.zeros(bar)
        for m in chord:
            for detune in (-0.08, 0.0, 0.07):
                f = note(m + detune)
                x += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) + 0.3 * np.sin(4 * np.pi * f * t)
        x += 1.5 * np.sin(2 * np.pi * note(chord[0] - 12) * t)  # the bass note an octave down
        out.append(x * swell)
    y = np.concatenate(out)
    y *= 1 + 0.15 * np.sin(2 * np.pi * 0.25 * np.arange(len(y)) / RATE)  # slow tremolo, like rain on glass
    return y / np.abs(y).max() * 0.5


def foghorn(seconds: float = 2.5) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    f = note(38)
    x = sum(np.sin(2 * np.pi * f * k * t) / k for k in range(1, 8))
    env = np.minimum(1, t / 0.3) * np.minimum(1, (seconds - t) / 0.8)
    return x * env / np.abs(x).max() * 0.8


def encode(x: np.ndarray, path: Path) -> None:
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "s16le",
                    "-ar", str(RATE), "-ac", "1", "-i", "-", "-c:a", "libvorbis", "-q:a", "2", str(path)],
                   input=pcm, check=True)


if __name__ == "__main__":
    # A minor: Am - F - C - G, then a darker Dm - Am - E - E for the tense scenes.
    encode(pad([[57, 60, 64], [53, 57, 60], [48, 52, 55], [55, 59, 62]], beat_s=1.5, seed=1), HERE / "theme.ogg")
    encode(pad([[50, 53, 57], [45, 48, 52], [52, 56, 59], [52, 55, 59]], beat_s=1.0, seed=2), HERE / "tension.ogg")
    encode(foghorn(), HERE.parent / "sfx" / "foghorn.ogg")
