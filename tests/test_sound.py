"""Music under dialogue (looped, faded, ducked), sound effects, the V.O. treatment and text cards,
measured on real renders and real ffmpeg decodes."""

from __future__ import annotations

import re
import wave

import numpy as np
import pytest

from conftest import TINY_SCRIPT, TINY_YAML, run_cli
from stages.core.loudness import measure_ebur128
from stages.core.media import decode_audio
from stages.mix_audio import SAMPLE_RATE, Dialogue, MusicSpan, duck_envelope, mix_audio
from stages.schema import Music

TONE_HZ = 14_000  # above anything eSpeak makes (22.05 kHz output: nothing over 11 kHz)


def _tone(path, seconds: float, hz: float = TONE_HZ, amp: float = 0.3, rate: int = 44_100) -> None:
    t = np.arange(int(seconds * rate)) / rate
    x = (amp * np.sin(2 * np.pi * hz * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(x.tobytes())


def _db(x) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.square(x))) + 1e-12)


def _srt_cues(path):
    out = []
    for m in re.finditer(r"(\d+):(\d+):(\d+),(\d+) --> (\d+):(\d+):(\d+),(\d+)", path.read_text(encoding="utf-8")):
        g = list(map(int, m.groups()))
        out.append((g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000, g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000))
    return out


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """The tiny project with a short music loop under everything, a door effect and a text card."""
    root = tmp_path_factory.mktemp("music") / "tiny"
    root.mkdir()
    _tone(root / "theme.wav", 1.7)  # shorter than the episode: it must loop
    _tone(root / "door.wav", 0.3, hz=440, amp=0.5)
    yaml_text = TINY_YAML + ("audio:\n  music: {file: theme.wav, duck_db: 12, level_lufs: -26, fade_s: 0.5}\n"
                             "width: 270\nheight: 480\n")  # the sound is under test: small frames
    script = TINY_SCRIPT.replace("Steam rises from a kettle.\n",
                                 "Steam rises from a kettle.\n\n[[sfx: door.wav]]\n\n>THE NEXT MORNING<\n")
    (root / "project.yaml").write_text(yaml_text, encoding="utf-8")
    (root / "script.fountain").write_text(script, encoding="utf-8")
    proc = run_cli("render", str(root))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


def test_music_drops_by_the_configured_amount_under_dialogue(scored):
    mp4 = scored / "build" / "episodes" / "ep01.mp4"
    cues = _srt_cues(scored / "build" / "episodes" / "ep01.srt")
    music = decode_audio(mp4, filters="highpass=f=12000,highpass=f=12000,highpass=f=12000").mean(axis=1)
    total = len(music) / SAMPLE_RATE
    ms = Music(duck_db=12)
    during, free = [], []
    for a, b in cues:  # inside each line, after the attack: fully ducked
        during.append(music[int((a + 0.05) * SAMPLE_RATE): int((b - 0.05) * SAMPLE_RATE)])
    edges = [0.5 + 0.1] + [x for a, b in cues for x in (a - ms.attack_s - 0.1, b + ms.release_s + 0.1)] + [total - 0.6]
    for lo, hi in zip(edges[::2], edges[1::2]):  # between lines, clear of attack/release and the fades
        if hi - lo > 0.3:
            free.append(music[int(lo * SAMPLE_RATE): int(hi * SAMPLE_RATE)])
    assert during and free, (cues, edges)
    drop = _db(np.concatenate(free)) - _db(np.concatenate(during))
    assert abs(drop - 12) <= 1.5, f"music dropped {drop:.1f} dB under dialogue, configured 12"


def test_scored_episode_meets_the_loudness_target(scored):
    loud = measure_ebur128(scored / "build" / "episodes" / "ep01.mp4")
    assert abs(loud.integrated_lufs - -14.0) <= 1.0 and loud.true_peak_dbtp <= -1.0, loud


def test_effect_plays_with_its_shot_and_the_card_is_burned_not_spoken(scored):
    import yaml

    plan = yaml.safe_load((scored / "build" / "shotlists" / "ep01.yaml").read_text(encoding="utf-8"))
    shots = plan["shots"]
    with_sfx = [i for i, s in enumerate(shots) if s.get("sfx")]
    carded = [s for s in shots if s.get("card")]
    assert len(with_sfx) == 1 and shots[with_sfx[0]]["sfx"] == ["door.wav"]
    assert [s["card"] for s in carded] == ["THE NEXT MORNING"] and not carded[0]["lines"]
    srt = (scored / "build" / "episodes" / "ep01.srt").read_text(encoding="utf-8")
    assert "MORNING" not in srt  # on-screen text, not a subtitle
    ass = (scored / "build" / "work" / "ep01.ass").read_text(encoding="utf-8")
    assert re.search(r"^Dialogue:.*,Card,.*THE NEXT MORNING", ass, re.M)
    start = 1.5 + sum(s["duration_s"] for s in shots[: with_sfx[0]])  # after the opening card
    low = decode_audio(scored / "build" / "episodes" / "ep01.mp4", filters="lowpass=f=600,lowpass=f=600").mean(axis=1)
    at = int(start * SAMPLE_RATE)
    before = low[max(0, at - int(0.35 * SAMPLE_RATE)): at - int(0.05 * SAMPLE_RATE)]
    assert _db(low[at: at + int(0.25 * SAMPLE_RATE)]) > _db(before) + 10, "no door effect at its shot"


