"""MiniMax speech (`minimax-tts`) against a local server speaking its protocol (`fakes_tts/minimax_speech.py`):
a character's clip enrolled once through the real stage and job journal (upload, clone under our own
voice id), a lost clone answer found by the voice list and never sent twice, a lookup that cannot
answer left `unknown`, lines spoken in the cloned voice with their emotion, and MiniMax's errors (all
HTTP 200 with a `base_resp` code) as the classes the flows act on."""

from __future__ import annotations

import hashlib
import json
import time
import wave
from pathlib import Path

import pytest

import fakes_tts
from fake_hosted import FakeHosted, Faults
from fakes_tts import _voice
from fakes_tts import minimax_speech as proto
from stages.backends._jobs import ShotJobs, UnknownJob
from stages.backends._voices import VoiceClip
from stages.backends.base import PermanentError, RejectedError, SpeechRequest, TransientError
from stages.backends.espeak import EspeakBackend
from stages.backends.minimax_speech import EMOTIONS, language_boost, voice_id_for
from stages.backends.registry import backend_class
from stages.core.jobs import Journal
from stages.core.ledger import Ledger
from stages.core.prompts import render_template
from stages.core.voice_figure import figure
from stages.enroll_voice import enroll_voice
from stages.units import VoiceUnit

READ = ("The harbour lights were burning low when Ava walked along the pier, counting the boats and wondering "
        "whether the ferry from the north would ever come back before the winter storms came in from the sea.")
LINE = "You should have told me the truth."


def _espeak(path: Path, text: str) -> Path:
    EspeakBackend().synthesize(SpeechRequest(text=text, language="en-us", variant="f2", pitch=60, speed_wpm=150),
                               path)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    out = {"ava": _espeak(folder / "ava.wav", READ), "short": _espeak(folder / "short.wav", "Too short.")}
    with wave.open(str(out["ava"])) as w:  # MiniMax takes 10 s - 5 min
        assert 10.5 < w.getnframes() / w.getframerate() < 20
    return out


@pytest.fixture(scope="module")
def server():
    s = FakeHosted(b"", hang_s=0.3)
    yield s
    s.close()


@pytest.fixture
def fake(server, monkeypatch):
    """The module's server, its MiniMax state and faults cleared, the key set."""
    for env, value in proto.ENV.items():
        monkeypatch.setenv(env, value)
    server.faults, server.calls[:] = Faults(), []
    for name in ("minimax_files", "minimax_voices", "minimax_tts", "wrong_voices", "foreign_voices"):
        server.__dict__.pop(name, None)
    return server


def make(server, **options):
    return fakes_tts.backend(server, "minimax-tts", **{"request_timeout_s": 5, "timeout_s": 30, **options})


def voice_clip(path: Path, character: str = "ava") -> VoiceClip:
    return VoiceClip(character, character.title(), path, "", hashlib.sha256(path.read_bytes()).hexdigest(), "en-us")


def unit_for(tmp_path: Path, clip: VoiceClip) -> VoiceUnit:
    key = "k" + clip.sha256[:8]
    return VoiceUnit(f"voice-{clip.character}-minimax-tts", clip.character, "minimax-tts", clip, key,
                     tmp_path / "voices" / f"{key}.json")


def jobs_for(tmp_path: Path, unit: VoiceUnit, ledger: str = "l.sqlite") -> ShotJobs:
    return ShotJobs(Journal(Ledger(tmp_path / ledger)), unit.id, unit.key, since=time.time())


def rows(jobs: ShotJobs) -> list[tuple[str, str | None]]:
    return [(str(j.state), j.job_id) for j in jobs.journal.of(jobs.unit_id)]


def count(server, what: str) -> int:
    return sum(1 for e, _ in server.calls if e == what)


def line(voice_id: str, text: str = LINE, instructions: str | None = None, language: str = "en-us") -> SpeechRequest:
    return SpeechRequest(text=text, language=language, variant=None, pitch=50, speed_wpm=175,
                         instructions=instructions, voice_id=voice_id)


