"""The ElevenLabs speech backend (through the `elevenlabs` SDK) against the fake service
(`fakes_tts/elevenlabs_speech.py`): a clip enrolled once as an Instant Voice Clone and reused; a lost
enrollment answer found by the clip's name and never sent twice (or left `unknown`); a voice that needs
verification refused; lines spoken in the clip's voice, with v3 audio tags where the model reads them;
and every provider failure as the class a flow acts on."""

from __future__ import annotations

import hashlib
import itertools
import json
import time
import wave
from pathlib import Path

import pytest

from fake_hosted import Faults, FakeHosted
from fakes_tts import _voice
from fakes_tts import elevenlabs_speech as proto
from stages.backends._jobs import ShotJobs, UnknownJob
from stages.backends._voices import VoiceClip
from stages.backends.base import PermanentError, RejectedError, SpeechRequest, TransientError
from stages.backends.elevenlabs_speech import ElevenLabsSpeech, Options
from stages.core.jobs import JobState, Journal
from stages.core.ledger import Ledger
from stages.core.voice_figure import figure
from stages.enroll_voice import enroll_voice
from stages.units import VoiceUnit

LINE = "We leave at dawn, and nobody looks back."
_names = itertools.count(1)


@pytest.fixture(scope="module")
def server():
    s = FakeHosted(b"", hang_s=0.4)
    with pytest.MonkeyPatch.context() as mp:
        for env, value in proto.ENV.items():
            mp.setenv(env, value)
        yield s
    s.close()


@pytest.fixture(autouse=True)
def _faults(server):
    server.faults = Faults()
    yield
    assert server.faults == Faults(), "a scripted fault was never played"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """About 6 s of eSpeak (the actor's reference clip)."""
    from stages.backends.espeak import EspeakBackend

    out = tmp_path_factory.mktemp("clip") / "ava.wav"
    EspeakBackend().synthesize(SpeechRequest(text="The harbour lights were out by the time we reached the pier, "
                                                  "and the boats knocked softly against the stones all night.",
                                             language="en-us", variant="f2", pitch=60, speed_wpm=150), out)
    return out


def make(server, **kw) -> ElevenLabsSpeech:
    return ElevenLabsSpeech(Options(**{**proto.options(server), **kw}))


def unit(clip: Path, tmp_path: Path) -> VoiceUnit:
    """A new character each time: the voice's name (`dramaforge-<character>-<sha12>`) is theirs alone."""
    who = f"ava{next(_names)}"
    sha = hashlib.sha256(clip.read_bytes()).hexdigest()
    vc = VoiceClip(who, "Ava", clip, "", sha, "en-us")
    return VoiceUnit(f"voice-{who}-elevenlabs", who, "elevenlabs", vc, sha[:16], tmp_path / "voices" / f"{who}.json")


def jobs(tmp_path: Path, u: VoiceUnit) -> ShotJobs:
    return ShotJobs(Journal(Ledger(tmp_path / "l.sqlite")), u.id, u.key, since=time.time())


def enrolls(server, u: VoiceUnit) -> int:
    return server.calls.count(("enroll", u.clip.label))


def line(voice_id: str, text: str = LINE, **kw) -> SpeechRequest:
    return SpeechRequest(text=text, language="en-us", variant=None, pitch=50, speed_wpm=160, voice_id=voice_id, **kw)


def speak(b: ElevenLabsSpeech, request: SpeechRequest, tmp_path: Path) -> Path:
    out = tmp_path / f"line{next(_names)}.wav"
    b.synthesize(request, out)
    return out


def last_tts(server) -> dict:
    return proto.spoken(server)[-1]


@pytest.fixture(scope="module")
def enrolled(server, clip, tmp_path_factory) -> str:
    """One voice enrolled through the stage, for the synthesis tests."""
    tmp = tmp_path_factory.mktemp("enrolled")
    u = unit(clip, tmp)
    return enroll_voice(u, make(server), jobs(tmp, u)).voice_id


# --- enrollment -------------------------------------------------------------------------------


