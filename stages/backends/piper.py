"""Piper neural speech: a local ONNX voice (`voice.onnx` beside its `voice.onnx.json`), offline, on the CPU.

An optional extra (`pip install 'dramaforge[piper]'`); piper and onnxruntime are imported only when used.
"""

from __future__ import annotations

import functools
import threading
import wave
from pathlib import Path

from stages.backends.base import Capabilities, PermanentError, SpeechRequest

_INSTALL = "the piper backend needs the piper extra: pip install 'dramaforge[piper]'"
_GET_VOICE = ("download a voice's .onnx and its .onnx.json (e.g. en_US-lessac-medium.onnx and "
              "en_US-lessac-medium.onnx.json from the rhasspy/piper-voices repository on Hugging Face) "
              "into the project folder, side by side")

# Loading a voice builds an onnxruntime session (hundreds of ms, ~60 MB); do it once per voice file
# and process. Runs need no lock: sessions are thread-safe and piper locks its own espeak-ng phonemizer.
_load_lock = threading.Lock()


class PiperBackend:
    """SpeechBackend: Piper voices by file; `speaker` picks a voice in a multi-speaker file, `speed` the rate."""

    name = "piper"
    section = None  # each character's `voice` names its voice file
    capabilities = Capabilities(extra="piper", requires=("piper",))

    def identity(self) -> dict:
        # The voice itself is in the request (`voice_sha`), so only the engine is named here.
        return {"engine": "piper", "version": _piper_version()}

    def synthesize(self, request: SpeechRequest, out_wav: Path) -> None:
        if not request.voice:
            raise PermanentError(f"the piper backend needs a voice file; {_GET_VOICE}")
        voice = _voice(Path(request.voice))
        config = voice.config
        speaker = request.speaker
        if speaker is not None and not 0 <= speaker < max(config.num_speakers, 1):
            # Piper itself would ignore it (one speaker) or fail deep in onnxruntime (several).
            raise PermanentError(f"speaker {speaker} is out of range: {Path(request.voice).name} has "
                                 f"{config.num_speakers} speaker(s), ids 0..{max(config.num_speakers, 1) - 1}")
        if not request.speed > 0:
            raise PermanentError(f"speed must be above 0, got {request.speed}")

        from piper import SynthesisConfig

        # speed 2 = half as long; relative to the voice's own pace (its config's length_scale).
        syn = SynthesisConfig(speaker_id=speaker, length_scale=config.length_scale / request.speed)
        try:
            pcm = b"".join(chunk.audio_int16_bytes for chunk in voice.synthesize(request.text, syn_config=syn))
        except Exception as exc:  # onnxruntime's errors are plain Exceptions; none gets better on a retry
            raise PermanentError(f"Piper could not speak with {request.voice}: {exc}") from exc
        if not pcm:
            raise PermanentError(f"Piper made no audio for {request.text!r} (nothing to pronounce?)")
        with wave.open(str(out_wav), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(config.sample_rate)
            w.writeframes(pcm)


def _voice(model: Path):
    """The loaded voice for `model`, reloaded when the file or its config changes."""
    config = Path(f"{model}.json")
    for path in (model, config):
        if not path.is_file():
            raise PermanentError(f"Piper voice file not found: {path}; {_GET_VOICE}")
    with _load_lock:
        return _load(str(model.resolve()), model.stat().st_mtime_ns, config.stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _load(model: str, model_mtime_ns: int, config_mtime_ns: int):
    try:
        from piper import PiperVoice
    except ImportError as exc:
        raise PermanentError(_INSTALL) from exc
    try:
        return PiperVoice.load(model, config_path=f"{model}.json", use_cuda=False)
    except Exception as exc:  # bad JSON, missing config keys, or a file onnxruntime cannot read
        raise PermanentError(f"could not load the Piper voice {model}: {type(exc).__name__}: {exc}") from exc


@functools.cache
def _piper_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("piper-tts")
    except PackageNotFoundError as exc:
        raise PermanentError(_INSTALL) from exc
