"""What a project file reaches, checked as it is loaded (`load_project`) and shown by `check` and a
render's first line: the key variables it names, the addresses its keys go to, the files it names.
The rules themselves (the allowed variables, redaction, confinement, the user's config) are
`stages.core.trust`'s; this walks a validated project with them."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from stages.core.errors import InputError
from stages.core.trust import (KEY_PATTERNS, URL_FIELDS, allowed_host, allowed_key_env, config_path, confined,
                                 redact_url)


def _settings(model: BaseModel, loc: tuple = ()):
    """(location, model, field name, value) of every setting in a validated project, depth first."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        yield loc + (name,), model, name, value
        items = (value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list)
                 else [(None, value)])
        for key, item in items:
            if isinstance(item, BaseModel):
                yield from _settings(item, loc + (name,) + (() if key is None else (key,)))


def key_problems(project, yaml_file: str, line_of) -> list[InputError]:
    """Every key variable a project may not name, and every address carrying credentials."""
    out = []
    for loc, model, name, value in _settings(project):
        if not isinstance(value, str):
            continue
        where = ".".join(str(p) for p in loc)
        if name.endswith("_env") and name.startswith(("api_key", "secret_key")):
            default = type(model).model_fields[name].default
            if not allowed_key_env(value, default if isinstance(default, str) else None):
                out.append(InputError(
                    f"{where}: {value!r} is not a key variable a project may name (it would send that "
                    "variable's value to the provider)", file=yaml_file, line=line_of(*loc),
                    hint=f"use the provider's variable{f' ({default})' if isinstance(default, str) else ''} or one "
                         f"named like {', '.join(KEY_PATTERNS)}; to allow {value} for every project, add it to "
                         f"api_key_env in your own config, {config_path()}"))
        elif name in URL_FIELDS or name == "media_base_url":
            if "@" in urllib.parse.urlsplit(value).netloc:
                out.append(InputError(
                    f"{where}: the address {redact_url(value)} carries a user name or password", file=yaml_file,
                    line=line_of(*loc), hint="drop the user:password@ part; the key goes in the environment "
                                             "variable that api_key_env names"))
    return out


@dataclass(frozen=True)
class Endpoint:
    """A backend in use that sends its key somewhere other than its provider's own address."""

    setting: str  # where project.yaml sets it, e.g. backends.kling.base_url
    url: str  # redacted
    default: str  # the provider's own address
    key_env: str

    def __str__(self) -> str:
        return f"{self.setting}: sends ${self.key_env} to {self.url} (not the provider's default {self.default})"


def host_problems(project, yaml_file: str, line_of) -> list[InputError]:
    """Every backend in use that would send its key to a host that is neither its provider's, nor on
    this machine, nor allowed by the user's own config."""
    return [InputError(f"{e.setting}: would send ${e.key_env} to {e.url}, not the provider's own address "
                       f"({e.default})", file=yaml_file, line=line_of(*(int(p) if p.isdigit() else p
                                                                       for p in e.setting.split("."))),
                       hint=f"use the provider's address, a server on this machine, or, if you trust that host, "
                            f"add it to allow_hosts in your own config, {config_path()}")
            for e in endpoints(project) if not allowed_host(e.url)]


def endpoints(project) -> list[Endpoint]:
    """The backends this project uses whose address is not their provider's own."""
    from stages.backends import registry
    from stages.sync_lips import modes_used

    b = project.backends
    used = []  # (setting prefix, options)
    if (section := registry.backend_class("video", b.video).section) is not None:
        used.append((f"backends.{section}", getattr(b, section)))
    if "tts+lipsync" in modes_used(project) and (section := registry.backend_class("lipsync", b.lipsync).section):
        used.append((f"backends.{section}", getattr(b, section)))
    if b.image.kind == "openai":
        used.append(("backends.image", b.image))
    for engine in dict.fromkeys([b.speech, *(v.backend or b.speech for c in project.cast
                                             for v in (c.voice, *c.voices.values()))]):
        if (section := registry.backend_class("speech", engine).section) is not None:  # openai, the cloning ones
            used.append((f"backends.{section}", getattr(b, section)))
    if project.subtitles.translation is not None:
        used.append(("subtitles.translation", project.subtitles.translation))
    elif project.languages:
        used.append(("translation", project.translation))
    if project.planner.kind == "llm":
        used.append(("planner", project.planner))
    out = []
    for prefix, options in used:
        if options is None or not hasattr(options, "api_key_env"):
            continue
        for name in URL_FIELDS:
            value = getattr(options, name, None)
            if value is None or name not in type(options).model_fields:
                continue
            default = _default_url(options, name)
            if value != default:
                out.append(Endpoint(f"{prefix}.{name}", redact_url(value), default or "api.openai.com",
                                    options.api_key_env))
    return out