def test_music_loops_trims_and_fades(tmp_path):
    _tone(tmp_path / "m.wav", 0.4, hz=1000)
    out = tmp_path / "mix.wav"
    opts = Music(fade_s=0.2, level_lufs=-20)
    mix_audio([], 2.0, out, music=[MusicSpan(0.5, 1.7, tmp_path / "m.wav")], options=opts)
    x = decode_audio(out).mean(axis=1)
    assert len(x) == 2 * SAMPLE_RATE
    seg = lambda a, b: x[int(a * SAMPLE_RATE): int(b * SAMPLE_RATE)]  # noqa: E731
    assert _db(seg(0, 0.49)) < -80 and _db(seg(1.71, 2.0)) < -80  # nothing outside the span
    assert _db(seg(0.9, 1.3)) > -30  # the 0.4 s loop keeps playing through the 1.2 s span
    assert _db(seg(0.5, 0.55)) < _db(seg(0.9, 1.3)) - 6  # faded in
    assert _db(seg(1.65, 1.7)) < _db(seg(0.9, 1.3)) - 6  # faded out


def test_a_music_file_is_metered_and_decoded_once_by_its_content_not_once_per_mix(tmp_path, monkeypatch):
    import stages.core.loudness as loudness
    import stages.mix_audio as mix
    from stages.mix_audio import _music_source

    metered, decoded = [], []
    real, real_decode = loudness.measure_ebur128, mix.decode_audio
    monkeypatch.setattr(loudness, "measure_ebur128", lambda path: metered.append(path) or real(path))
    monkeypatch.setattr(mix, "decode_audio", lambda path, **kw: decoded.append(path) or real_decode(path, **kw))
    music, meters, opts = tmp_path / "m.wav", tmp_path / "meters", Music(fade_s=0.2, level_lufs=-20)
    _tone(music, 0.4, hz=1000)
    outs = []
    for n in range(2):  # two renders: the meter's figure and the decoded samples are kept
        _music_source.cache_clear()
        outs.append(tmp_path / f"mix{n}.wav")
        mix_audio([], 2.0, outs[-1], music=[MusicSpan(0.5, 1.7, music)], options=opts, meters=meters)
    assert len(metered) == 1 and len(decoded) == 1 and outs[0].read_bytes() == outs[1].read_bytes()
    _tone(music, 0.5, hz=500, amp=0.1)  # another track under the same name: metered and decoded anew
    _music_source.cache_clear()
    mix_audio([], 2.0, tmp_path / "mix2.wav", music=[MusicSpan(0.5, 1.7, music)], options=opts, meters=meters)
    assert len(metered) == 2 and len(list(meters.glob("*.json"))) == 2
    assert len(decoded) == 2 and len(list(meters.glob("*.npy"))) == 2
    for kept in meters.glob("*.npy"):  # a damaged copy is decoded again, not trusted
        kept.write_bytes(kept.read_bytes()[:100])
    _music_source.cache_clear()
    mix_audio([], 2.0, tmp_path / "mix3.wav", music=[MusicSpan(0.5, 1.7, music)], options=opts, meters=meters)
    assert len(decoded) == 3 and (tmp_path / "mix3.wav").read_bytes() == (tmp_path / "mix2.wav").read_bytes()


def test_duck_envelope_shape():
    opts = Music(duck_db=20, attack_s=0.1, release_s=0.2)
    g = duck_envelope(SAMPLE_RATE * 2, [(SAMPLE_RATE // 2, SAMPLE_RATE)], opts)
    assert g[0] == 1 and g[-1] == 1
    assert np.allclose(g[SAMPLE_RATE // 2: SAMPLE_RATE], 0.1)
    ramp = g[SAMPLE_RATE // 2 - int(0.1 * SAMPLE_RATE): SAMPLE_RATE // 2]
    assert np.all(np.diff(ramp) <= 0) and ramp[0] == 1  # falls through the attack
    back = g[SAMPLE_RATE: SAMPLE_RATE + int(0.2 * SAMPLE_RATE)]
    assert np.all(np.diff(back) >= 0) and abs(back[-1] - 1) < 1e-3  # recovers through the release


def test_voice_over_treatment_band_limits_the_line(tmp_path):
    from stages.backends.base import SpeechRequest
    from stages.backends.espeak import EspeakBackend

    EspeakBackend().synthesize(SpeechRequest("This is the voice of the harbour at night.", "en-us", None, 50, 165),
                               tmp_path / "line.wav")
    plain, phone = tmp_path / "plain.wav", tmp_path / "phone.wav"
    mix_audio([Dialogue(0.2, tmp_path / "line.wav")], 3.5, plain)
    mix_audio([Dialogue(0.2, tmp_path / "line.wav", "phone")], 3.5, phone)

    def band(path, f):
        return _db(decode_audio(path, filters=f).mean(axis=1))

    highs = "highpass=f=6000,highpass=f=6000"  # well above the 3.4 kHz phone band (at 5 kHz the gap was 15.1 dB)
    lows = "lowpass=f=250,lowpass=f=250"
    assert band(phone, highs) < band(plain, highs) - 15  # above the phone band: gone
    assert band(phone, lows) < band(plain, lows) - 6  # below it: thinned
    assert abs(_db(decode_audio(phone)) - _db(decode_audio(plain))) < 10  # still clearly audible


def test_missing_music_file_is_refused_before_rendering(tiny_project):
    script = tiny_project / "script.fountain"
    script.write_text(TINY_SCRIPT.replace("Steam rises", "[[music: cues/tense.mp3]]\n\nSteam rises"),
                      encoding="utf-8")
    proc = run_cli("render", str(tiny_project))
    assert proc.returncode == 2
    assert "cues/tense.mp3" in proc.stderr and "script.fountain:" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tiny_project / "build" / "shots").exists() or not any((tiny_project / "build" / "shots").glob("*.mp4"))
    check = run_cli("check", str(tiny_project))
    assert check.returncode == 2 and "cues/tense.mp3" in check.stdout + check.stderr
