"""The episode mix meets the platform loudness target, measured with ffmpeg's EBU R128 meter; the
normalisation itself runs in memory (no ffmpeg pass) with a BS.1770 meter that agrees with ffmpeg's."""

from __future__ import annotations

import subprocess
import wave

import numpy as np
import pytest

from stages.backends.espeak import EspeakBackend
from stages.core.loudness import (RATE, TOLERANCE_LU, integrated_lufs, limiter_gain, measure_ebur128,
                                  true_peak_dbtp)
from stages.mix_audio import MusicSpan, mix_audio
from stages.backends.base import SpeechRequest
from stages.schema import Music
from conftest import spoken


def _wav(path, x) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((np.clip(x, -1, 1) * 32767).round().astype("<i2").tobytes())


def _ffmpeg_commands(monkeypatch) -> list[str]:
    seen, run = [], subprocess.run

    def spy(cmd, *a, **kw):
        seen.append(" ".join(map(str, cmd)) if isinstance(cmd, list) else str(cmd))
        return run(cmd, *a, **kw)

    monkeypatch.setattr(subprocess, "run", spy)
    return seen


def test_mix_is_normalised_to_target_with_peaks_under_the_ceiling(tmp_path, monkeypatch):
    backend = EspeakBackend()
    a = spoken(SpeechRequest("Is it ready? The ferry left an hour ago.", "en-us", None, 50, 165), backend, tmp_path)
    b = spoken(SpeechRequest("Almost. Patience, please.", "en-gb", None, 50, 165), backend, tmp_path)
    raw = measure_ebur128(a.path)
    assert raw.integrated_lufs < -16  # eSpeak is quieter than the target: the gain is real work
    out = tmp_path / "mix.wav"
    commands = _ffmpeg_commands(monkeypatch)
    mix_audio([(0.3, a.path), (4.0, b.path)], 8.0, out, loudness=(-14.0, -1.5))
    assert not [c for c in commands if any(f in c for f in ("loudnorm", "alimiter", "ebur128", "volume"))]
    got = measure_ebur128(out)
    assert abs(got.integrated_lufs - -14.0) <= TOLERANCE_LU and got.true_peak_dbtp <= -1.5, got
    with wave.open(str(out)) as w:  # still the episode's exact length, 48 kHz stereo
        assert (w.getframerate(), w.getnchannels(), w.getnframes()) == (48000, 2, 8 * 48000)


@pytest.mark.parametrize("target", [(-14.0, -1.0), (-16.0, -1.5), (-23.0, -2.0)])
def test_speech_over_ducked_music_lands_on_each_target(tmp_path, target):
    """Peaky speech over a music bed that is ducked under it: the limiter works hard at -14 LUFS;
    ffmpeg's meter reads the target within TOLERANCE_LU and the true peak under the ceiling."""
    backend = EspeakBackend()
    lines = [spoken(SpeechRequest(t, "en-us", None, 50, 165), backend, tmp_path).path for t in
             ("Then whose name is this?", "Someone forged it, and you know who.", "Leave this house tonight!")]
    t = np.arange(4 * RATE) / RATE
    music = 0.2 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t) ** 2)
    _wav(tmp_path / "music.wav", np.stack([music, np.roll(music, 120)], axis=1))
    out = tmp_path / "mix.wav"
    mix_audio([(0.5 + 3.0 * k, p) for k, p in enumerate(lines)], 10.0, out, target,
              music=[MusicSpan(0.0, 10.0, tmp_path / "music.wav")], options=Music(level_lufs=-24))
    got = measure_ebur128(out)
    assert abs(got.integrated_lufs - target[0]) <= TOLERANCE_LU and got.true_peak_dbtp <= target[1], got


def test_in_process_meter_agrees_with_ffmpeg(tmp_path):
    """Integrated loudness within 0.1 LU and true peak within 0.6 dB of ffmpeg's ebur128 filter."""
    backend = EspeakBackend()
    speech = spoken(SpeechRequest("The money is gone, and the board will not believe me.", "en-gb", None, 40, 175),
                    backend, tmp_path).path
    from stages.core.media import decode_audio

    rng = np.random.default_rng(7)
    t = np.arange(3 * RATE) / RATE
    signals = {"speech": decode_audio(speech),
               "noise": 0.05 * rng.standard_normal((5 * RATE, 2)),
               "tone": np.stack([0.3 * np.sin(2 * np.pi * 997 * t), 0.1 * np.sin(2 * np.pi * 3000 * t)], axis=1),
               "bursts": np.repeat(0.4 * rng.standard_normal((6 * RATE, 1)) * (np.arange(6 * RATE)[:, None] % RATE
                                                                                < RATE // 5), 2, axis=1)}
    for name, x in signals.items():
        _wav(tmp_path / f"{name}.wav", x)
        ref = measure_ebur128(tmp_path / f"{name}.wav")
        with wave.open(str(tmp_path / f"{name}.wav")) as w:
            y = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2) / 32767
        assert abs(integrated_lufs(y) - ref.integrated_lufs) <= 0.1, (name, integrated_lufs(y), ref)
        assert abs(true_peak_dbtp(y) - ref.true_peak_dbtp) <= 0.6, (name, true_peak_dbtp(y), ref)


def test_limiter_keeps_every_peak_under_the_limit():
    rng = np.random.default_rng(3)
    peaks = np.abs(rng.standard_normal(RATE * 30)).astype(np.float32) * 0.15
    peaks[rng.integers(0, len(peaks), 10)] = 2.5  # sparse, far over
    where, gain = limiter_gain(peaks, 0.8)
    full = np.ones_like(peaks)
    full[where] = gain
    assert (peaks * full <= 0.8 * (1 + 1e-5)).all()
    assert (full == 1).mean() > 0.95  # only around the peaks (each: 5 ms before, 50 ms after)
    assert np.abs(np.diff(full)).max() < 0.02  # no steps: the gain moves over milliseconds
    assert limiter_gain(peaks * 0.3, 0.8) is None


def test_a_silent_episode_stays_silent(tmp_path):
    out = tmp_path / "mix.wav"
    mix_audio([], 3.0, out, loudness=(-14.0, -1.5))
    with wave.open(str(out)) as w:
        assert w.getnframes() == 3 * 48000 and not any(w.readframes(w.getnframes()))
