"""Synthesises the demo's original music and effects (so the repo needs no licensed audio).

    python projects/demo/music/compose.py      # rewrites theme.ogg, tension.ogg and ../sfx/foghorn.ogg

The pads come from dramaforge's own music stage (`stages/compose_music.py`, which `dramaforge new`
uses for a new project's bed); the foghorn is drawn here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.compose_music import RATE, encode, note, pad

HERE = Path(__file__).resolve().parent


def foghorn(seconds: float = 2.5) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    f = note(38)
    x = sum(np.sin(2 * np.pi * f * k * t) / k for k in range(1, 8))
    env = np.minimum(1, t / 0.3) * np.minimum(1, (seconds - t) / 0.8)
    return x * env / np.abs(x).max() * 0.8


if __name__ == "__main__":
    # A minor: Am - F - C - G, then a darker Dm - Am - E - E for the tense scenes.
    encode(pad([[57, 60, 64], [53, 57, 60], [48, 52, 55], [55, 59, 62]], beat_s=1.5, seed=1), HERE / "theme.ogg")
    encode(pad([[50, 53, 57], [45, 48, 52], [52, 56, 59], [52, 55, 59]], beat_s=1.0, seed=2), HERE / "tension.ogg")
    encode(foghorn(), HERE.parent / "sfx" / "foghorn.ogg")