def read_wav(path: Path) -> tuple[int, int, int, float]:
    with wave.open(str(path)) as w:
        return w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes() / w.getframerate()


# --- enrollment through the stage and the job journal ------------------------------------------

def test_a_clip_is_uploaded_and_cloned_once_under_our_voice_id_and_then_reused(fake, clips, tmp_path):
    clip = voice_clip(clips["ava"])
    unit, backend = unit_for(tmp_path, clip), make(fake)
    jobs = jobs_for(tmp_path, unit)
    result = enroll_voice(unit, backend, jobs)
    vid = voice_id_for(clip.label)
    assert (result.voice_id, result.reused) == (vid, False) and proto.VOICE_ID.fullmatch(vid)
    assert json.loads(unit.path.read_text())["voice_id"] == vid and rows(jobs) == [("done", vid)]
    ((file_id, (name, data, purpose)),) = fake.minimax_files.items()
    assert (name, data, purpose) == ("ava.wav", clips["ava"].read_bytes(), "voice_clone")
    sent = fake.minimax_voices[vid]["body"]
    assert sent == {"file_id": file_id, "voice_id": vid, "need_noise_reduction": False,
                    "need_volume_normalization": False, "language_boost": "English"}  # no paid preview text
    assert (count(fake, "upload"), count(fake, "enroll")) == (1, 1)
    calls = len(fake.calls)
    again = enroll_voice(unit, make(fake), jobs_for(tmp_path, unit))
    assert (again.voice_id, again.reused, len(fake.calls)) == (vid, True, calls)  # not a request more


@pytest.mark.parametrize("fault", ["500-after", "drop-after"])
def test_a_lost_clone_answer_is_found_in_the_voice_list_and_never_sent_twice(fake, clips, tmp_path, fault):
    clip = voice_clip(clips["ava"])
    unit = unit_for(tmp_path, clip)
    fake.faults.submit = [fault]
    jobs = jobs_for(tmp_path, unit)
    result = enroll_voice(unit, make(fake), jobs)
    assert result.voice_id == voice_id_for(clip.label) and rows(jobs) == [("done", result.voice_id)]
    assert count(fake, "enroll") == 1 and ("list", "voice_cloning") in fake.calls


def test_a_lost_answer_that_cannot_be_looked_up_stays_unknown_and_is_resumed_by_lookup_not_resent(fake, clips,
                                                                                                    tmp_path):
    clip = voice_clip(clips["ava"])
    unit = unit_for(tmp_path, clip)
    fake.faults.submit, fake.faults.listing = ["drop-after"], ["500", "1002", "hang"]
    jobs = jobs_for(tmp_path, unit)
    with pytest.raises(UnknownJob, match="may have made"):
        enroll_voice(unit, make(fake, request_timeout_s=0.2), jobs)
    assert [s for s, _ in rows(jobs)] == ["unknown"] and not unit.path.exists()
    result = enroll_voice(unit, make(fake), jobs_for(tmp_path, unit))  # the next run looks again
    assert rows(jobs) == [("done", result.voice_id)] and count(fake, "enroll") == 1


def test_a_clone_the_complete_list_shows_was_never_made_is_asked_again(fake, clips, tmp_path):
    clip = voice_clip(clips["ava"])
    unit = unit_for(tmp_path, clip)
    fake.faults.submit = ["500"]  # refused before anything was made, but the answer says nothing
    jobs = jobs_for(tmp_path, unit)
    with pytest.raises(TransientError, match="made no job"):
        enroll_voice(unit, make(fake, request_timeout_s=0.3), jobs)  # settles 0.9 s after sending
    assert [s for s, _ in rows(jobs)] == ["refused"] and not fake.minimax_voices
    result = enroll_voice(unit, make(fake), jobs)
    assert rows(jobs)[-1] == ("done", result.voice_id) and count(fake, "enroll") == 2
    assert list(fake.minimax_voices) == [result.voice_id]


