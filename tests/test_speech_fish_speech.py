"""Fish Audio cloned voices against a local server speaking its protocol (`fakes_tts/fish_speech.py`):
a character's clip enrolled once as a private model through the real stage and job driver, a lost
enrollment found again by its title and never re-sent, lines spoken in that voice with the acting
cues each model takes, and every provider failure as the class the flows act on."""

from __future__ import annotations

import hashlib
import json
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from fake_hosted import FakeHosted
from fakes_tts import _voice
from fakes_tts import fish_speech as proto

from stages.backends._jobs import ShotJobs, UnknownJob
from stages.backends._voices import VoiceClip
from stages.backends.base import PermanentError, RejectedError, SpeechRequest, TransientError
from stages.backends.espeak import EspeakBackend
from stages.backends.fish_speech import FishAudioSpeech, Options
from stages.backends.registry import backend_class
from stages.core.jobs import Journal
from stages.core.ledger import Ledger
from stages.core.prompts import render_template
from stages.enroll_voice import enroll_voice
from stages.units import VoiceUnit

CLIP_TEXT = "The quick brown fox jumps over the lazy dog, and the river runs quietly past the mill at dawn."


@pytest.fixture(scope="module")
def prefect_api():
    """Nothing here runs a flow: no Prefect server for this module (conftest starts one per session, ~12 s)."""
    yield None


@pytest.fixture(scope="module")
def server():
    s = FakeHosted(b"", hang_s=0.5)
    yield s
    s.close()


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv(proto.KEY_ENV, proto.KEY)


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory) -> Path:
    """About 6 s of one eSpeak speaker: the character's reference clip."""
    path = tmp_path_factory.mktemp("clip") / "ava.wav"
    EspeakBackend().synthesize(SpeechRequest(text=CLIP_TEXT, language="en-us", variant="f2", pitch=60,
                                             speed_wpm=150), path)
    return path


def make(server, **kw) -> FishAudioSpeech:
    # fakes_tts.backend() keys its fakes by module name (fish-speech), not by the backend's (fish-audio)
    cls = backend_class("speech", "fish-audio")
    return cls(cls.Options(**{**proto.options(server), **kw}))


def clip_for(clip_path: Path, character: str) -> VoiceClip:
    """The clip as a character's (each test its own character, so its own label on the shared server)."""
    return VoiceClip(character, character.upper(), clip_path, CLIP_TEXT,
                     hashlib.sha256(clip_path.read_bytes()).hexdigest(), "en")


def unit_for(tmp_path: Path, clip: VoiceClip) -> tuple[VoiceUnit, ShotJobs]:
    unit = VoiceUnit(f"voice-{clip.character}-fish-audio", clip.character, "fish-audio", clip, f"k-{clip.character}",
                     tmp_path / "build" / "voices" / f"k-{clip.character}.json")
    jobs = ShotJobs(Journal(Ledger(tmp_path / "l.sqlite")), unit.id, unit.key, since=time.time())
    return unit, jobs


def made(server, label: str) -> list[dict]:
    return [v for v in proto.voices(server).values() if v["title"] == label]


def rows(jobs: ShotJobs) -> list[tuple[str, str | None]]:
    return [(str(j.state), j.job_id) for j in jobs.journal.of(jobs.unit_id)]


