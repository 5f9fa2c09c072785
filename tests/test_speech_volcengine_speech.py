"""Volcengine speech (声音复刻 into bought slots, then the HTTP TTS) against its protocol on the local server
(`fakes_tts/volcengine_speech.py`): enrollment through the real stage and job journal, one upload however its
answer is lost, a slot trained earlier never taken for a lost upload, lines in the enrolled voice (with the
emotion field where it is switched on), and each provider failure as the class the flows act on."""

from __future__ import annotations

import time
import wave
from pathlib import Path

import pytest
from pydantic import ValidationError

from fake_hosted import FakeHosted, Faults
from fakes_tts import _voice
from fakes_tts import volcengine_speech as proto
from stages.backends._jobs import ShotJobs, UnknownJob
from stages.backends._voices import VoiceClip
from stages.backends.base import PermanentError, RejectedError, SpeechRequest, TransientError
from stages.backends.volcengine_speech import Options, VolcengineSpeech
from stages.core.artifacts import file_digest
from stages.core.jobs import JobState, Journal
from stages.core.ledger import Ledger
from stages.core.prompts import render_template
from stages.core.voice_figure import figure
from stages.enroll_voice import enroll_voice
from stages.units import VoiceUnit

ENGINE = "volcengine-tts"
LINE = "We leave at dawn, whatever the weather says."


@pytest.fixture(scope="module")
def server():
    s = FakeHosted(b"", hang_s=0.5)
    yield s
    s.close()


@pytest.fixture(autouse=True)
def fresh(server, monkeypatch):
    """A clean app (slots, faults, calls) and its credentials for each test."""
    for env, value in proto.ENV.items():
        monkeypatch.setenv(env, value)
    proto.reset(server)
    server.faults, server.steps = Faults(), 2
    server.calls.clear()
    server.__dict__.pop("wrong_voices", None)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """The reference clip: about 5 s of one eSpeak voice."""
    from stages.backends.espeak import EspeakBackend

    path = tmp_path_factory.mktemp("clips") / "ava.wav"
    EspeakBackend().synthesize(SpeechRequest(text="The harbour lights were out again, so we rowed home by the "
                                                  "stars and argued about the map.", language="en-us",
                                             variant="f2", pitch=60, speed_wpm=150), path)
    with wave.open(str(path)) as w:
        assert 4 <= w.getnframes() / w.getframerate() <= 10
    return path


def make(server, **kw) -> VolcengineSpeech:
    return VolcengineSpeech(Options(**{**proto.options(server), "request_timeout_s": 5, "timeout_s": 30, **kw}))


def unit(tmp_path: Path, clip: Path, character: str = "ava") -> VoiceUnit:
    vc = VoiceClip(character, character.upper(), clip, "", file_digest(clip), "en-us")
    return VoiceUnit(f"voice-{character}-{ENGINE}", character, ENGINE, vc, "k1", tmp_path / "voices" / "k1.json")


def jobs_for(tmp_path: Path, character: str = "ava") -> ShotJobs:
    return ShotJobs(Journal(Ledger(tmp_path / "l.sqlite")), f"voice-{character}-{ENGINE}", "k1", since=time.time())


def line(voice_id: str, text: str = LINE, **kw) -> SpeechRequest:
    return SpeechRequest(text=text, language="en-us", variant=None, pitch=50, speed_wpm=150, voice_id=voice_id, **kw)


def wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        assert (w.getsampwidth(), w.getnchannels(), w.getframerate()) == (2, 1, 24000)  # 16-bit PCM as asked
        return w.getnframes() / w.getframerate()


def test_enrolls_once_then_speaks_in_the_clip(tmp_path, server, clip):
    b, slot = make(server), proto.SLOTS["ava"]
    first = enroll_voice(unit(tmp_path, clip), b, jobs_for(tmp_path))
    assert first.voice_id == f"{slot}@{file_digest(clip)[:12]}" and not first.reused
    (up,) = server.volc_uploads  # as the docs give it: the ICL model, English, the clip as it is
    assert (up["resource"], up["model_type"], up["language"], up["source"], up["audio_format"]) == \
        ("volc.megatts.voiceclone", 1, 1, 2, "wav")
    assert up["audio"] == clip.read_bytes() and "text" not in up
    assert server.count("status") >= server.steps  # polled until trained
    (row,) = Journal(Ledger(tmp_path / "l.sqlite")).of(f"voice-ava-{ENGINE}")
    assert (row.state, row.job_id) == (JobState.DONE, first.voice_id)
    again = enroll_voice(unit(tmp_path, clip), make(server), jobs_for(tmp_path))  # a later run
    assert again.reused and again.voice_id == first.voice_id and server.count("enroll") == 1

    out, other = tmp_path / "line.wav", tmp_path / "other.wav"
    b.synthesize(line(first.voice_id), out)
    assert abs(wav_seconds(out) - _voice.seconds_for(LINE)) < 0.05
    server.wrong_voices = {slot}
    b.synthesize(line(first.voice_id), other)
    assert figure(out, clip) > figure(other, clip)  # the enrolled voice, not another speaker
    said = server.volc_tts
    assert [s["cluster"] for s in said] == ["volcano_icl"] * 2 and said[0]["voice_type"] == slot
    assert said[0]["reqid"] != said[1]["reqid"] and "emotion" not in said[0]  # a new reqid per call


