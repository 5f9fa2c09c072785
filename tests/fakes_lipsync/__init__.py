"""The lip-sync providers' protocols on the local test server (`fake_hosted.FakeHosted`), one module each,
shaped like `tests/fakes/` (PREFIX, KEY_ENV, KEY, ENV, route(), options()): a job's result is the
video it was sent, with its speaker's mouth region marked, so a test can tell a synced piece in the cut."""

from __future__ import annotations

import importlib
import pkgutil

PROTOCOLS = {m.name.replace("_", "-"): importlib.import_module(f"fakes_lipsync.{m.name}")
             for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}


def backend(server, name: str, **options):
    """The registered lip-sync backend `name` with its options pointed at `server`."""
    from stages.backends.registry import backend_class

    cls = backend_class("lipsync", name)
    return cls(cls.Options(**{**PROTOCOLS[name].options(server), **options}))
