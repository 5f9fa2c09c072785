"""The Piper backend against real piper-tts and onnxruntime, with a tiny voice built here (nothing downloaded)."""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from conftest import REPO, spoken
from piper_voice import SAMPLES_PER_ID, make_tiny_piper_voice
from stages.backends.base import PermanentError, SpeechBackend, SpeechRequest
from stages.backends.piper import PiperBackend
from stages.core.media import wav_duration_s, wav_validator


pytest.importorskip("piper", reason="the piper extra is not installed")
pytest.importorskip("onnx", reason="the piper extra is not installed")

LINE = "Is it ready?"
LONG_LINE = "Is it ready? Almost. Patience, we are nearly there, and then I am leaving for good."


@pytest.fixture(scope="module")
def voice(tmp_path_factory) -> Path:
    return make_tiny_piper_voice(tmp_path_factory.mktemp("voice"), sample_rate=16000)


@pytest.fixture(scope="module")
def multi_voice(tmp_path_factory) -> Path:
    return make_tiny_piper_voice(tmp_path_factory.mktemp("multi"), sample_rate=22050, num_speakers=3)


def request(voice: Path, text: str = LINE, **kw) -> SpeechRequest:
    fields = dict(text=text, language="en-us", variant=None, pitch=50, speed_wpm=165, voice=str(voice),
                  voice_sha="x", speaker=None, speed=1.0)
    return SpeechRequest(**(fields | kw))


def speak(tmp_path: Path, req: SpeechRequest, name: str = "out.wav") -> Path:
    out = tmp_path / name
    PiperBackend().synthesize(req, out)
    wav_validator()(out)
    return out


def frames(path: Path) -> bytes:
    with wave.open(str(path), "rb") as w:
        return w.readframes(w.getnframes())


def test_backend_writes_valid_wav(voice, tmp_path):
    backend = PiperBackend()
    assert isinstance(backend, SpeechBackend)
    assert backend.identity()["engine"] == "piper" and backend.identity()["version"]
    out = speak(tmp_path, request(voice))
    with wave.open(str(out), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        # BOS, then a pad after BOS and after each phoneme, then EOS: whole phoneme-id hops
        assert w.getnframes() > 0 and w.getnframes() % SAMPLES_PER_ID == 0


def test_duration_grows_with_text(voice, tmp_path):
    short = wav_duration_s(speak(tmp_path, request(voice, "Hi."), "short.wav"))
    long = wav_duration_s(speak(tmp_path, request(voice, LONG_LINE), "long.wav"))
    assert 0 < short < long


def test_faster_speed_is_shorter(voice, tmp_path):
    normal = wav_duration_s(speak(tmp_path, request(voice, LONG_LINE), "normal.wav"))
    fast = wav_duration_s(speak(tmp_path, request(voice, LONG_LINE, speed=2.0), "fast.wav"))
    assert fast == pytest.approx(normal / 2, rel=0.02)


def test_speakers_sound_different(multi_voice, tmp_path):
    outs = [speak(tmp_path, request(multi_voice, speaker=s), f"s{s}.wav") for s in (0, 1, 2)]
    audio = [frames(p) for p in outs]
    assert len({len(a) for a in audio}) == 1  # same text, same timing
    assert len(set(audio)) == 3
    with wave.open(str(outs[0]), "rb") as w:
        assert w.getframerate() == 22050
    default = speak(tmp_path, request(multi_voice), "default.wav")
    assert frames(default) == audio[0]  # no speaker: the voice's default, 0


def test_same_request_same_audio(voice, tmp_path):
    assert frames(speak(tmp_path, request(voice), "a.wav")) == frames(speak(tmp_path, request(voice), "b.wav"))


def test_through_synthesize_speech(voice, tmp_path):
    backend = PiperBackend()
    first = spoken(request(voice), backend, tmp_path / "speech")
    assert not first.reused and first.duration_s > 0 and first.path.exists()
    wav_validator()(first.path)
    again = spoken(request(voice), backend, tmp_path / "speech")
    assert again.reused and again.path == first.path
    longer = spoken(request(voice, LONG_LINE), backend, tmp_path / "speech")
    assert longer.path != first.path and longer.duration_s > first.duration_s


def test_missing_config_is_permanent(voice, tmp_path):
    lone = tmp_path / "lone.onnx"
    lone.write_bytes(voice.read_bytes())
    with pytest.raises(PermanentError, match=r"lone\.onnx\.json.*piper-voices"):
        PiperBackend().synthesize(request(lone), tmp_path / "out.wav")


def test_missing_model_is_permanent(tmp_path):
    with pytest.raises(PermanentError, match=r"nope\.onnx"):
        PiperBackend().synthesize(request(tmp_path / "nope.onnx"), tmp_path / "out.wav")


def test_corrupt_model_is_permanent(voice, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    Path(f"{bad}.json").write_bytes(Path(f"{voice}.json").read_bytes())
    with pytest.raises(PermanentError, match="could not load"):
        PiperBackend().synthesize(request(bad), tmp_path / "out.wav")


@pytest.mark.parametrize("speaker", [3, 99])
def test_speaker_out_of_range_is_permanent(multi_voice, tmp_path, speaker):
    with pytest.raises(PermanentError, match=f"speaker {speaker}.*3 speaker"):
        PiperBackend().synthesize(request(multi_voice, speaker=speaker), tmp_path / "out.wav")


def test_speaker_on_single_speaker_voice(voice, tmp_path):
    speak(tmp_path, request(voice, speaker=0))  # 0 is the only speaker: fine
    with pytest.raises(PermanentError, match="speaker 1"):
        PiperBackend().synthesize(request(voice, speaker=1), tmp_path / "out.wav")


def test_nothing_to_say_is_permanent(voice, tmp_path):
    with pytest.raises(PermanentError, match="no audio"):
        PiperBackend().synthesize(request(voice, "..."), tmp_path / "out.wav")


def test_voice_reloads_when_file_changes(tmp_path):
    path = make_tiny_piper_voice(tmp_path / "v", sample_rate=16000)
    speak(tmp_path, request(path), "a.wav")
    make_tiny_piper_voice(tmp_path / "v", sample_rate=24000)  # same path, new content
    for f in (path, Path(f"{path}.json")):  # a coarse file-system clock must not hide the change
        st = f.stat()
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    with wave.open(str(speak(tmp_path, request(path), "b.wav")), "rb") as w:
        assert w.getframerate() == 24000


def test_module_import_is_light():
    code = ("import sys, stages.backends.piper; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('piper', 'onnxruntime', 'onnx')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_without_piper_says_how_to_install(voice, tmp_path, monkeypatch):
    copy = tmp_path / "copy.onnx"  # a path not loaded yet, so the per-process cache cannot answer
    copy.write_bytes(voice.read_bytes())
    Path(f"{copy}.json").write_bytes(Path(f"{voice}.json").read_bytes())
    monkeypatch.setitem(sys.modules, "piper", None)  # `import piper` now raises ImportError
    with pytest.raises(PermanentError, match=r"pip install 'dramaforge\[piper\]'"):
        PiperBackend().synthesize(request(copy), tmp_path / "out.wav")
