"""The speech providers' protocols on the local test server (`fake_hosted.FakeHosted`), one module each,
shaped like `tests/fakes/` (PREFIX, KEY_ENV, KEY, ENV, route(), options()). A cloned voice speaks in
its reference clip's own voice (`_voice.cloned`: pieces of the clip, as long as the line would take),
so the speaker-similarity figure can tell a right voice from a wrong one (`_voice.wrong`)."""

from __future__ import annotations

import importlib
import pkgutil

def _engines() -> dict[str, str]:
    """Fake module -> the engine it serves: a fake has its backend's module name (`minimax_speech`)."""
    from stages.backends.registry import SPEECH

    return {path.split(":")[0].rsplit(".", 1)[1]: engine for engine, path in SPEECH.items()}


PROTOCOLS = {_engines()[m.name]: importlib.import_module(f"fakes_tts.{m.name}")
             for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}


def backend(server, name: str, **options):
    """The registered speech backend `name` with its options pointed at `server`."""
    from stages.backends.registry import backend_class

    cls = backend_class("speech", name)
    return cls(cls.Options(**{**PROTOCOLS[name].options(server), **options}))