def test_a_voice_the_account_already_has_is_taken_and_an_id_held_elsewhere_is_refused(fake, clips, tmp_path):
    clip = voice_clip(clips["ava"])
    unit = unit_for(tmp_path, clip)
    vid = make(fake).enroll(clip, "df-earlier")  # made by an earlier render whose ledger is gone
    result = enroll_voice(unit, make(fake), jobs_for(tmp_path, unit))
    assert result.voice_id == vid and count(fake, "enroll") == 2 and len(fake.minimax_voices) == 1  # 2039: made
    other = voice_clip(clips["ava"], "bob")
    fake.foreign_voices = {voice_id_for(other.label)}
    with pytest.raises(PermanentError, match="lists no such voice"):
        make(fake).enroll(other, "df-x")
    tuned = make(fake, noise_reduction=True)  # another clone setting: another id, free to take
    assert tuned.enroll(other, "df-y") == voice_id_for(other.label, noise_reduction=True) != voice_id_for(other.label)
    assert fake.minimax_voices[tuned.voice_id(other)]["body"]["need_noise_reduction"] is True


def test_a_clip_minimax_would_refuse_is_refused_before_any_request(fake, clips, tmp_path):
    with pytest.raises(PermanentError, match="10 s to 5 min"):
        make(fake).enroll(voice_clip(clips["short"]), "df-x")
    flac = tmp_path / "ava.flac"
    flac.write_bytes(b"fLaC")
    with pytest.raises(PermanentError, match="mp3, m4a or wav"):
        make(fake).enroll(voice_clip(flac), "df-x")
    assert fake.calls == []


# --- speaking -----------------------------------------------------------------------------------

def test_a_line_is_spoken_in_the_cloned_voice_with_the_emotion_its_acting_note_gives(fake, clips, tmp_path):
    b = make(fake)
    vid = b.enroll(voice_clip(clips["ava"]), "df-1")
    acting = render_template("acting/minimax-tts.j2", None, character="Ava", notes="", parenthetical="愤怒地",
                             extension="", language="zh", text=LINE)
    assert acting == "angry" and acting in b.capabilities.emotions
    out = tmp_path / "line.wav"
    b.synthesize(line(vid, instructions=acting), out)
    channels, width, rate, seconds = read_wav(out)
    assert (channels, width, rate) == (1, 2, 32000) and abs(seconds - _voice.seconds_for(LINE)) < 0.01
    sent = fake.minimax_tts[-1]
    assert sent == {"model": "speech-2.6-hd", "text": LINE, "stream": False, "output_format": "hex",
                    "voice_setting": {"voice_id": vid, "speed": 1.0, "vol": 1.0, "pitch": 0, "emotion": "angry"},
                    "audio_setting": {"sample_rate": 32000, "format": "wav", "channel": 1},
                    "language_boost": "English"}
    b.synthesize(line(vid, text="我早就知道了。", language="cmn"), tmp_path / "plain.wav")  # no note: no emotion
    plain = fake.minimax_tts[-1]
    assert "emotion" not in plain["voice_setting"] and plain["language_boost"] == "Chinese"
    fake.wrong_voices = {vid}  # a provider that fell back to another speaker
    b.synthesize(line(vid), tmp_path / "wrong.wav")
    assert figure(out, clips["ava"]) > figure(tmp_path / "wrong.wav", clips["ava"])


def test_mp3_from_minimax_becomes_16_bit_pcm_wav(fake, clips, tmp_path):
    b = make(fake, audio_format="mp3", sample_rate=24000)
    vid = b.enroll(voice_clip(clips["ava"]), "df-1")
    b.synthesize(line(vid), tmp_path / "line.wav")
    channels, width, rate, seconds = read_wav(tmp_path / "line.wav")
    assert (channels, width, rate) == (1, 2, 24000) and abs(seconds - _voice.seconds_for(LINE)) < 0.1
    assert fake.minimax_tts[-1]["audio_setting"] == {"sample_rate": 24000, "format": "mp3", "channel": 1}
    assert b.identity() != make(fake).identity() and proto.KEY not in json.dumps(b.identity())