def test_emotion_only_where_switched_on(tmp_path, server, clip):
    slot = proto.SLOTS["ava"]
    proto.train(server, slot, clip.read_bytes(), at=time.time())
    plain, acting = make(server), make(server, emotion=True)
    assert plain.capabilities.acting is None  # cloned voices are not confirmed to take emotions
    assert acting.capabilities.acting == "emotion" and "angry" in acting.capabilities.emotions
    assert "emotion" in acting.identity() and "emotion" not in plain.identity()
    note = render_template(f"acting/{ENGINE}.j2", None, character="AVA", notes="", parenthetical="愤怒",
                           extension="", language="zh", text=LINE)
    assert note == "angry"
    acting.synthesize(line(f"{slot}@x", instructions=note), tmp_path / "a.wav")
    plain.synthesize(line(f"{slot}@x", instructions=note), tmp_path / "b.wav")
    said = server.volc_tts
    assert (said[0]["emotion"], said[0]["enable_emotion"]) == ("angry", True) and "emotion" not in said[1]
    with pytest.raises(PermanentError, match="emotion 'whispering'"):
        acting.synthesize(line(f"{slot}@x", instructions="whispering"), tmp_path / "c.wav")


@pytest.mark.parametrize("fault", ["500-after", "drop-after"])
def test_lost_upload_is_found_never_sent_twice(tmp_path, server, clip, fault):
    server.faults.submit = [fault]
    result = enroll_voice(unit(tmp_path, clip), make(server), jobs_for(tmp_path))
    assert result.voice_id.startswith(proto.SLOTS["ava"] + "@")
    assert server.count("enroll") == 1 and proto.slots(server)[proto.SLOTS["ava"]]["left"] == proto.TRAININGS - 1
    (row,) = Journal(Ledger(tmp_path / "l.sqlite")).of(f"voice-ava-{ENGINE}")
    assert row.state == JobState.DONE


@pytest.mark.parametrize("looks", [[], ["500"] * 4], ids=["older-training", "status-failing"])
def test_lost_upload_that_cannot_be_told_stays_unknown(tmp_path, server, clip, looks):
    """The slot shows a training from an hour ago (another clip): not this upload's, so nothing is claimed
    and nothing is sent again, run after run."""
    slot = proto.SLOTS["ava"]
    proto.train(server, slot, b"an earlier clip", at=time.time() - 3600)
    server.faults.submit, server.faults.listing = ["drop"], list(looks)
    for _ in range(2):
        with pytest.raises(UnknownJob, match="may have made"):
            enroll_voice(unit(tmp_path, clip), make(server), jobs_for(tmp_path))
    assert server.count("enroll") == 1 and proto.slots(server)[slot]["left"] == proto.TRAININGS
    (row,) = Journal(Ledger(tmp_path / "l.sqlite")).of(f"voice-ava-{ENGINE}")
    assert row.state == JobState.UNKNOWN and not (tmp_path / "voices" / "k1.json").exists()


def test_enrollment_refused_or_impossible(tmp_path, server, clip):
    with pytest.raises(PermanentError, match=r"speakers: \{cy: S_"):  # no slot bought for them
        enroll_voice(unit(tmp_path, clip, "cy"), make(server), jobs_for(tmp_path, "cy"))
    server.volc_refuse_next = True
    with pytest.raises(RejectedError, match="1104"):
        enroll_voice(unit(tmp_path, clip), make(server), jobs_for(tmp_path))
    proto.slots(server)[proto.SLOTS["bo"]]["left"] = 0
    with pytest.raises(PermanentError, match="no trainings left"):
        make(server).enroll(unit(tmp_path, clip, "bo").clip, "df-1")
    assert server.count("enroll") == 2 and proto.slots(server)[proto.SLOTS["ava"]]["left"] == proto.TRAININGS
    (row,) = Journal(Ledger(tmp_path / "l.sqlite")).of(f"voice-ava-{ENGINE}")
    assert row.state == JobState.REFUSED