def test_a_clip_is_enrolled_once_as_documented_and_its_voice_reused(server, clip, tmp_path):
    b, u = make(server), unit(clip, tmp_path)
    first = enroll_voice(u, b, jobs(tmp_path, u))
    assert not first.reused and enrolls(server, u) == 1
    v = proto.voices(server)[first.voice_id]
    assert v["name"] == u.clip.label and v["clip"] == clip.read_bytes() and v["mime"] == "audio/wav"
    assert v["labels"] == {"language": "en"} and u.character in v["description"]
    assert json.loads(u.path.read_text())["voice_id"] == first.voice_id
    assert jobs(tmp_path, u).latest().state == JobState.DONE
    again = enroll_voice(u, make(server), jobs(tmp_path, u))
    assert again.reused and again.voice_id == first.voice_id and enrolls(server, u) == 1


@pytest.mark.parametrize("fault", ["500-after", "drop-after", "html-after", "hang-after"])
def test_a_lost_enrollment_answer_is_found_by_its_name_and_never_sent_twice(server, clip, enrolled, tmp_path, fault):
    server.faults.submit.append(fault)
    # One voice a page: the loose search also matches the other tests' voices (all named dramaforge-...),
    # so the name is on a later page and the lookup must follow next_page_token and compare names exactly.
    server.elevenlabs_page = 1
    try:
        b, u = make(server, request_timeout_s=0.2), unit(clip, tmp_path)
        result = enroll_voice(u, b, jobs(tmp_path, u))
    finally:
        server.elevenlabs_page = 100
    assert enrolls(server, u) == 1
    assert proto.voices(server)[result.voice_id]["name"] == u.clip.label
    assert jobs(tmp_path, u).latest().state == JobState.DONE


def test_a_lost_answer_no_lookup_finds_stays_unknown_and_is_not_sent_again(server, clip, tmp_path):
    server.faults.submit.append("500")  # a 5xx may or may not have made the voice: here it made none
    b, u = make(server), unit(clip, tmp_path)
    with pytest.raises(UnknownJob, match="ElevenLabs"):
        enroll_voice(u, b, jobs(tmp_path, u))
    assert jobs(tmp_path, u).latest().state == JobState.UNKNOWN
    with pytest.raises(UnknownJob):  # the next run looks again; it does not pay again
        enroll_voice(u, make(server), jobs(tmp_path, u))
    assert enrolls(server, u) == 1 and not u.path.exists()


def test_a_key_that_cannot_list_voices_leaves_a_lost_enrollment_unknown(server, clip, tmp_path):
    server.faults.submit.append("500-after")
    server.faults.listing.append("403")
    b, u = make(server), unit(clip, tmp_path)
    with pytest.raises(UnknownJob, match="My Voices"):
        enroll_voice(u, b, jobs(tmp_path, u))
    assert jobs(tmp_path, u).latest().state == JobState.UNKNOWN and enrolls(server, u) == 1


def test_a_voice_that_needs_verification_is_refused_with_its_id(server, clip, tmp_path):
    u = unit(clip, tmp_path)
    server.elevenlabs_protected = {u.clip.label}
    with pytest.raises(PermanentError, match="needs verification"):
        enroll_voice(u, make(server), jobs(tmp_path, u))
    job = jobs(tmp_path, u).latest()
    assert job.state == JobState.FAILED and job.job_id in proto.voices(server) and not u.path.exists()


def test_enrollment_errors_are_classed_and_made_nothing(server, clip, tmp_path, monkeypatch):
    server.faults.submit.append("429")
    u = unit(clip, tmp_path)
    with pytest.raises(TransientError) as busy:
        enroll_voice(u, make(server), jobs(tmp_path, u))
    assert busy.value.retry_after_s == 1.0 and "too_many_concurrent_requests" in str(busy.value)
    assert jobs(tmp_path, u).latest().state == JobState.REFUSED
    monkeypatch.setenv(proto.KEY_ENV, "sk_wrong_key")
    with pytest.raises(PermanentError, match=proto.KEY_ENV) as bad:
        enroll_voice(u, make(server), jobs(tmp_path, u))
    assert "sk_wrong_key" not in str(bad.value)
    monkeypatch.delenv(proto.KEY_ENV)
    with pytest.raises(PermanentError, match=f"set \\${proto.KEY_ENV}"):
        enroll_voice(u, make(server), jobs(tmp_path, u))
    assert enrolls(server, u) == 1  # only the throttled try reached the fake's clone step


