"""The speaker-similarity figure (stages/core/voice_figure.py) on real speech: eSpeak NG voices of
known speakers stand in for actors. Measured on this machine (mean of three lines each, reference
read by the row's voice; f2 and f4 female, m1 and m3 male):

    reference \\ line   f2@70  m3@30  m1@50  f4@60  f2@50
    f2@70               0.94   0.01   0.22   0.59   0.63
    m3@30               0.00   0.88   0.83   0.01   0.01
    m1@50               0.00   0.76   0.93   0.02   0.03

The same voice scores 0.88-0.94 on average (one line of m3 alone: 0.70); a voice of the other sex 0.00-0.22; two similar male voices
0.76-0.83 (the figure is rough: it cannot tell close voices apart). The fake providers' cloned
voice (pieces of the clip itself) scores 0.97-0.99."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from stages.backends.base import SpeechRequest
from stages.backends.espeak import EspeakBackend
from stages.core.voice_figure import figure, similarity, voiceprint_of

sys.path.insert(0, str(Path(__file__).parent))
from fakes_tts import _voice  # noqa: E402

REFERENCE = "I kept every letter you wrote me, and I read them all again last night, every single one."
LINES = ("Where were you when the lights went out?", "Leave the money on the table and go.")


def _say(path: Path, text: str, variant: str, pitch: int) -> Path:
    EspeakBackend().synthesize(SpeechRequest(text=text, language="en-us", variant=variant, pitch=pitch,
                                             speed_wpm=165), path)
    return path


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    d = tmp_path_factory.mktemp("voices")
    refs = {v: _say(d / f"ref-{v}.wav", REFERENCE, v, p) for v, p in (("f2", 70), ("m3", 30))}
    lines = {v: [_say(d / f"{v}-{i}.wav", t, v, p) for i, t in enumerate(LINES)] for v, p in (("f2", 70), ("m3", 30))}
    return refs, lines


def test_a_line_in_its_own_voice_scores_high_and_in_another_low(voices):
    refs, lines = voices
    for own, other in (("f2", "m3"), ("m3", "f2")):
        right = [figure(p, refs[own]) for p in lines[own]]
        wrong = [figure(p, refs[own]) for p in lines[other]]
        assert min(right) >= 0.6 and max(wrong) <= 0.2 and min(right) - max(wrong) >= 0.5, (own, right, wrong)


def test_the_fake_providers_cloned_voice_reads_as_the_reference_and_their_wrong_voice_does_not(voices, tmp_path):
    refs, _ = voices
    for v in ("f2", "m3"):
        clone = tmp_path / f"clone-{v}.wav"
        clone.write_bytes(_voice.wav_bytes(_voice.cloned(refs[v].read_bytes(), LINES[0])))
        assert figure(clone, refs[v]) >= 0.9
    wrong = tmp_path / "wrong.wav"
    wrong.write_bytes(_voice.wav_bytes(_voice.wrong(LINES[0])))
    assert figure(wrong, refs["f2"]) <= 0.2


def test_too_little_speech_gives_no_figure_rather_than_a_number():
    import numpy as np

    silence = voiceprint_of(np.zeros(16000))
    short = voiceprint_of(np.random.default_rng(0).normal(0, 0.1, 800))
    speech = voiceprint_of(np.sin(np.arange(32000) * 2 * np.pi * 150 / 16000) * 0.3)
    assert silence.mean == () and short.mean == ()
    assert similarity(silence, speech) is None and similarity(speech, speech) == 1.0
