"""DashScope cloned-voice speech (Qwen voice cloning + Qwen3-TTS-VC) against the local fake of its protocol
(`fakes_tts/dashscope_speech.py`): enrollment through the real stage and job journal (once per clip, a lost
answer found by its name and never sent twice, unknown when it cannot be looked up), synthesis in the
enrolled voice, and every provider failure as the class a flow acts on."""

from __future__ import annotations

import base64
import io
import json
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from fake_hosted import FakeHosted
from fakes_tts import _voice
from fakes_tts import dashscope_speech as proto

from stages.backends._http import AnswerLost
from stages.backends._jobs import ShotJobs, UnknownJob
from stages.backends._voices import VoiceClip
from stages.backends.base import PermanentError, RejectedError, SpeechRequest, TransientError
from stages.backends.dashscope_speech import clip_data_uri, preferred_name
from stages.backends.espeak import EspeakBackend
from stages.backends.registry import backend_class
from stages.core.artifacts import file_sha256
from stages.core.jobs import JobState, Journal
from stages.core.ledger import Ledger
from stages.core.media import run_ffmpeg
from stages.enroll_voice import enroll_voice
from stages.units import VoiceUnit

ENGINE = "dashscope-tts"
MODEL = "qwen3-tts-vc-2026-01-22"
CLIP_TEXT = "The lighthouse keeper counted every ship that passed the rocks tonight."
LINE = "Nobody leaves this island before the storm is over."


@pytest.fixture(scope="module")
def server():
    s = FakeHosted(b"", hang_s=0.5)
    yield s
    s.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """About 4-5 s of eSpeak speech: a 22.05 kHz WAV, below the 24 kHz the enrollment takes."""
    path = tmp_path_factory.mktemp("clips") / "ava.wav"
    EspeakBackend().synthesize(SpeechRequest(text=CLIP_TEXT, language="en-us", variant=None, pitch=50,
                                             speed_wpm=150), path)
    return path


@pytest.fixture(autouse=True)
def key(monkeypatch, server):
    monkeypatch.setenv(proto.KEY_ENV, proto.KEY)
    server.faults.submit.clear(), server.faults.listing.clear(), server.faults.result.clear()


def make(server, **kw):
    # fakes_tts.backend() looks the fake up by its module's name (dashscope-speech), not the engine's
    cls = backend_class("speech", ENGINE)
    return cls(cls.Options(**{**proto.options(server), "request_timeout_s": 2, "timeout_s": 30, **kw}))


def unit(tmp_path: Path, clip: Path, character: str) -> VoiceUnit:
    """The character's voice unit (each test its own character: its own name at the provider)."""
    vc = VoiceClip(character, character.title(), clip, CLIP_TEXT, file_sha256(clip), "en-us")
    return VoiceUnit(f"voice-{character}-{ENGINE}", character, ENGINE, vc, f"k-{character}",
                     tmp_path / "build" / "voices" / f"k-{character}.json")


def jobs_for(tmp_path: Path, u: VoiceUnit) -> ShotJobs:
    return ShotJobs(Journal(Ledger(tmp_path / "l.sqlite")), u.id, u.key, since=time.time())


def enrolls(server, u: VoiceUnit) -> int:
    return server.calls.count(("enroll", preferred_name(u.clip)))


def sent_clip(server, u: VoiceUnit) -> bytes:
    """The clip the last enrollment of `u` carried, decoded from its data URI."""
    body = next(b for a, b in reversed(server.dashscope_bodies)
                if a == "create" and b["input"]["preferred_name"] == preferred_name(u.clip))
    uri = body["input"]["audio"]["data"]
    assert uri.startswith("data:audio/wav;base64,")
    return base64.b64decode(uri.split(",", 1)[1])


def line(voice_id: str | None, text: str = LINE, **kw) -> SpeechRequest:
    return SpeechRequest(text=text, language="en-us", variant=None, pitch=50, speed_wpm=160, voice_id=voice_id, **kw)


def read_pcm(path: Path) -> tuple[int, np.ndarray]:
    with wave.open(str(path)) as w:
        assert (w.getsampwidth(), w.getnchannels(), w.getcomptype()) == (2, 1, "NONE")
        return w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), "<i2")


def test_enrolls_once_and_speaks_in_the_clip_voice(server, clip, tmp_path):
    b, u = make(server), unit(tmp_path, clip, "ava")
    jobs = jobs_for(tmp_path, u)
    first = enroll_voice(u, b, jobs)
    assert b.identity()["model"] == MODEL and proto.KEY not in json.dumps([b.identity(), b.account()])
    assert not first.reused and first.voice_id.startswith(f"qwen-tts-vc-{preferred_name(u.clip)}-voice-")
    assert json.loads(u.path.read_text())["voice_id"] == first.voice_id
    assert jobs.latest().state == JobState.DONE and jobs.latest().job_id == first.voice_id
    create = next(b for a, b in reversed(server.dashscope_bodies) if a == "create")
    assert create["model"] == "qwen-voice-enrollment"
    assert {k: v for k, v in create["input"].items() if k != "audio"} == {
        "action": "create", "target_model": MODEL, "preferred_name": preferred_name(u.clip), "text": CLIP_TEXT,
        "language": "en"}
    with wave.open(io.BytesIO(sent_clip(server, u))) as w:  # converted up to what the docs take
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)

    again = enroll_voice(u, b, jobs_for(tmp_path, u))
    assert again.reused and again.voice_id == first.voice_id and enrolls(server, u) == 1

    out = tmp_path / "line.wav"
    b.synthesize(line(first.voice_id, instructions="Deliver this line \"angrily\"."), out)
    tts = server.dashscope_bodies[-1][1]
    # acting: None -- a VC model takes no instructions, so none are sent (the fake refuses unknown fields)
    assert b.capabilities.acting is None
    assert tts == {"model": MODEL, "input": {"text": LINE, "voice": first.voice_id, "language_type": "English"}}
    rate, pcm = read_pcm(out)
    assert rate == _voice.RATE and abs(len(pcm) / rate - _voice.seconds_for(LINE)) < 0.05
    expected = np.frombuffer(_voice.pcm16(_voice.cloned(sent_clip(server, u), LINE)), "<i2")
    assert np.array_equal(pcm, expected)  # the enrolled clip's voice, not another