# --- synthesis --------------------------------------------------------------------------------


def _wav(path: Path) -> tuple[int, int, int, float]:
    with wave.open(str(path)) as w:
        return w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes() / w.getframerate()


def test_a_line_is_spoken_in_the_clip_voice_as_16_bit_pcm(server, clip, enrolled, tmp_path):
    b = make(server)
    assert b.capabilities.acting is None and "zh" in b.capabilities.languages
    out = speak(b, line(enrolled, instructions="[whispers]"), tmp_path)
    seen = last_tts(server)
    assert seen["voice_id"] == enrolled and seen["query"]["output_format"] == "pcm_24000"
    assert seen["body"] == {"text": LINE, "model_id": "eleven_multilingual_v2"}  # no tags, no language_code
    channels, width, rate, seconds = _wav(out)
    assert (channels, width, rate) == (1, 2, 24000)
    assert seconds == pytest.approx(_voice.seconds_for(LINE), abs=0.05)
    server.wrong_voices = {enrolled}
    try:
        wrong = speak(b, line(enrolled), tmp_path)
    finally:
        server.wrong_voices = set()
    assert figure(out, clip) > 0.8 > 0.5 > figure(wrong, clip)  # measured: 0.98 and 0.01


def test_v3_takes_the_acting_note_as_an_audio_tag_and_the_language(server, enrolled, tmp_path):
    from stages.core.prompts import render_template

    b = make(server, model="eleven_v3", output_format="mp3_44100_64", stability=0.5, seed=7)
    assert b.capabilities.acting == "tags" and b.identity()["model"] == "eleven_v3"
    tag = render_template("acting/elevenlabs.j2", None, character="Ava", notes="", parenthetical="低声",
                          extension="", language="zh", text=LINE)
    assert tag == "[whispers]"
    out = speak(b, line(enrolled, instructions=tag, speed=1.1), tmp_path)
    body = last_tts(server)["body"]
    assert body["text"] == f"[whispers] {LINE}" and body["language_code"] == "en" and body["seed"] == 7
    assert body["voice_settings"] == {"stability": 0.5, "speed": 1.1}
    channels, width, _, seconds = _wav(out)  # an mp3 answer, decoded
    assert (channels, width) == (1, 2) and seconds == pytest.approx(_voice.seconds_for(LINE), abs=0.1)


def test_synthesis_failures_are_classed(server, enrolled, tmp_path, monkeypatch):
    b = make(server)
    server.faults.result += ["429", "500", "drop"]
    with pytest.raises(TransientError) as busy:
        speak(b, line(enrolled), tmp_path)
    assert busy.value.retry_after_s == 1.0
    for _ in range(2):  # a 5xx and a dropped answer: a line is worth asking again
        with pytest.raises(TransientError):
            speak(b, line(enrolled), tmp_path)
    server.elevenlabs_flagged = {"contraband"}
    try:
        with pytest.raises(RejectedError, match="moderation"):
            speak(b, line(enrolled, "Hand over the contraband."), tmp_path)
    finally:
        server.elevenlabs_flagged = set()
    with pytest.raises(PermanentError, match="voice_not_found"):
        speak(b, line("nosuchvoice"), tmp_path)
    with pytest.raises(PermanentError, match="validation_error"):  # the provider's 422 (speed out of range)
        speak(b, line(enrolled, speed=2.5), tmp_path)
    monkeypatch.setenv(proto.KEY_ENV, "sk_wrong_key")
    with pytest.raises(PermanentError, match=proto.KEY_ENV):
        speak(make(server), line(enrolled), tmp_path)
