"""Chatterbox (Resemble AI): a local voice-cloning model on a GPU, zero-shot from each character's clip.

No account, no enrollment: the clip itself is the voice. The model loads once per worker from a local
checkpoint folder; each clip is turned into the model's conditioning once (cached by its content) and
every line of that character is spoken from it. Acting notes become one of a few named intensities
(templates/acting/chatterbox.j2), each a pair of Chatterbox's two acting knobs.

Installing: chatterbox-tts 0.1.7 pins torch==2.6.0, torchaudio==2.6.0, transformers==5.2.0,
diffusers==0.29.0, safetensors==0.5.3 and numpy<2 (on Python < 3.13), none of which dramaforge's
pins (numpy==2.4.6; the diffusers extra's torch 2.13) allow; `pip install 'dramaforge[chatterbox]'`
brings its other dependencies, then `pip install --no-deps chatterbox-tts==0.1.7` on the GPU machine.

Fields, from chatterbox-tts 0.1.7's own code (the PyPI wheel, src/chatterbox/tts.py, mtl_tts.py) and README:
- CONFIRMED `ChatterboxTTS.from_local(ckpt_dir, device)` reads ve.safetensors, t3_cfg.safetensors,
  s3gen.safetensors, tokenizer.json (conds.pt, a built-in voice, when present); downloads nothing.
- CONFIRMED `ChatterboxMultilingualTTS.from_local(ckpt_dir, device)` reads ve.pt, t3_mtl23ls_v2.safetensors,
  s3gen.pt, grapheme_mtl_merged_expanded_v1.json; its `generate(text, language_id, ...)` takes the 23
  languages of `SUPPORTED_LANGUAGES`. Chinese also needs Cangjie5_TC.json, which its tokenizer fetches
  from the hub (`hf_hub_download(..., cache_dir=<the folder>)`) on first load: once, with the network on.
- CONFIRMED `prepare_conditionals(wav_fpath, exaggeration=0.5)` sets `model.conds` from the clip (librosa
  reads WAV/MP3/FLAC; the first 10 s condition the decoder, the first 6 s the speech prompt); `generate(text,
  exaggeration=0.5, cfg_weight=0.5, temperature=0.8, ...)` then speaks from `model.conds` and returns a float
  tensor (1, N) at `model.sr` (24000), always watermarked (Perth; its weights ship inside resemble-perth).
- CONFIRMED the acting knobs (README, "Original Chatterbox Tips"): defaults exaggeration 0.5 / cfg_weight 0.5;
  for expressive or dramatic speech lower cfg_weight to ~0.3 and raise exaggeration to ~0.7 or higher
  (higher exaggeration speeds speech up; the lower cfg_weight slows it back). The demo app's slider labels
  exaggeration "Neutral = 0.5, extreme values can be unstable". The four intensities below are ours.
- CONFIRMED a line is at most 1000 speech tokens at 25 a second (`max_new_tokens=1000`, S3_TOKEN_RATE): ~40 s.
- NOT CONFIRMED: the clip lengths (`clip_s`): the README's example is a 10 s clip and only the first 10 s
  are used; 5 s as the shortest is our choice. `reference_text` is not used (Chatterbox needs no transcript).
"""

from __future__ import annotations

import threading
import wave
from dataclasses import replace
from pathlib import Path

from pydantic import Field

from stages.backends._diffusers import LoadOnce, model_fingerprint, package_version
from stages.backends.base import PermanentError, SpeechCapabilities, SpeechRequest, TransientError
from stages.core.model import Model

INSTALL = ("the chatterbox backend needs Chatterbox on a GPU machine: pip install 'dramaforge[chatterbox]', then "
           "pip install --no-deps chatterbox-tts==0.1.7 (its own torch==2.6.0 and numpy<2 pins clash with ours)")
NO_REFERENCE = "chatterbox clones a voice: give the character voice.reference (a 10 s clip of clean speech)"
FILES = {False: ("ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json"),
         True: ("ve.pt", "t3_mtl23ls_v2.safetensors", "s3gen.pt", "grapheme_mtl_merged_expanded_v1.json")}
# The multilingual model's `SUPPORTED_LANGUAGES` (mtl_tts.py); the English model speaks English only.
LANGUAGES = ("ar", "da", "de", "el", "en", "es", "fi", "fr", "he", "hi", "it", "ja", "ko", "ms", "nl", "no", "pl",
             "pt", "ru", "sv", "sw", "tr", "zh")
# What templates/acting/chatterbox.j2 may say -> (exaggeration, cfg_weight). Nothing said: "neutral".
INTENSITIES = {
    "calm": (0.35, 0.5),  # flatter than the default, the default's pace
    "neutral": (0.5, 0.5),  # the documented defaults
    "expressive": (0.7, 0.3),  # the README's "expressive or dramatic" setting
    "intense": (0.9, 0.3),  # shouting, sobbing: as far as it goes before it gets unstable
}
_CONDS_KEPT = 64  # clips whose conditioning stays in memory (a few hundred KB each)