def _default_url(options: BaseModel, name: str) -> str | None:
    """The address `options` would have without its own `name` (some follow a region)."""
    field = type(options).model_fields[name]
    if field.is_required():
        return None
    try:
        return type(options).model_validate(options.model_dump(exclude={name}, exclude_unset=False)).__dict__[name]
    except ValueError:
        return field.default



def path_problems(project, root: Path, yaml_file: str, line_of) -> list[InputError]:
    """Every file project.yaml names that lies outside the project (and the folders the user allows)."""
    from stages.backends._diffusers import local_model_dir

    named: list[tuple[str, object, tuple, bool]] = [("the script", project.script, ("script",), False)]
    for i, c in enumerate(project.cast):
        if c.reference_image is not None:
            named.append((f"cast {c.id}: reference_image", c.reference_image, ("cast", i, "reference_image"), False))
        named += [(f"cast {c.id}: reference image", p, ("cast", i, "references", j), False)
                  for j, p in enumerate(c.references)]
        named += [(f"cast {c.id}: reference image of look {n}", p, ("cast", i, "looks", n, "references", j), False)
                  for n, look in c.looks.items() for j, p in enumerate(look.references)]
        for loc, v in [(("voice",), c.voice), *((("voices", lang), v) for lang, v in c.voices.items())]:
            which = f" ({loc[1]})" if len(loc) > 1 else ""
            if (v.backend or c.voice.backend or project.backends.speech) == "piper" and v.voice:
                named += [(f"cast {c.id}: Piper voice{which}", f, ("cast", i, *loc, "voice"), False)
                          for f in (v.voice, f"{v.voice}.json")]
            if v.reference is not None:  # sent to a cloning provider: never a file from outside the project
                named.append((f"cast {c.id}: voice reference clip{which}", v.reference, ("cast", i, *loc, "reference"),
                              False))
    music = project.audio.music
    named += [("music file", name, ("audio", "music", "file") if n is None else ("audio", "music", "episodes", n),
               False) for n, name in [(None, music.file), *music.episodes.items()]
              if name and name.lower() != "none"]
    image, models = project.backends.image, []
    if image.kind == "diffusers":
        models.append(("backends.image.model", image.model, ("backends", "image", "model")))
    if image.kind == "diffusers" and image.ip_adapter is not None:
        models.append(("backends.image.ip_adapter.model", project.backends.image.ip_adapter.model,
                       ("backends", "image", "ip_adapter", "model")))
    video = getattr(project.backends, "diffusers", None)
    if video is not None:
        models.append(("backends.diffusers.model", video.model, ("backends", "diffusers", "model")))
    chatterbox = project.backends.chatterbox
    if "chatterbox" in {project.backends.speech, *(c.voice.backend for c in project.cast)} and chatterbox.model:
        models.append(("backends.chatterbox.model", chatterbox.model, ("backends", "chatterbox", "model")))
    for what, model, loc in models:
        folder = local_model_dir(model) if model else None
        if folder is not None:  # a hub id is no path
            named.append((f"the model folder ({what})", Path.cwd() / folder, loc, True))
    out = []
    for what, path, loc, is_model in named:
        try:
            confined(path, root, what=what, models=is_model)
        except InputError as exc:
            exc.file, exc.line = yaml_file, line_of(*loc)
            out.append(exc)
    return out
