import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from stages.backends.base import PermanentError, SpeechRequest
from stages.backends.espeak import EspeakBackend, voice_name
from stages.core.media import escape_filter_value, ffmpeg_exe, probe, run_ffmpeg, wav_duration_s, wav_validator
from conftest import spoken


def median_f0_hz(path: Path) -> float:
    """Median fundamental frequency of the voiced frames (autocorrelation, 60-500 Hz)."""
    with wave.open(str(path)) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(float)
        rate = w.getframerate()
    n = int(0.04 * rate)
    lo, hi = int(rate / 500), int(rate / 60)
    energy_floor = 0.1 * np.abs(x).max()
    f0s = []
    for i in range(0, len(x) - n, n):
        frame = x[i:i + n] - x[i:i + n].mean()
        if np.abs(frame).max() < energy_floor:
            continue
        ac = np.correlate(frame, frame, "full")[n - 1:]
        lag = lo + int(ac[lo:hi].argmax())
        if ac[lag] > 0.3 * ac[0]:
            f0s.append(rate / lag)
    return float(np.median(f0s))


def test_espeak_speaks_english_and_mandarin(tmp_path):
    b = EspeakBackend()
    en, zh = tmp_path / "en.wav", tmp_path / "zh.wav"
    b.synthesize(SpeechRequest("Hello, this is a test of the voice.", "en-us", "f2", 60, 160), en)
    b.synthesize(SpeechRequest("你好，我们明天见。", "cmn", None, 50, 160), zh)
    for p in (en, zh):
        wav_validator()(p)
        assert 0.8 < wav_duration_s(p) < 6


def test_voices_differ_in_pitch(tmp_path):
    b = EspeakBackend()
    lo, hi = tmp_path / "lo.wav", tmp_path / "hi.wav"
    text = "The last ferry left an hour ago."
    b.synthesize(SpeechRequest(text, "en-gb", "m3", 20, 160), lo)
    b.synthesize(SpeechRequest(text, "en-us", "f2", 80, 160), hi)
    assert median_f0_hz(hi) > median_f0_hz(lo) * 1.3


def test_speed_changes_duration(tmp_path):
    b = EspeakBackend()
    slow, fast = tmp_path / "s.wav", tmp_path / "f.wav"
    text = "Some tickets only go one way."
    b.synthesize(SpeechRequest(text, "en-us", None, 50, 110), slow)
    b.synthesize(SpeechRequest(text, "en-us", None, 50, 260), fast)
    assert wav_duration_s(slow) > 1.5 * wav_duration_s(fast)


def test_unknown_voice_is_permanent_error(tmp_path):
    with pytest.raises(PermanentError, match="no voice"):
        EspeakBackend().synthesize(SpeechRequest("hi", "xx-nope", None, 50, 160), tmp_path / "x.wav")


def test_voice_names_resolve():
    assert voice_name("en-gb") == "en"
    assert voice_name("cmn") == "cmn"


def test_synthesize_speech_is_content_addressed(tmp_path):
    b = EspeakBackend()
    req = SpeechRequest("Again and again.", "en-us", None, 50, 160)
    first = spoken(req, b, tmp_path)
    again = spoken(req, b, tmp_path)
    assert not first.reused and again.reused and first.path == again.path
    other = spoken(SpeechRequest("Again and again.", "en-us", None, 51, 160), b, tmp_path)
    assert other.path != first.path
    first.path.write_bytes(b"RIFF")  # truncated: remade, not reused
    assert not spoken(req, b, tmp_path).reused


def test_silent_wav_is_invalid(tmp_path):
    p = tmp_path / "silent.wav"
    with wave.open(str(p), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(22050)
        w.writeframes(b"\0\0" * 22050)
    with pytest.raises(ValueError, match="silent"):
        wav_validator()(p)


def test_filter_escaping_survives_hostile_paths(tmp_path):
    """A path with quotes, colons, brackets, semicolons, $() and CJK works inside a filter graph."""
    weird = tmp_path / "Y'z 短剧 [ep 1]; $(x):a,b"
    weird.mkdir()
    ass = weird / "s.ass"
    ass.write_text("[Script Info]\nPlayResX: 64\nPlayResY: 64\n\n[V4+ Styles]\n"
                   "Format: Name, Fontname, Fontsize, PrimaryColour, OutlineColour, BackColour, Bold, Italic, "
                   "Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, "
                   "Alignment, MarginL, MarginR, MarginV, Encoding\n"
                   "Style: Default,Noto Sans CJK SC,20,&H00FFFFFF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,"
                   "1,0,2,1,1,1,1\n\n[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, "
                   "MarginV, Effect, Text\nDialogue: 0,0:00:00.00,0:00:01.00,Default,,0,0,0,,字\n", encoding="utf-8")
    out = weird / "o.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "color=black:s=64x64:d=1", "-vf",
                f"subtitles=filename={escape_filter_value(str(ass))}", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                str(out)])
    assert probe(out).width == 64


def test_probe_reports_streams(tmp_path):
    out = tmp_path / "t.mp4"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=s=64x128:r=25:d=1",
                    "-f", "lavfi", "-i", "sine=d=1:r=48000", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-shortest", str(out)], check=True)
    info = probe(out)
    assert (info.width, info.height, info.fps, info.audio_codec) == (64, 128, 25.0, "aac")
    assert abs(info.duration_s - 1.0) < 0.05
