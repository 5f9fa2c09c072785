"""The backend registry: every backend is one class with its options and a declared capability record;
project.yaml's `backends:` section is built from the registry, so a backend is one file and one line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from stages.backends import registry
from stages.backends.base import Capabilities, LipSyncCapabilities, VideoCapabilities
from stages.core.model import Model

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kind, name", [(k, n) for k, table in registry.KINDS.items() for n in table])
def test_every_backend_declares_what_it_can_do(kind, name, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cls = registry.backend_class(kind, name)
    assert cls.section is None or issubclass(cls.Options, Model)
    from stages.schema import Project, Translation

    project = Project(title="x")
    if kind == "video":
        backend = registry.make_video_backend(project.backends, name) if name != "diffusers" else \
            cls(cls.Options(pipeline="WanPipeline", model="/nowhere"))
        assert isinstance(backend.capabilities, VideoCapabilities) and backend.capabilities.modes
    elif kind == "image":
        backend = cls(project.backends.image.model_copy(update={"kind": name, "pipeline": "P", "model": "m"}))
    elif kind == "speech":
        backend = registry.make_speech_backend(name, project.backends)
    elif kind == "lipsync":
        required = [n for n, f in cls.Options.model_fields.items() if f.is_required()] if cls.section else []
        backend = cls(cls.Options(**{n: "https://media.example/lipsync" for n in required})) if required else \
            registry.make_lipsync_backend(project.backends, name)
        assert isinstance(backend.capabilities, LipSyncCapabilities)
    else:
        backend = registry.make_translation_backend(Translation(language="fr"))
    assert isinstance(backend.capabilities, Capabilities)
    assert isinstance(backend.identity(), dict)  # no key, no network, no model: keys are computable anywhere
    if backend.capabilities.billed:
        assert backend.capabilities.pool == "api"


class _SampleOptions(Model):
    base_url: str
    model: str = "m1"


class _SampleBackend:
    """A stand-in for a new provider's file: class, options, capabilities."""

    name = "sample"
    section = "sample"
    Options = _SampleOptions

    def __init__(self, options: _SampleOptions):
        self.options = options
        self.capabilities = VideoCapabilities(billed=True, resumable=True, pool="api", durations_s=(5.0, 10.0))

    def identity(self) -> dict:
        return {"engine": "sample", "model": self.options.model}


def test_one_registry_line_makes_a_backend_usable_from_project_yaml(monkeypatch):
    from stages import schema

    monkeypatch.setitem(registry.VIDEO, "sample", f"{__name__}:_SampleBackend")
    registry.backend_class.cache_clear()
    try:
        backends = schema._backends_model()
        config = backends.model_validate({"video": "sample", "sample": {"base_url": "http://127.0.0.1:9"}})
        made = registry.make_video_backend(config)
        assert isinstance(made, _SampleBackend) and made.options.base_url == "http://127.0.0.1:9"
        with pytest.raises(ValidationError, match="needs a sample"):  # its required options are asked for
            backends.model_validate({"video": "sample"})
        with pytest.raises(ValidationError, match="extra"):
            backends.model_validate({"video": "sample", "sample": {"base_url": "x", "modle": "typo"}})
    finally:
        registry.backend_class.cache_clear()


def test_nothing_reads_a_capability_by_getattr():
    names = "uses|ignores|billed|resumable|concurrency|pool|extra|requires|modes|free|section"
    pattern = re.compile(rf"getattr\([^)]*[\"']({names})[\"']")
    found = [f"{p.relative_to(REPO)}:{i}" for d in ("flows", "stages") for p in (REPO / d).rglob("*.py")
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert not found, found