@pytest.fixture(scope="module")
def voice_id(server, clip_path, tmp_path_factory) -> str:
    """One enrolled voice the synthesis tests share."""
    unit, jobs = unit_for(tmp_path_factory.mktemp("voice"), clip_for(clip_path, "ava"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(proto.KEY_ENV, proto.KEY)
        return enroll_voice(unit, make(server), jobs).voice_id


def read_wav(path: Path) -> tuple[int, int, int, np.ndarray]:
    with wave.open(str(path)) as w:
        frames = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        return w.getnchannels(), w.getsampwidth(), w.getframerate(), frames


# --- enrollment -----------------------------------------------------------------------------------

def test_a_clip_is_enrolled_once_as_a_private_model_and_then_reused(server, clip_path, tmp_path):
    clip = clip_for(clip_path, "bea")
    unit, jobs = unit_for(tmp_path, clip)
    result = enroll_voice(unit, make(server), jobs)
    (v,) = made(server, clip.label)
    assert (result.voice_id, result.reused) == (v["id"], False)
    assert (v["visibility"], v["texts"], v["clip"]) == ("private", [CLIP_TEXT], clip_path.read_bytes())
    assert v["state"] == "trained" and v["looks"] >= 2  # polled through created -> training -> trained
    assert rows(jobs) == [("done", v["id"])]
    record = json.loads(unit.path.read_text())
    assert (record["voice_id"], record["label"], record["model"]) == (v["id"], clip.label, "s1")
    before = len(server.calls)
    again = enroll_voice(unit, make(server), jobs)
    assert (again.voice_id, again.reused, len(server.calls)) == (v["id"], True, before)


@pytest.mark.parametrize("fault", ["500-after", "drop-after", "html-after"])
def test_a_lost_enrollment_is_found_by_its_exact_title_and_never_sent_twice(server, clip_path, tmp_path, fault):
    clip = clip_for(clip_path, f"cy-{fault[:4]}")
    # someone's model whose title only contains the label: the listing's filter returns it, the match must not
    proto.voices(server)["f" * 32] = {"id": "f" * 32, "title": clip.label + "-copy", "description": "",
                                      "visibility": "private", "tags": [], "texts": [], "clip": b"",
                                      "state": "trained", "looks": 0, "tasks": 0, "created": time.time() - 60}
    unit, jobs = unit_for(tmp_path, clip)
    server.faults.submit.append(fault)
    result = enroll_voice(unit, make(server), jobs)
    (v,) = made(server, clip.label)
    assert result.voice_id == v["id"] != "f" * 32
    assert server.calls.count(("enroll", clip.label)) == 1 and ("list", clip.label) in server.calls
    assert rows(jobs) == [("done", v["id"])]
    del proto.voices(server)["f" * 32]


def test_a_lost_enrollment_that_cannot_be_looked_up_stays_unknown_until_it_is_found(server, clip_path, tmp_path):
    clip = clip_for(clip_path, "dot")
    unit, jobs = unit_for(tmp_path, clip)
    server.faults.submit.append("500-after")
    server.faults.listing.append("403")  # a key that may not list models
    with pytest.raises(UnknownJob, match="Fish Audio"):
        enroll_voice(unit, make(server), jobs)
    (v,) = made(server, clip.label)
    assert rows(jobs) == [("unknown", None)] and not unit.path.exists()
    result = enroll_voice(unit, make(server), jobs)  # the next run looks again, and finds it
    assert result.voice_id == v["id"] and rows(jobs) == [("done", v["id"])]
    assert server.calls.count(("enroll", clip.label)) == 1


def test_a_refused_or_rate_limited_enrollment_made_nothing_and_a_failed_training_is_permanent(server, clip_path,
                                                                                             tmp_path):
    clip = clip_for(clip_path, "eve")
    unit, jobs = unit_for(tmp_path, clip)
    server.faults.submit.append("429")
    with pytest.raises(TransientError) as caught:
        enroll_voice(unit, make(server), jobs)
    assert caught.value.retry_after_s == 0 and rows(jobs) == [("refused", None)] and not made(server, clip.label)
    server.fish_failing = {clip.label}
    try:
        with pytest.raises(PermanentError, match="could not train"):
            enroll_voice(unit, make(server), jobs)
    finally:
        server.fish_failing = set()
    (v,) = made(server, clip.label)
    assert rows(jobs) == [("refused", None), ("failed", v["id"])]


# --- synthesis ------------------------------------------------------------------------------------

@pytest.mark.parametrize("model, cues, sent", [("s1", ["angry", "whispering"], "(angry)(whispering) Get out."),
                                               ("s2-pro", ["angry", "whispering"], "[angry][whispering] Get out.")])
def test_a_line_is_spoken_in_the_enrolled_voice_with_the_models_own_acting_cues(server, clip_path, voice_id,
                                                                               tmp_path, model, cues, sent):
    acting = render_template("acting/fish-audio.j2", character="AVA", notes="husky", parenthetical="angrily, in a "
                             "whisper", extension="", language="en", text="Get out.")
    assert acting == "(angry)(whispering)"
    out = tmp_path / "line.wav"
    make(server, model=model).synthesize(SpeechRequest("Get out.", "en", None, 50, 165, speed=1.25,
                                                       instructions=acting, voice_id=voice_id), out)
    seen = proto.spoken(server)[-1]
    assert (seen["model_header"], seen["content_type"], seen["reference_id"], seen["text"]) == \
        (model, "application/msgpack", voice_id, sent)
    assert (seen["cues"], seen["words"], seen["format"], seen["sample_rate"]) == (cues, "Get out.", "wav", 44100)
    assert (seen["latency"], seen["normalize"], seen["prosody"]["speed"]) == ("normal", True, 1.25)
    channels, width, rate, frames = read_wav(out)
    assert (channels, width, rate) == (1, 2, 44100)
    expected = np.frombuffer(_voice.pcm16(_voice.cloned(clip_path.read_bytes(), "Get out.", 44100)), "<i2")
    assert len(frames) == round(_voice.seconds_for("Get out.") * 44100) and np.array_equal(frames, expected)


def test_s1_is_sent_only_the_markers_it_knows_and_pcm_comes_back_as_a_wav(server, clip_path, voice_id, tmp_path):
    s1, s2 = make(server), make(server, model="s2.1-pro")
    assert s1.acted("Hm.", "(angry)(若有所思)") == "(angry) Hm." and s1.acted("Hm.", "(pondering)") == "Hm."
    assert s2.acted("Hm.", "(angry)(若有所思)") == "[angry][若有所思] Hm." and s2.acted("Hm.", "") == "Hm."
    assert render_template("acting/fish-audio.j2", character="林美", notes="", parenthetical="冷笑", extension="",
                           language="zh", text="好啊。") == "(sneering)"
    assert render_template("acting/fish-audio.j2", character="林美", notes="", parenthetical="若有所思",
                           extension="O.S.", language="zh", text="好啊。") == "(若有所思)"
    out = tmp_path / "pcm.wav"
    make(server, format="pcm", sample_rate=24000).synthesize(
        SpeechRequest("我明白了。", "zh", None, 50, 165, instructions="(若有所思)", voice_id=voice_id), out)
    seen = proto.spoken(server)[-1]
    assert (seen["text"], seen["format"], seen["sample_rate"]) == ("我明白了。", "pcm", 24000)  # s1 drops the cue
    channels, width, rate, frames = read_wav(out)
    assert (channels, width, rate, len(frames)) == (1, 2, 24000, round(_voice.seconds_for("我明白了。") * 24000))


# --- errors ---------------------------------------------------------------------------------------

def line(voice_id: str | None, text: str = "Hello there.", **kw) -> SpeechRequest:
    return SpeechRequest(text, "en", None, 50, 165, voice_id=voice_id, **kw)


def test_a_bad_or_missing_key_is_permanent_and_names_its_variable(server, voice_id, tmp_path, monkeypatch):
    monkeypatch.setenv(proto.KEY_ENV, "fish-wrong-key")
    with pytest.raises(PermanentError, match=proto.KEY_ENV) as caught:
        make(server).synthesize(line(voice_id), tmp_path / "a.wav")
    assert "401" in str(caught.value) and "fish-wrong-key" not in str(caught.value)
    monkeypatch.delenv(proto.KEY_ENV)
    calls = len(server.calls)
    with pytest.raises(PermanentError, match=proto.KEY_ENV):
        make(server).synthesize(line(voice_id), tmp_path / "a.wav")
    assert len(server.calls) == calls


@pytest.mark.parametrize("fault, error, words", [("429", TransientError, "429"), ("500", TransientError, "500"),
                                                 ("refuse", RejectedError, "sensitive"),
                                                 ("402", PermanentError, "credit")])
def test_synthesis_failures_become_the_class_the_flows_act_on(server, voice_id, tmp_path, fault, error, words):
    server.faults.result.append(fault)
    with pytest.raises(BaseException) as caught:
        make(server).synthesize(line(voice_id), tmp_path / "a.wav")
    assert type(caught.value) is error and words in str(caught.value)
    if fault == "429":
        assert caught.value.retry_after_s == 0  # the server's Retry-After, not a guess
    assert not (tmp_path / "a.wav").exists()


def test_requests_fish_would_refuse_are_refused_as_permanent(server, voice_id, tmp_path):
    with pytest.raises(PermanentError, match="Reference not found"):
        make(server).synthesize(line("0" * 32), tmp_path / "a.wav")
    calls = len(server.calls)
    with pytest.raises(PermanentError, match="0.5 to 2"):
        make(server).synthesize(line(voice_id, speed=3.0), tmp_path / "a.wav")
    with pytest.raises(PermanentError, match="no enrolled voice"):
        make(server).synthesize(line(None), tmp_path / "a.wav")
    assert len(server.calls) == calls


def test_options_default_to_fish_audio_and_identity_names_what_shapes_the_audio(server):
    o = Options()
    assert (o.base_url, o.api_key_env, o.model, o.format, o.sample_rate) == ("https://api.fish.audio", "FISH_API_KEY",
                                                                             "s1", "wav", 44100)
    with pytest.raises(ValueError):
        Options(model="speech-1.6")  # deprecated; an unknown name would silently be billed as s2.1-pro
    b = make(server, model="s2-pro", latency="balanced")
    ident = b.identity()
    assert (ident["engine"], ident["model"], ident["latency"], ident["sample_rate"]) == ("fish-audio", "s2-pro",
                                                                                       "balanced", 44100)
    assert proto.KEY not in json.dumps(ident) and proto.KEY not in json.dumps(b.account())
    assert b.capabilities.languages == () and "ja" in make(server).capabilities.languages
    assert (b.capabilities.acting, b.capabilities.bills, b.capabilities.billed) == ("tags", "bytes", True)