def test_an_emotion_minimax_does_not_take_is_refused_before_sending(fake, clips):
    b = make(fake)
    with pytest.raises(PermanentError, match="templates/acting/minimax-tts.j2"):
        b.synthesize(line("dramaforge-ava-0123456789ab", instructions="whisper"), Path("/nonexistent.wav"))
    assert fake.calls == [] and "whisper" not in EMOTIONS


# --- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fault, error, words", [
    ("429", TransientError, "429"), ("1002", TransientError, "1002"), ("500", TransientError, "500"),
    ("1026", RejectedError, "sensitive"), ("1008", PermanentError, "balance")])
def test_synthesis_errors_become_the_classes_the_flows_act_on(fake, clips, tmp_path, fault, error, words):
    b = make(fake)
    vid = b.enroll(voice_clip(clips["ava"]), "df-1")
    fake.faults.result = [fault]
    with pytest.raises(error, match=words) as caught:
        b.synthesize(line(vid), tmp_path / "line.wav")
    if fault == "429":
        assert caught.value.retry_after_s == 0.0  # the server's Retry-After: 0
    assert not (tmp_path / "line.wav").exists()


def test_a_bad_key_and_an_expired_voice_are_permanent_and_say_what_to_do(fake, clips, tmp_path, monkeypatch):
    monkeypatch.setenv(proto.KEY_ENV, "sk-api-wrong")
    for call in (lambda b: b.synthesize(line("dramaforge-ava-0123456789ab"), tmp_path / "x.wav"),
                 lambda b: b.enroll(voice_clip(clips["ava"]), "df-1")):
        with pytest.raises(PermanentError, match=proto.KEY_ENV) as caught:
            call(make(fake))
        assert "sk-api-wrong" not in str(caught.value)
    monkeypatch.delenv(proto.KEY_ENV)
    with pytest.raises(PermanentError, match=f"set \\${proto.KEY_ENV}"):
        make(fake).synthesize(line("dramaforge-ava-0123456789ab"), tmp_path / "x.wav")
    monkeypatch.setenv(proto.KEY_ENV, proto.KEY)
    with pytest.raises(PermanentError, match="7 days"):  # MiniMax deleted the voice (unused for a week)
        make(fake).synthesize(line("dramaforge-ava-0123456789ab"), tmp_path / "x.wav")


# --- ids, languages, record -------------------------------------------------------------------------

def test_voice_ids_follow_minimax_rules_whatever_the_character_is_called():
    for label in ("dramaforge-ava-0123456789ab", "dramaforge-林美-0123456789ab", "dramaforge-" + "x" * 400 + "-ab12"):
        vid = voice_id_for(label)
        assert proto.VOICE_ID.fullmatch(vid) and vid == voice_id_for(label)
    assert voice_id_for("dramaforge-林美-0123456789ab") != voice_id_for("dramaforge-ava-0123456789ab")
    assert voice_id_for("dramaforge-ava-0123456789ab", volume_normalization=True).endswith("-vn")
    assert [language_boost(x) for x in ("cmn", "yue", "zh-HK", "en-us", "fr", "bg", "")] == \
        ["Chinese", "Chinese,Yue", "Chinese,Yue", "English", "French", "auto", "auto"]


def test_the_record_and_the_account(fake):
    b = make(fake)
    caps = b.capabilities
    assert (caps.cloning, caps.enrolls, caps.acting, caps.bills, caps.clip_s) == (True, True, "emotion",
                                                                                   "characters", (10.0, 300.0))
    assert set(caps.emotions) <= proto.EMOTIONS and {"zh", "en", "ja", "yue"} <= set(caps.languages)
    assert "clone" not in b.account() and make(fake, noise_reduction=True).account()["clone"]["noise_reduction"]
    assert b.missing() == [] and b.lookup_complete
    mainland = backend_class("speech", "minimax-tts").Options(region="mainland")
    assert mainland.base_url == "https://api.minimaxi.com" and make(fake).options.base_url.endswith(proto.PREFIX)
