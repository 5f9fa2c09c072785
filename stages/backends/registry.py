"""Backends by name, imported lazily so the default never loads what it does not use."""

from __future__ import annotations

from stages.schema import Backends, ChaosOptions


def make_video_backend(config: Backends, name: str | None = None):
    name = name or config.video
    if name == "animatic":
        from stages.backends.animatic import AnimaticBackend

        return AnimaticBackend()
    if name == "chaos":
        from stages.backends.chaos import ChaosBackend

        opts = config.chaos or ChaosOptions()
        return ChaosBackend(make_video_backend(config, opts.wraps), fail_rate=opts.fail_rate, error=opts.error,
                            seed=opts.seed, retry_after_s=opts.retry_after_s)
    if name == "diffusers":
        from stages.backends.diffusers_video import DiffusersVideoBackend

        return DiffusersVideoBackend(config.diffusers)
    if name == "openai-videos":
        from stages.backends.openai_videos import OpenAIVideosBackend

        return OpenAIVideosBackend(config.openai_videos)
    raise ValueError(f"unknown video backend {name!r}")


def make_image_backend(options):
    """options: a `schema.ImageOptions` (reference sheets and keyframes)."""
    if options.kind == "animatic":
        from stages.backends.animatic_image import AnimaticImageBackend

        return AnimaticImageBackend()
    if options.kind == "diffusers":
        from stages.backends.diffusers_image import DiffusersImageBackend

        return DiffusersImageBackend(options)
    if options.kind == "openai":
        from stages.backends.openai_image import OpenAIImageBackend

        return OpenAIImageBackend(options)
    raise ValueError(f"unknown image backend {options.kind!r}")


def make_speech_backend(name: str, config: Backends | None = None):
    config = config or Backends()
    if name == "espeak":
        from stages.backends.espeak import EspeakBackend

        return EspeakBackend()
    if name == "piper":
        from stages.backends.piper import PiperBackend

        return PiperBackend()
    if name == "openai":
        from stages.backends.openai_speech import OpenAISpeechBackend

        return OpenAISpeechBackend(config.openai)
    raise ValueError(f"unknown speech backend {name!r}")


def make_translation_backend(options, project_dir=None):
    """options: a `schema.Translation`; project_dir: where a project's own templates/ may live."""
    from stages.backends.openai_translate import OpenAITranslationBackend

    return OpenAITranslationBackend(options, project_dir)
