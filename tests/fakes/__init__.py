"""The direct providers' protocols on the local test server (`fake_hosted.FakeHosted`), one module each.

A module names its path on the server (`PREFIX`), the key the tests use (`KEY_ENV`, `KEY`), serves
its API (`route(server, h, method, path, query, raw)`, on the server's job store, faults and
outcomes), and says how tests configure its backend against it (`options(server)`: its
`backends.<section>` settings). Adding a provider's module here puts it through every shared test
in test_hosted_video.py and test_hosted_render.py.
"""

from __future__ import annotations

import importlib
import pkgutil

PROTOCOLS = {m.name.replace("_", "-"): importlib.import_module(f"fakes.{m.name}")
             for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}
DIRECT = sorted(PROTOCOLS)


def backend(server, name: str, **options):
    """The registered backend `name` with its options pointed at `server` (and `options` over them)."""
    from stages.backends.registry import backend_class

    cls = backend_class("video", name)
    return cls(cls.Options(**{**PROTOCOLS[name].options(server), **options}))