class Options(Model):
    """`backends.chatterbox`: the local Chatterbox checkpoint folder and device."""

    model: str | None = Field(None, description="local folder holding the checkpoint: ve.safetensors, "
                                                "t3_cfg.safetensors, s3gen.safetensors and tokenizer.json (hf "
                                                "download ResembleAI/chatterbox --local-dir <folder>)")
    multilingual: bool = Field(False, description="the 23-language model (its folder holds ve.pt, "
                                                  "t3_mtl23ls_v2.safetensors, s3gen.pt and "
                                                  "grapheme_mtl_merged_expanded_v1.json)")
    device: str = Field("auto", description="auto (cuda, else mps, else cpu), cuda, cuda:1, mps or cpu")
    seed: int = Field(0, ge=0, description="sampling seed, set before each line: a line re-spoken sounds the same")


class ChatterboxSpeech:
    """SpeechBackend: Chatterbox on the local GPU, in the voice of each character's reference clip."""

    name = "chatterbox"
    section = "chatterbox"
    Options = Options
    capabilities = SpeechCapabilities(cloning=True, acting="emotion", emotions=tuple(INTENSITIES), languages=("en",),
                                      clip_s=(5.0, 60.0), pool="gpu", concurrency=1, extra="chatterbox",
                                      requires=("chatterbox",),
                                      install="pip install 'dramaforge[chatterbox]' && pip install --no-deps "
                                              "chatterbox-tts==0.1.7 (on a GPU machine)")

    def __init__(self, options: Options):
        self.options = options
        if options.multilingual:
            self.capabilities = replace(self.capabilities, languages=LANGUAGES)
        self._model = LoadOnce(self._load)
        self._lock = threading.Lock()  # one line at a time: `model.conds` is the model's own state
        self._conds: dict[str, object] = {}  # clip sha256 -> its Conditionals

    def __getstate__(self) -> dict:  # a worker loads its own model
        return {"options": self.options}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["options"])

    @property
    def loads(self) -> int:
        return self._model.loads

    def identity(self) -> dict:
        o = self.options
        return {"engine": "chatterbox", "version": package_version("chatterbox-tts"),
                "model": Path(o.model).expanduser().name if o.model else None,
                "model_fingerprint": model_fingerprint(o.model) if o.model else None,
                "multilingual": o.multilingual, "seed": o.seed,
                "intensities": {k: list(v) for k, v in INTENSITIES.items()}}

    def missing(self, *, keys: bool = True) -> list[tuple[str, str]]:
        """What stops the model loading, said before a render (`check`): the checkpoint folder."""
        problem = checkpoint_problem(self.options)
        return [problem] if problem else []

    def synthesize(self, request: SpeechRequest, out_wav: Path) -> None:
        if not request.reference:
            raise PermanentError(NO_REFERENCE)
        if not request.text.strip():
            raise PermanentError("chatterbox: nothing to say (the line is empty)")
        if request.instructions and request.instructions not in INTENSITIES:
            raise PermanentError(f"chatterbox: unknown intensity {request.instructions!r} (from "
                                 f"templates/acting/chatterbox.j2); it takes one of {', '.join(INTENSITIES)}")
        exaggeration, cfg_weight = INTENSITIES[request.instructions or "neutral"]
        language = self._language(request.language)
        clip = Path(request.reference)
        model = self._model()
        import torch

        with self._lock:
            model.conds = self._conditioning(model, clip, request.reference_sha)
            torch.manual_seed(self.options.seed)
            kwargs = {"exaggeration": exaggeration, "cfg_weight": cfg_weight}
            if self.options.multilingual:
                kwargs["language_id"] = language
            try:
                wav = model.generate(request.text, **kwargs)
            except torch.cuda.OutOfMemoryError as exc:
                torch.cuda.empty_cache()
                raise TransientError(f"chatterbox: the GPU ran out of memory speaking {request.text[:40]!r} (is "
                                     f"another model on it?)") from exc
            except (RuntimeError, ValueError, AssertionError, KeyError, IndexError) as exc:
                raise PermanentError(f"chatterbox could not speak {request.text[:40]!r}: "
                                     f"{type(exc).__name__}: {str(exc)[:400]}") from exc
        write_wav(wav, int(model.sr), out_wav)
        if request.speed != 1.0:
            change_tempo(out_wav, request.speed)

    def _language(self, language: str) -> str:
        """The request's language as the model names it (ISO 639-1); PermanentError for one it cannot speak."""
        code = iso_language(language)
        if code not in self.capabilities.languages:
            if not self.options.multilingual and code in LANGUAGES:
                raise PermanentError(f"the English Chatterbox model cannot speak {language!r}: set "
                                     f"backends.chatterbox.multilingual: true with the multilingual checkpoint "
                                     f"({', '.join(FILES[True])})")
            raise PermanentError(f"Chatterbox cannot speak {language!r}; it speaks "
                                 f"{', '.join(self.capabilities.languages)}")
        return code

    def _conditioning(self, model, clip: Path, sha: str | None):
        """The clip's Conditionals, made once per clip content (under the lock: it sets `model.conds`)."""
        if sha is None:
            from stages.core.artifacts import file_digest

            try:
                sha = file_digest(clip)
            except OSError as exc:
                raise PermanentError(f"chatterbox: the reference clip {clip} cannot be read: "
                                     f"{exc.strerror or exc}") from exc
        if sha not in self._conds:
            if not clip.is_file():
                raise PermanentError(f"chatterbox: the reference clip {clip} is not there")
            try:
                model.prepare_conditionals(str(clip), exaggeration=INTENSITIES["neutral"][0])
            except Exception as exc:  # librosa's, soundfile's and audioread's errors share no base class
                raise PermanentError(f"chatterbox could not use the reference clip {clip.name}: "
                                     f"{type(exc).__name__}: {str(exc)[:300]}") from exc
            if len(self._conds) >= _CONDS_KEPT:
                self._conds.pop(next(iter(self._conds)))
            self._conds[sha] = model.conds
        return self._conds[sha]

    def _load(self):
        o = self.options
        problem = checkpoint_problem(o)
        if problem:
            raise PermanentError(f"{problem[0]}: {problem[1]}")
        try:
            if o.multilingual:
                from chatterbox.mtl_tts import ChatterboxMultilingualTTS as Model_
            else:
                from chatterbox.tts import ChatterboxTTS as Model_
            import torch
        except ImportError as exc:
            raise PermanentError(f"{INSTALL} ({exc})") from exc
        device = o.device
        if device == "auto":
            mps = getattr(torch.backends, "mps", None)
            device = "cuda" if torch.cuda.is_available() else "mps" if mps and mps.is_available() else "cpu"
        try:
            return Model_.from_local(Path(o.model).expanduser(), device)
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            raise TransientError(f"chatterbox: out of GPU memory loading the model on {device} (is another model "
                                 f"on it?)") from exc
        except (OSError, RuntimeError, ValueError, KeyError, AssertionError) as exc:
            raise PermanentError(f"chatterbox: loading {o.model} failed: {type(exc).__name__}: "
                                 f"{str(exc)[:600]}") from exc


