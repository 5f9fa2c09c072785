"""eSpeak NG speech through ctypes, from the libespeak-ng that `espeakng-loader` ships.

Offline, deterministic, a few milliseconds a line, and many languages (en, cmn, yue, ...).
The library keeps global state, so calls are serialised with a lock.
"""

from __future__ import annotations

import ctypes
import functools
import threading
import wave
from pathlib import Path

from stages.backends.base import Capabilities, PermanentError, SpeechRequest

_AUDIO_OUTPUT_SYNCHRONOUS = 0x02
_espeakCHARS_UTF8 = 1
_espeakRATE, _espeakPITCH = 1, 3
_SYNTH_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_rate = 0
_chunks: list[bytes] = []


@_SYNTH_CB
def _on_samples(wav, numsamples, events):  # called by libespeak-ng during espeak_Synth
    if numsamples > 0:
        _chunks.append(ctypes.string_at(wav, numsamples * 2))
    return 0


def _library() -> ctypes.CDLL:
    global _lib, _rate
    if _lib is None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.restype = ctypes.c_int
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                     espeakng_loader.get_data_path().encode(), 0)
        if rate <= 0:
            raise PermanentError("eSpeak NG failed to initialise (espeakng-loader data missing?)")
        lib.espeak_SetSynthCallback(_on_samples)
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p]
        _lib, _rate = lib, rate
    return _lib


class EspeakBackend:
    """SpeechBackend: eSpeak NG voices by name (`en-us`, `en-gb+m3`, `cmn`, ...)."""

    name = "espeak"
    section = None  # each character's `voice` carries its settings
    capabilities = Capabilities(seconds_each=0.05)  # measured: 0.04 s a line on a 2-core laptop

    def identity(self) -> dict:
        return {"engine": "espeak-ng", "loader": _loader_version()}

    def synthesize(self, request: SpeechRequest, out_wav: Path) -> None:
        text = request.text.encode("utf-8") + b"\0"
        with _lock:
            lib = _library()
            voice = voice_name(request.language) + (f"+{request.variant}" if request.variant else "")
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise PermanentError(
                    f"eSpeak NG has no voice {voice!r}; use a language such as en-us, en-gb, cmn, yue "
                    "and a variant such as m3 or f2")
            lib.espeak_SetParameter(_espeakRATE, request.speed_wpm, 0)
            lib.espeak_SetParameter(_espeakPITCH, request.pitch, 0)
            _chunks.clear()
            err = lib.espeak_Synth(text, len(text), 0, 0, 0, _espeakCHARS_UTF8, None, None)
            pcm = b"".join(_chunks)
            _chunks.clear()
        if err != 0:
            raise PermanentError(f"eSpeak NG could not speak this text (error {err})")
        with wave.open(str(out_wav), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(_rate)
            w.writeframes(pcm)


@functools.cache
def _languages() -> dict[str, str]:
    """Language code or voice file name (lower case) -> the voice file name eSpeak NG loads."""
    import espeakng_loader

    out: dict[str, tuple[int, str]] = {}
    for f in sorted((Path(espeakng_loader.get_data_path()) / "lang").rglob("*")):
        if not f.is_file():
            continue
        out.setdefault(f.name.lower(), (0, f.name))
        for line in f.read_text("utf-8", "replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "language":
                prio = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 5
                code = parts[1].lower()
                if code not in out or out[code][0] > prio:
                    out[code] = (prio, f.name)
    return {k: v for k, (_, v) in out.items()}


def voice_name(language: str) -> str:
    """`en-gb` -> `en`, `en-us` -> `en-US`, `cmn` -> `cmn`; unknown names pass through (and fail)."""
    return _languages().get(language.lower(), language)


def available_languages() -> list[str]:
    return sorted(_languages())


@functools.cache  # read once per process: every line's key names it (400 reads took 0.1 s of `status`)
def _loader_version() -> str:
    from importlib.metadata import version

    return version("espeakng-loader")
