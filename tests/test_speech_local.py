"""The local Chatterbox backend (stages/backends/chatterbox_speech.py).

chatterbox-tts 0.1.7 cannot be installed beside dramaforge's pins (it pins torch==2.6.0, transformers==5.2.0,
diffusers==0.29.0 and numpy<2; we pin numpy==2.4.6 and torch 2.13), and its model is ~0.5 B parameters with
its weights downloaded from the hub, so most tests here put a stand-in `chatterbox` package in sys.modules:
it has the real API's shape (`from_local`, `prepare_conditionals` setting `model.conds`, `generate` speaking
from `model.conds`, `sr`) and speaks the clip's own sound (tests/fakes_tts/_voice.py), with seeded noise.
One test runs the real model where the package and a checkpoint are there (a GPU machine).
"""

from __future__ import annotations

import os
import pickle
import sys
import types
import wave
from pathlib import Path
from typing import ClassVar

import pytest
from fakes_tts import _voice

from stages.backends.base import PermanentError, SpeechBackend, SpeechRequest, TransientError
from stages.backends.chatterbox_speech import FILES, INTENSITIES, LANGUAGES, ChatterboxSpeech, Options
from stages.backends.espeak import EspeakBackend
from stages.backends.registry import backend_class, make_speech_backend
from stages.core.media import wav_validator
from stages.core.prompts import render_template

LINE = "Is it ready? Almost."
LONG_LINE = "Is it ready? Almost. Patience, we are nearly there, and then I am leaving for good."


# --- the stand-in package ---------------------------------------------------------------------------

class FakeChatterbox:
    """`chatterbox.tts.ChatterboxTTS` as far as the backend uses it; `log` records what it was asked."""

    sr = 24000
    files = FILES[False]
    log: ClassVar[list] = []
    fail: BaseException | None = None  # what the next `generate` raises

    def __init__(self, ckpt_dir: Path, device: str):
        self.ckpt_dir, self.device, self.conds = ckpt_dir, device, None

    @classmethod
    def from_local(cls, ckpt_dir, device):
        for name in cls.files:  # the real one's load_file would raise on a missing file
            (Path(ckpt_dir) / name).read_bytes()
        cls.log.append(("load", Path(ckpt_dir).name, device))
        return cls(Path(ckpt_dir), device)

    def prepare_conditionals(self, wav_fpath, exaggeration=0.5):
        data = Path(wav_fpath).read_bytes()
        if not data.startswith(b"RIFF"):
            raise ValueError("Format not recognised.")  # soundfile's complaint
        self.log.append(("prepare", Path(wav_fpath).name))
        self.conds = types.SimpleNamespace(clip=data, exaggeration=exaggeration)

    def _speak(self, text, exaggeration, cfg_weight, **extra):
        import torch

        assert self.conds is not None, "Please `prepare_conditionals` first or specify `audio_prompt_path`"
        self.log.append(("generate", text, exaggeration, cfg_weight, *extra.values()))
        if FakeChatterbox.fail is not None:
            exc, FakeChatterbox.fail = FakeChatterbox.fail, None
            raise exc
        samples = torch.from_numpy(_voice.cloned(self.conds.clip, text, self.sr))
        return (0.9 * samples + 0.01 * torch.randn(samples.shape)).unsqueeze(0)  # sampling: the seed decides

    def generate(self, text, repetition_penalty=1.2, min_p=0.05, top_p=1.0, audio_prompt_path=None,
                 exaggeration=0.5, cfg_weight=0.5, temperature=0.8):
        return self._speak(text, exaggeration, cfg_weight)


class FakeMultilingual(FakeChatterbox):
    files = FILES[True]

    def generate(self, text, language_id, audio_prompt_path=None, exaggeration=0.5, cfg_weight=0.5,
                 temperature=0.8, repetition_penalty=2.0, min_p=0.05, top_p=1.0):
        if language_id not in LANGUAGES:
            raise ValueError(f"Unsupported language_id '{language_id}'")
        return self._speak(text, exaggeration, cfg_weight, language=language_id)