def checkpoint_problem(options: Options) -> tuple[str, str] | None:
    """(problem, fix) when the checkpoint folder is unset, absent or lacks a file the model reads; None if fine."""
    files = FILES[options.multilingual]
    which = "multilingual " if options.multilingual else ""
    fix = (f"download the {which}checkpoint (hf download ResembleAI/chatterbox {' '.join(files)} --local-dir "
           f"models/chatterbox) and set backends.chatterbox.model to that folder")
    if not options.model:
        return f"chatterbox needs a local checkpoint folder (backends.chatterbox.model) holding {', '.join(files)}", fix
    folder = Path(options.model).expanduser()
    if not folder.is_dir():
        return f"the chatterbox checkpoint folder {folder} does not exist", fix
    lacking = [f for f in files if not (folder / f).is_file()]
    if lacking:
        return (f"the chatterbox checkpoint folder {folder} lacks {', '.join(lacking)} (a {which}Chatterbox "
                f"checkpoint holds {', '.join(files)})"), fix
    return None


def iso_language(language: str | None) -> str:
    """`en-us`, `cmn`, `zh-CN`, `pt-BR` -> `en`, `zh`, `zh`, `pt` (eSpeak names and BCP 47 tags to ISO 639-1)."""
    code = (language or "").lower().replace("_", "-").split("-")[0]
    return {"cmn": "zh", "nb": "no", "iw": "he", "zlm": "ms"}.get(code, code)


def write_wav(wav, rate: int, out_wav: Path) -> None:
    """The model's float samples (a tensor or array, any leading axes of one) as a mono 16-bit PCM WAV."""
    import numpy as np

    if hasattr(wav, "detach"):
        wav = wav.detach().float().cpu().numpy()
    samples = np.asarray(wav, dtype=np.float32).reshape(-1)
    if samples.size == 0 or not np.isfinite(samples).all():
        raise PermanentError("chatterbox made no usable audio for this line (empty or not a number)")
    with wave.open(str(out_wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes())


def change_tempo(wav: Path, speed: float) -> None:
    """Speak `wav` `speed` times as fast, pitch kept (ffmpeg atempo; Chatterbox has no rate of its own)."""
    import os

    from stages.core.artifacts import partial_file
    from stages.core.errors import RenderError
    from stages.core.media import run_ffmpeg

    steps, left = [], speed
    while left < 0.5 or left > 2.0:  # one atempo step stays within 0.5-2 (older ffmpeg's range)
        step = 0.5 if left < 0.5 else 2.0
        steps.append(step)
        left /= step
    steps.append(left)
    fd, tmp = partial_file(wav.parent, wav.stem, ".wav", tag="tempo")
    os.close(fd)
    try:
        run_ffmpeg(["-i", str(wav), "-filter:a", ",".join(f"atempo={s:.6g}" for s in steps), "-c:a", "pcm_s16le",
                    str(tmp)], what="changing the speech's speed")
        os.replace(tmp, wav)
    except RenderError as exc:
        raise PermanentError(f"chatterbox: changing the speed to {speed:g} failed: {exc.message}") from exc
    finally:
        tmp.unlink(missing_ok=True)