@pytest.mark.parametrize("fault", ["500-after", "drop-after", "html-after"])
def test_a_lost_enrollment_is_found_by_its_name_not_sent_again(server, clip, tmp_path, fault):
    b, u = make(server), unit(tmp_path, clip, f"lost{fault.split('-')[0]}")
    server.faults.submit.append(fault)
    result = enroll_voice(u, b, jobs_for(tmp_path, u))
    assert enrolls(server, u) == 1
    made = [v for v in server.dashscope_voices if f"-{preferred_name(u.clip)}-voice-" in v]
    assert made == [result.voice_id]
    assert jobs_for(tmp_path, u).latest().state == JobState.DONE


def test_a_lost_enrollment_that_made_nothing_stays_unknown_and_is_never_resent(server, clip, tmp_path):
    b, u = make(server), unit(tmp_path, clip, "ghost")
    server.faults.submit.append("drop")  # the connection closes before the voice is made
    with pytest.raises(UnknownJob, match="dashboard|voice list"):
        enroll_voice(u, b, jobs_for(tmp_path, u))
    jobs = jobs_for(tmp_path, u)
    assert jobs.latest().state == JobState.UNKNOWN and not u.path.exists()
    with pytest.raises(UnknownJob):  # a second run looks again, and sends nothing
        enroll_voice(u, b, jobs)
    assert enrolls(server, u) == 1


def test_an_enrollment_that_cannot_be_looked_up_is_unknown_until_it_can(server, clip, tmp_path):
    b, u = make(server), unit(tmp_path, clip, "hidden")
    server.faults.submit.append("500-after")
    server.faults.listing.append("403")  # this key may not list voices: no lookup at all
    with pytest.raises(UnknownJob) as err:
        enroll_voice(u, b, jobs_for(tmp_path, u))
    assert proto.KEY_ENV in str(err.value) and proto.KEY not in str(err.value)
    assert jobs_for(tmp_path, u).latest().state == JobState.UNKNOWN
    result = enroll_voice(u, b, jobs_for(tmp_path, u))  # the listing answers now: found, not paid again
    assert not result.reused and enrolls(server, u) == 1
    assert jobs_for(tmp_path, u).latest().job_id == result.voice_id


def test_enrollment_errors(server, clip, tmp_path, monkeypatch):
    b, u = make(server), unit(tmp_path, clip, "err")
    server.faults.submit.append("429")
    with pytest.raises(TransientError) as err:
        enroll_voice(u, b, jobs_for(tmp_path, u))
    assert not isinstance(err.value, AnswerLost) and err.value.retry_after_s == 0
    assert jobs_for(tmp_path, u).latest().state == JobState.REFUSED  # answered: nothing was made

    monkeypatch.setenv(proto.KEY_ENV, "sk-wrong")
    with pytest.raises(PermanentError, match=proto.KEY_ENV):
        enroll_voice(u, make(server), jobs_for(tmp_path, u))
    monkeypatch.delenv(proto.KEY_ENV)
    with pytest.raises(PermanentError, match=proto.KEY_ENV):
        enroll_voice(u, make(server), jobs_for(tmp_path, u))
    assert enrolls(server, u) == 1 and not [v for v in server.dashscope_voices if preferred_name(u.clip) in v]


def test_speech_errors(server, clip, tmp_path, monkeypatch):
    b, u = make(server), unit(tmp_path, clip, "talk")
    voice = enroll_voice(u, b, jobs_for(tmp_path, u)).voice_id
    out = tmp_path / "x.wav"
    server.faults.result.append("429")
    with pytest.raises(TransientError) as err:
        b.synthesize(line(voice), out)
    assert err.value.retry_after_s == 0
    server.faults.result.append("500")
    with pytest.raises(TransientError):
        b.synthesize(line(voice), out)
    server.faults.result.append("html")
    with pytest.raises(TransientError):
        b.synthesize(line(voice), out)
    with pytest.raises(RejectedError, match="DataInspectionFailed"):
        b.synthesize(line(voice, "FORBIDDEN words"), out)
    with pytest.raises(PermanentError, match="Invalid voice"):
        b.synthesize(line("qwen-tts-vc-nobody-voice-20260101000000000-abcd"), out)
    with pytest.raises(PermanentError, match="no enrolled voice"):
        b.synthesize(line(None), out)
    monkeypatch.setenv(proto.KEY_ENV, "sk-wrong")
    with pytest.raises(PermanentError, match=proto.KEY_ENV) as err:
        b.synthesize(line(voice), out)
    assert "sk-wrong" not in str(err.value)
    assert not out.exists()


def test_a_clip_longer_than_the_docs_allow_is_refused_before_sending(tmp_path):
    long = tmp_path / "long.wav"
    run_ffmpeg(["-f", "lavfi", "-i", "sine=frequency=200:duration=61", "-ac", "1", "-ar", "8000", str(long)])
    vc = VoiceClip("bo", "Bo", long, "", file_sha256(long), "cmn")
    with pytest.raises(PermanentError, match="at most 60 s"):
        clip_data_uri(vc)