@pytest.fixture
def chatterbox(monkeypatch):
    """The stand-in package, importable as chatterbox.tts / chatterbox.mtl_tts; its call log, emptied."""
    if "chatterbox" in sys.modules and not getattr(sys.modules["chatterbox"], "stand_in", False):
        pytest.skip("the real chatterbox package is loaded in this process")
    pkg, tts, mtl = (types.ModuleType(n) for n in ("chatterbox", "chatterbox.tts", "chatterbox.mtl_tts"))
    pkg.stand_in, tts.ChatterboxTTS, mtl.ChatterboxMultilingualTTS = True, FakeChatterbox, FakeMultilingual
    pkg.tts, pkg.mtl_tts = tts, mtl
    for name, module in (("chatterbox", pkg), ("chatterbox.tts", tts), ("chatterbox.mtl_tts", mtl)):
        monkeypatch.setitem(sys.modules, name, module)
    FakeChatterbox.log, FakeChatterbox.fail = [], None
    return FakeChatterbox.log


def checkpoint(folder: Path, multilingual: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES[multilingual]:
        (folder / name).write_bytes(name.encode() * 50)
    return folder


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Two speakers' reference clips (eSpeak: a high woman's voice and a low man's), about 5 s each."""
    folder = tmp_path_factory.mktemp("clips")
    said = "The last ferry left an hour ago, and nobody is waiting on the dock tonight, not even me."
    out = {}
    for who, variant, pitch in (("ava", "f2", 70), ("bo", "m3", 20)):
        out[who] = folder / f"{who}.wav"
        EspeakBackend().synthesize(SpeechRequest(text=said, language="en-us", variant=variant, pitch=pitch,
                                                 speed_wpm=150), out[who])
    return out


def backend(tmp_path: Path, **options) -> ChatterboxSpeech:
    multilingual = options.get("multilingual", False)
    model = options.pop("model", None) or str(checkpoint(tmp_path / ("mtl" if multilingual else "en"), multilingual))
    return ChatterboxSpeech(Options(model=model, device="cpu", **options))


def request(clip: Path | None, text: str = LINE, **kw) -> SpeechRequest:
    fields = {"text": text, "language": "en-us", "variant": None, "pitch": 50, "speed_wpm": 165,
              "reference": str(clip) if clip else None, "reference_text": "The last ferry left an hour ago."}
    return SpeechRequest(**(fields | kw))


def speak(b: ChatterboxSpeech, req: SpeechRequest, out: Path) -> tuple[int, float, bytes]:
    """Speak into `out`; the WAV checked as every speech backend's must be; (rate, seconds, frames)."""
    b.synthesize(req, out)
    wav_validator()(out)
    with wave.open(str(out), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getcomptype()) == (1, 2, "NONE")
        return w.getframerate(), w.getnframes() / w.getframerate(), w.readframes(w.getnframes())


# --- declared, and found by the registry ---------------------------------------------------------------

def test_registered_as_a_local_gpu_cloning_engine():
    assert backend_class("speech", "chatterbox") is ChatterboxSpeech
    b = make_speech_backend("chatterbox")  # no backends.chatterbox: its defaults
    assert isinstance(b, SpeechBackend) and b.options.model is None and b.options.device == "auto"
    caps = b.capabilities
    assert (caps.cloning, caps.enrolls, caps.billed, caps.pool, caps.concurrency) == (True, False, False, "gpu", 1)
    assert caps.extra == "chatterbox" and caps.requires == ("chatterbox",)
    assert caps.acting == "emotion" and set(caps.emotions) == set(INTENSITIES) == {"calm", "neutral", "expressive",
                                                                                  "intense"}
    assert caps.languages == ("en",)
    assert ChatterboxSpeech(Options(multilingual=True)).capabilities.languages == LANGUAGES
    assert "zh" in LANGUAGES and len(LANGUAGES) == 23


def test_identity_names_the_checkpoint_by_content_and_every_setting(tmp_path):
    a = backend(tmp_path).identity()
    assert a["engine"] == "chatterbox" and a["model"] == "en" and a["model_fingerprint"]
    assert a["intensities"]["expressive"] == [0.7, 0.3]
    assert "device" not in a
    assert backend(tmp_path, seed=7).identity()["seed"] == 7 != a["seed"]
    (tmp_path / "en" / "t3_cfg.safetensors").write_bytes(b"fine-tuned" * 99)
    assert backend(tmp_path, model=str(tmp_path / "en")).identity()["model_fingerprint"] != a["model_fingerprint"]


# --- what stops it, said plainly ---------------------------------------------------------------------

def test_missing_package_says_which_extra_to_install(tmp_path, monkeypatch, clips):
    for name in ("chatterbox", "chatterbox.tts", "chatterbox.mtl_tts"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as it does where it is not installed
    b = backend(tmp_path)
    with pytest.raises(PermanentError, match=r"pip install 'dramaforge\[chatterbox\]'.*GPU|GPU.*"
                                             r"pip install 'dramaforge\[chatterbox\]'") as first:
        b.synthesize(request(clips["ava"]), tmp_path / "out.wav")
    assert "--no-deps chatterbox-tts==0.1.7" in str(first.value)
    with pytest.raises(PermanentError) as again:  # a failed load fails every later line at once
        b.synthesize(request(clips["ava"]), tmp_path / "out.wav")
    assert again.value is first.value and b.loads == 0


@pytest.mark.parametrize("multilingual", [False, True])
def test_checkpoint_folder_problems_name_the_files_it_needs(tmp_path, chatterbox, clips, multilingual):
    files = FILES[multilingual]
    unset = ChatterboxSpeech(Options(multilingual=multilingual))
    [(problem, fix)] = unset.missing()
    assert "backends.chatterbox.model" in problem and all(f in problem for f in files)
    assert "hf download ResembleAI/chatterbox" in fix
    with pytest.raises(PermanentError, match="backends.chatterbox.model") as exc:
        unset.synthesize(request(clips["ava"], language="en"), tmp_path / "out.wav")
    assert all(f in str(exc.value) for f in files)

    absent = ChatterboxSpeech(Options(model=str(tmp_path / "nowhere"), multilingual=multilingual))
    assert "nowhere does not exist" in absent.missing()[0][0]
    with pytest.raises(PermanentError, match="nowhere does not exist"):
        absent.synthesize(request(clips["ava"], language="en"), tmp_path / "out.wav")

    partial = checkpoint(tmp_path / "partial", multilingual)
    (partial / files[2]).unlink()
    (partial / files[3]).unlink()
    b = ChatterboxSpeech(Options(model=str(partial), multilingual=multilingual))
    [(problem, _)] = b.missing()
    assert f"lacks {files[2]}, {files[3]}" in problem and all(f in problem for f in files)
    with pytest.raises(PermanentError, match=f"lacks {files[2]}, {files[3]}"):
        b.synthesize(request(clips["ava"], language="en"), tmp_path / "out.wav")
    assert not chatterbox  # nothing was loaded: the folder was refused first

    assert backend(tmp_path, multilingual=multilingual).missing() == []


def test_a_line_without_a_reference_clip_is_refused_before_loading(tmp_path, chatterbox):
    b = backend(tmp_path)
    with pytest.raises(PermanentError) as exc:
        b.synthesize(request(None), tmp_path / "out.wav")
    assert str(exc.value).startswith("chatterbox clones a voice: give the character voice.reference")
    assert b.loads == 0 and not chatterbox


def test_a_clip_it_cannot_read_names_the_clip(tmp_path, chatterbox, clips):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    b = backend(tmp_path)
    with pytest.raises(PermanentError, match=r"reference clip notes\.wav.*Format not recognised"):
        b.synthesize(request(bad), tmp_path / "out.wav")
    with pytest.raises(PermanentError, match="is not there"):
        b.synthesize(request(tmp_path / "gone.wav", reference_sha="0" * 64), tmp_path / "out.wav")
    speak(b, request(clips["ava"]), tmp_path / "ok.wav")  # the model itself is fine
    assert [c[0] for c in chatterbox] == ["load", "prepare", "generate"]


# --- speaking -----------------------------------------------------------------------------------------

def test_speaks_each_line_from_its_own_clip_loading_once(tmp_path, chatterbox, clips):
    b = backend(tmp_path)
    rate, short_s, ava1 = speak(b, request(clips["ava"]), tmp_path / "a1.wav")
    _, long_s, _ = speak(b, request(clips["ava"], LONG_LINE), tmp_path / "a2.wav")
    _, _, bo = speak(b, request(clips["bo"]), tmp_path / "b1.wav")
    _, _, ava2 = speak(b, request(clips["ava"]), tmp_path / "a3.wav")
    assert rate == 24000
    assert short_s == pytest.approx(_voice.seconds_for(LINE), abs=0.05)
    assert long_s == pytest.approx(_voice.seconds_for(LONG_LINE), abs=0.05) and long_s > 2 * short_s
    # One load, one conditioning per clip; Ava's third line is hers again, not Bo's left on the model.
    assert [c[:2] for c in chatterbox if c[0] != "generate"] == [("load", "en"), ("prepare", "ava.wav"),
                                                                 ("prepare", "bo.wav")]
    assert chatterbox[0] == ("load", "en", "cpu") and b.loads == 1
    assert ava2 == ava1 != bo  # the same seed and clip: the same take


def test_the_seed_decides_the_take(tmp_path, chatterbox, clips):
    _, _, one = speak(backend(tmp_path, seed=1), request(clips["ava"]), tmp_path / "s1.wav")
    _, _, two = speak(backend(tmp_path, seed=2), request(clips["ava"]), tmp_path / "s2.wav")
    assert one != two


@pytest.mark.parametrize("intensity", [None, *INTENSITIES])
def test_an_intensity_sets_exaggeration_and_cfg_weight(tmp_path, chatterbox, clips, intensity):
    speak(backend(tmp_path), request(clips["ava"], instructions=intensity), tmp_path / "out.wav")
    said = [c for c in chatterbox if c[0] == "generate"]
    assert said == [("generate", LINE, *INTENSITIES[intensity or "neutral"])]


def test_an_unknown_intensity_is_refused(tmp_path, chatterbox, clips):
    with pytest.raises(PermanentError, match="unknown intensity 'whispering'.*calm, neutral, expressive, intense"):
        backend(tmp_path).synthesize(request(clips["ava"], instructions="whispering"), tmp_path / "out.wav")


def test_speed_changes_the_length_not_the_voice(tmp_path, chatterbox, clips):
    b = backend(tmp_path)
    _, normal, _ = speak(b, request(clips["ava"], LONG_LINE), tmp_path / "n.wav")
    _, fast, _ = speak(b, request(clips["ava"], LONG_LINE, speed=2.0), tmp_path / "f.wav")
    _, slow, _ = speak(b, request(clips["ava"], LONG_LINE, speed=0.4), tmp_path / "s.wav")
    assert fast == pytest.approx(normal / 2, rel=0.05) and slow == pytest.approx(normal / 0.4, rel=0.05)
    assert not list(tmp_path.glob("*.part*"))


def test_languages_follow_the_checkpoint(tmp_path, chatterbox, clips):
    english = backend(tmp_path)
    with pytest.raises(PermanentError, match="cannot speak 'cmn'.*multilingual: true.*t3_mtl23ls_v2"):
        english.synthesize(request(clips["ava"], "你好，今天天气真不错。", language="cmn"), tmp_path / "zh.wav")
    with pytest.raises(PermanentError, match="cannot speak 'yue'"):
        english.synthesize(request(clips["ava"], language="yue"), tmp_path / "yue.wav")
    assert english.loads == 0

    multi = backend(tmp_path, multilingual=True)
    speak(multi, request(clips["ava"], "你好，今天天气真不错。", language="cmn"), tmp_path / "zh.wav")
    speak(multi, request(clips["bo"], LINE, language="en-gb"), tmp_path / "en.wav")
    assert [(c[0], c[1]) for c in chatterbox][:1] == [("load", "mtl")]
    assert [c[-1] for c in chatterbox if c[0] == "generate"] == ["zh", "en"]
    with pytest.raises(PermanentError, match="cannot speak 'yue'"):
        multi.synthesize(request(clips["ava"], language="yue"), tmp_path / "yue.wav")


def test_model_failures_map_to_the_flows_errors(tmp_path, chatterbox, clips):
    import torch

    b = backend(tmp_path)
    FakeChatterbox.fail = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    with pytest.raises(TransientError, match="out of memory"):
        b.synthesize(request(clips["ava"]), tmp_path / "out.wav")
    FakeChatterbox.fail = RuntimeError("shape mismatch")
    with pytest.raises(PermanentError, match="could not speak 'Is it ready.*shape mismatch"):
        b.synthesize(request(clips["ava"]), tmp_path / "out.wav")
    FakeChatterbox.fail = None
    speak(b, request(clips["ava"]), tmp_path / "out.wav")  # the next line speaks
    with pytest.raises(PermanentError, match="nothing to say"):
        b.synthesize(request(clips["ava"], "   "), tmp_path / "out.wav")


def test_a_worker_gets_the_settings_and_loads_its_own_model(tmp_path, chatterbox, clips):
    b = backend(tmp_path, seed=5)
    speak(b, request(clips["ava"]), tmp_path / "out.wav")
    copy = pickle.loads(pickle.dumps(b))
    assert copy.options == b.options and copy.loads == 0 and b.loads == 1


# --- acting notes -> intensity (templates/acting/chatterbox.j2) --------------------------------------

def acted(parenthetical: str = "", notes: str = "", extension: str = "") -> str:
    return render_template("acting/chatterbox.j2", None, character="Ava", notes=notes, parenthetical=parenthetical,
                           extension=extension, language="en", text=LINE)


@pytest.mark.parametrize(("said", "intensity"), [
    ("furiously", "intense"), ("screaming", "intense"), ("怒吼", "intense"), ("歇斯底里", "intense"),
    ("angrily", "expressive"), ("laughing", "expressive"), ("激动", "expressive"), ("哽咽", "expressive"),
    ("whispering", "calm"), ("softly", "calm"), ("低声", "calm"), ("面无表情", "calm"),
    ("to the waiter", ""), ("", ""),
])
def test_the_template_maps_notes_to_an_intensity(said, intensity):
    assert acted(said) == intensity
    assert intensity in ("", *INTENSITIES)


def test_the_line_outranks_the_voice_notes_and_voice_over_is_calm():
    assert acted("", notes="a weary, quiet voice") == "calm"
    assert acted("shouting", notes="a weary, quiet voice") == "intense"
    assert acted("", extension="V.O.") == "calm"
    assert acted("angrily", extension="V.O.") == "expressive"
    assert acted("", extension="O.S.") == ""


def test_a_project_line_reaches_the_model_with_its_intensity(tmp_path, chatterbox, clips):
    from stages.load_project import load_project
    from stages.synthesize_speech import speech_request

    model = checkpoint(tmp_path / "ckpt")
    (tmp_path / "script.fountain").write_text("Title: T\n\n# Episode 1: One\n\nINT. ROOM - DAY\n\nAVA\n(furious)\n"
                                              "Out.\n", encoding="utf-8")
    (tmp_path / "voices").mkdir()
    (tmp_path / "voices" / "ava.wav").write_bytes(clips["ava"].read_bytes())
    (tmp_path / "project.yaml").write_text(
        f"title: T\nlanguage: en\nscript: script.fountain\nbackends:\n  speech: chatterbox\n"
        f"  chatterbox: {{model: {model}, device: cpu}}\ncast:\n  - id: ava\n    name: AVA\n"
        f"    description: a woman\n    voice: {{reference: voices/ava.wav, reference_text: The last ferry.}}\n",
        encoding="utf-8")
    lp = load_project(tmp_path)
    b = make_speech_backend("chatterbox", lp.project.backends)
    assert b.options.model == str(model)
    req = speech_request("Out, now.", "ava", lp.project, lp.root, parenthetical="(furious)", backend=b)
    assert req.instructions == "intense" and req.reference == str((tmp_path / "voices" / "ava.wav").resolve())
    speak(b, req, tmp_path / "line.wav")
    assert [c for c in chatterbox if c[0] == "generate"] == [("generate", "Out, now.", *INTENSITIES["intense"])]


# --- the real model (a GPU machine with the package and a checkpoint) --------------------------------

def test_the_real_model_speaks_a_line_in_the_clip_voice(tmp_path, clips):
    pytest.importorskip("chatterbox", reason="chatterbox-tts is not installed: it pins torch==2.6.0, "
                                             "transformers==5.2.0, diffusers==0.29.0 and numpy<2, which clash "
                                             "with dramaforge's pins; install it on a GPU machine with "
                                             "pip install 'dramaforge[chatterbox]' and pip install --no-deps "
                                             "chatterbox-tts==0.1.7")
    if getattr(sys.modules["chatterbox"], "stand_in", False):
        pytest.skip("the stand-in package is loaded")
    folder = os.environ.get("DRAMAFORGE_TEST_CHATTERBOX_MODEL")
    if not folder:
        pytest.skip("set DRAMAFORGE_TEST_CHATTERBOX_MODEL to a Chatterbox checkpoint folder (hf download "
                    "ResembleAI/chatterbox --local-dir <folder>)")
    b = ChatterboxSpeech(Options(model=folder))
    rate, seconds, _ = speak(b, request(clips["ava"], LONG_LINE, instructions="expressive"), tmp_path / "real.wav")
    assert rate == 24000 and 2.0 < seconds < 20.0
