"""Every backend by kind and name, one line each.

A backend's own file holds its class, its options model (`Options`, read from `backends.<section>`
of project.yaml) and its declared `capabilities`. Adding one is that file, one line here and its
test: project.yaml's schema, `rates`, `check` and the estimates learn it from this table. A class
is imported when first named (project.yaml's schema names every video and speech backend); the
libraries behind it (torch, diffusers, openai, piper) load only when it first does work.
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path

VIDEO = {
    "animatic": "stages.backends.animatic:AnimaticBackend",
    "chaos": "stages.backends.chaos:ChaosBackend",
    "diffusers": "stages.backends.diffusers_video:DiffusersVideoBackend",
    "fal": "stages.backends.fal:FalBackend",
    "replicate": "stages.backends.replicate:ReplicateBackend",
    "openai-videos": "stages.backends.openai_videos:OpenAIVideosBackend",
    "kling": "stages.backends.kling:KlingBackend",
    "vidu": "stages.backends.vidu:ViduBackend",
    "runway": "stages.backends.runway:RunwayBackend",
    "pixverse": "stages.backends.pixverse:PixverseBackend",
    "wan-dashscope": "stages.backends.wan_dashscope:WanDashscopeBackend",
    "grok-imagine": "stages.backends.grok_imagine:GrokImagineBackend",
    "veo": "stages.backends.veo:VeoBackend",
    "minimax": "stages.backends.minimax:MinimaxBackend",
    "seedance": "stages.backends.seedance:SeedanceBackend",
}
IMAGE = {
    "animatic": "stages.backends.animatic_image:AnimaticImageBackend",
    "diffusers": "stages.backends.diffusers_image:DiffusersImageBackend",
    "openai": "stages.backends.openai_image:OpenAIImageBackend",
}
SPEECH = {
    "espeak": "stages.backends.espeak:EspeakBackend",
    "piper": "stages.backends.piper:PiperBackend",
    "openai": "stages.backends.openai_speech:OpenAISpeechBackend",
    "elevenlabs": "stages.backends.elevenlabs_speech:ElevenLabsSpeech",
    "minimax-tts": "stages.backends.minimax_speech:MinimaxSpeech",
    "fish-audio": "stages.backends.fish_speech:FishAudioSpeech",
    "dashscope-tts": "stages.backends.dashscope_speech:DashscopeSpeech",
    "volcengine-tts": "stages.backends.volcengine_speech:VolcengineSpeech",
    "chatterbox": "stages.backends.chatterbox_speech:ChatterboxSpeech",
}
TRANSLATION = {
    "openai": "stages.backends.openai_translate:OpenAITranslationBackend",
}
LIPSYNC = {
    "animatic": "stages.backends.animatic_lipsync:AnimaticLipSync",
    "sync": "stages.backends.sync_labs:SyncLabsBackend",
    "kling-lipsync": "stages.backends.kling_lipsync:KlingLipSyncBackend",
    "fal-lipsync": "stages.backends.fal_lipsync:FalLipSyncBackend",
}
KINDS = {"video": VIDEO, "image": IMAGE, "speech": SPEECH, "translation": TRANSLATION, "lipsync": LIPSYNC}


@functools.cache
def backend_class(kind: str, name: str) -> type:
    """The class registered as `name` for `kind` (video, image, speech, translation)."""
    table = KINDS[kind]
    if name not in table:
        raise ValueError(f"unknown {kind} backend {name!r} (known: {', '.join(table)})")
    module, _, attr = table[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def sections(kind: str) -> dict[str, type]:
    """`backends.<section>` -> options model, for every backend of `kind` that takes options."""
    out = {}
    for name in KINDS[kind]:
        cls = backend_class(kind, name)
        if cls.section is not None:
            out[cls.section] = cls.Options
    return out


def _options(cls, config):
    """The backend's options from `config` (a `schema.Backends`), or its defaults when not given."""
    if cls.section is None:
        return None
    given = getattr(config, cls.section) if config is not None else None  # a field `schema.Backends` made for it
    return given if given is not None else cls.Options()


def make_video_backend(config, name: str | None = None):
    """The video backend `name` (default: `config.video`) with its options from `config`; nothing loads."""
    cls = backend_class("video", name or config.video)
    options = _options(cls, config)
    return cls() if options is None else cls(options)


def make_image_backend(options):
    """options: the project's `backends.image` (reference sheets and keyframes)."""
    return backend_class("image", options.kind)(options)


def make_lipsync_backend(config, name: str | None = None):
    """The lip-sync backend `name` (default: `config.lipsync`) with its options from `config`."""
    cls = backend_class("lipsync", name or config.lipsync)
    options = _options(cls, config)
    return cls() if options is None else cls(options)


def make_speech_backend(name: str, config=None):
    cls = backend_class("speech", name)
    options = _options(cls, config)
    return cls() if options is None else cls(options)


def make_translation_backend(options, project_dir: Path | None = None, name: str = "openai"):
    """options: the project's translator (`Project.translator`); project_dir: where its own templates/ may live."""
    return backend_class("translation", name)(options, project_dir)


class BackendSet:
    """A project's backends by kind, each made on first use (made, not loaded: models load when a
    unit first needs them). Planning reads their identities and capabilities; tasks call them."""

    def __init__(self, backends, translation=None, project_dir: Path | None = None):
        self.config, self.translation_options, self.project_dir = backends, translation, project_dir
        self._speech: dict[str, object] = {}

    @functools.cached_property
    def video(self):
        return make_video_backend(self.config)

    @functools.cached_property
    def image(self):
        return make_image_backend(self.config.image)

    @functools.cached_property
    def lipsync(self):
        return make_lipsync_backend(self.config)

    @functools.cached_property
    def translation(self):
        if self.translation_options is None:
            return None
        return make_translation_backend(self.translation_options, self.project_dir)

    def speech(self, engine: str):
        if engine not in self._speech:
            self._speech[engine] = make_speech_backend(engine, self.config)
        return self._speech[engine]

    @functools.cached_property
    def key(self) -> str:
        """Its settings as one string: worker processes keep one set per key."""
        import json

        t = self.translation_options
        return json.dumps({"backends": self.config.model_dump(mode="json"),
                           "translation": t.model_dump(mode="json") if t is not None else None,
                           "project_dir": str(self.project_dir)}, sort_keys=True)

    def __getstate__(self) -> dict:  # travels as its settings; a worker makes its own backends
        return {"backends": self.config, "translation": self.translation_options, "project_dir": self.project_dir}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["backends"], state["translation"], state["project_dir"])


def backends_for(project, project_dir: Path | None = None) -> BackendSet:
    """The backends a `schema.Project` names."""
    return BackendSet(project.backends, project.translator(), project_dir)
