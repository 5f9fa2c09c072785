"""An original music bed, synthesised: slow detuned pads over a four-chord loop, so a new project
(and the demo) has music without any licensed audio. Additive synthesis with numpy, encoded with
the ffmpeg that imageio-ffmpeg ships. Deterministic: the same seed makes the same file."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

RATE = 44_100
# Four-bar loops in minor keys, as MIDI notes (root position triads): drama sits in minor.
PROGRESSIONS = (
    [[57, 60, 64], [53, 57, 60], [48, 52, 55], [55, 59, 62]],  # Am - F - C - G
    [[50, 53, 57], [46, 50, 53], [41, 45, 48], [45, 49, 52]],  # Dm - Bb - F - A
    [[52, 55, 59], [48, 52, 55], [55, 59, 62], [50, 54, 57]],  # Em - C - G - D
    [[55, 58, 62], [51, 55, 58], [53, 57, 60], [50, 54, 57]],  # Gm - Eb - F - D
)


def note(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def pad(chords: list[list[int]], beat_s: float, seed: int):
    """Slow detuned pads, one chord per bar, with a soft swell on each bar: loops seamlessly."""
    import numpy as np

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


def encode(x, path: Path) -> None:
    """Mono float samples in [-1, 1] -> Ogg Vorbis at `path`."""
    import numpy as np

    from stages.core.media import ffmpeg_exe

    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "s16le", "-ar", str(RATE),
                    "-ac", "1", "-i", "-", "-c:a", "libvorbis", "-q:a", "2", str(path)], input=pcm, check=True)


def compose_music(out: Path, seed: int) -> Path:
    """A 24-second loopable bed at `out` (.ogg), its key and chords chosen by `seed`."""
    pick = random.Random(seed)
    chords = pick.choice(PROGRESSIONS)
    encode(pad(chords, beat_s=1.5, seed=seed), out)
    return out
