"""The episode mix meets the platform loudness target, measured with ffmpeg's EBU R128 meter."""

from __future__ import annotations

import wave

from stages.backends.espeak import EspeakBackend
from stages.core.loudness import measure_ebur128
from stages.mix_audio import mix_audio
from stages.backends.base import SpeechRequest
from conftest import spoken


def test_mix_is_normalised_to_target_with_peaks_under_the_ceiling(tmp_path):
    backend = EspeakBackend()
    a = spoken(SpeechRequest("Is it ready? The ferry left an hour ago.", "en-us", None, 50, 165), backend, tmp_path)
    b = spoken(SpeechRequest("Almost. Patience, please.", "en-gb", None, 50, 165), backend, tmp_path)
    raw = measure_ebur128(a.path)
    assert raw.integrated_lufs < -16  # eSpeak is quieter than the target: the gain is real work
    out = tmp_path / "mix.wav"
    mix_audio([(0.3, a.path), (4.0, b.path)], 8.0, out, loudness=(-14.0, -1.5))
    got = measure_ebur128(out)
    assert abs(got.integrated_lufs - -14.0) <= 1.0 and got.true_peak_dbtp <= -1.0, got
    with wave.open(str(out)) as w:  # still the episode's exact length, 48 kHz stereo
        assert (w.getframerate(), w.getnchannels(), w.getnframes()) == (48000, 2, 8 * 48000)


def test_a_silent_episode_stays_silent(tmp_path):
    out = tmp_path / "mix.wav"
    mix_audio([], 3.0, out, loudness=(-14.0, -1.5))
    with wave.open(str(out)) as w:
        assert w.getnframes() == 3 * 48000 and not any(w.readframes(w.getnframes()))