def test_provider_failures_as_the_flows_read_them(tmp_path, server, clip, monkeypatch):
    slot = proto.SLOTS["ava"]
    proto.train(server, slot, clip.read_bytes(), at=time.time())
    out, voice = tmp_path / "x.wav", f"{slot}@x"
    server.faults.result = ["429", "500"]
    with pytest.raises(TransientError) as e429:
        make(server).synthesize(line(voice), out)
    assert e429.value.retry_after_s == 0
    with pytest.raises(TransientError):
        make(server).synthesize(line(voice), out)
    server.volc_tts_codes = [3003, 3031, 3011]
    for kind in (TransientError, TransientError, PermanentError):
        with pytest.raises(kind):
            make(server).synthesize(line(voice), out)
    with pytest.raises(PermanentError, match="not a trained voice"):
        make(server).synthesize(line(f"{proto.SLOTS['bo']}@x"), out)
    with pytest.raises(PermanentError, match="at most 1024"):
        make(server).synthesize(line(voice, "长" * 400), out)
    monkeypatch.setenv(proto.KEY_ENV, "not-the-token")
    with pytest.raises(PermanentError, match=proto.KEY_ENV) as bad:
        make(server).synthesize(line(voice), out)
    assert "not-the-token" not in str(bad.value)
    with pytest.raises(PermanentError, match=proto.KEY_ENV):
        make(server).enroll(unit(tmp_path, clip).clip, "df-1")
    monkeypatch.delenv(proto.APP_ENV)
    assert any(proto.APP_ENV in problem for problem, _ in make(server).missing())
    with pytest.raises(PermanentError, match=proto.APP_ENV):
        make(server).synthesize(line(voice), out)
    assert not out.exists()


def test_options_refuse_what_the_console_does_not_sell(server):
    with pytest.raises(ValidationError, match="one slot holds one voice"):
        Options(speakers={"ava": "S_1", "bo": "S_1"})
    with pytest.raises(ValidationError, match="S_"):
        Options(speakers={"ava": "my-voice"})
    with pytest.raises(ValidationError, match="app id"):
        Options(app_id_env="AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ValidationError, match="model"):
        Options(model="seed-tts-2.0")
    b = make(server)
    assert b.identity()["model"] == "seed-icl-1.0" and proto.KEY not in str(b.identity())
    assert b.account()["model"] == "seed-icl-1.0" and b.capabilities.bills == "characters"


def test_a_slot_still_showing_its_earlier_training_is_not_yet_this_voice(tmp_path, server, clip):
    b, slot = make(server), proto.SLOTS["ava"]
    voice = b.enroll(unit(tmp_path, clip).clip, "df-1")
    proto.slots(server)[slot].update(status=2, create_ms=int((time.time() - 3600) * 1000))  # the old training
    assert b.enrollment(voice).state == "queued"
    assert make(server).enrollment(voice).state == "done"  # another process (a resumed run) trusts it


def test_a_slot_trained_with_another_clip_is_trained_again_before_the_first_clip_speaks(tmp_path, server, clip):
    """A slot holds one voice: clip A, then B, then A again must train the slot with A again (A's record
    would otherwise speak in B's voice), while A then A reuses it."""
    other = tmp_path / "other.wav"
    _voice_b = _voice.cloned(clip.read_bytes(), "A different clip of the same actor, read another day.")
    other.write_bytes(_voice.wav_bytes(_voice_b))

    def enroll(path: Path, key: str):
        vc = VoiceClip("ava", "AVA", path, "", file_digest(path), "en-us")
        u = VoiceUnit(f"voice-ava-{ENGINE}", "ava", ENGINE, vc, key, tmp_path / "voices" / f"{key}.json")
        return enroll_voice(u, make(server), ShotJobs(Journal(Ledger(tmp_path / "l.sqlite")), u.id, key,
                                                      since=time.time()))

    a = enroll(clip, "ka")
    assert enroll(clip, "ka").reused and server.count("enroll") == 1
    enroll(other, "kb")
    assert server.count("enroll") == 2
    again = enroll(clip, "ka")
    assert not again.reused and server.count("enroll") == 3 and again.voice_id == a.voice_id
