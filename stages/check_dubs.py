"""What the dubs (`languages:`) need and lack, refused before a render: a voice in each language for
every character, and translations that keep the glossary (`stages.glossary`)."""

from __future__ import annotations

from stages.core.errors import InputError


def translator_key(lp) -> list[InputError]:
    """The translator's API key, when it is OpenAI's own server (the dubs' or subtitles.translation's)."""
    import os

    t = lp.project.translator()
    if t is None or t.base_url is not None or os.environ.get(t.api_key_env):
        return []
    setting = "subtitles.translation" if lp.project.subtitles.translation is not None else "translation"
    line = lp.line_of(*setting.split("."))
    return [InputError(f"the translator ({t.model}) needs an API key in ${t.api_key_env}",
                       file=str(lp.root / "project.yaml"), line=line, text=lp.text_at(line),
                       hint=f"export {t.api_key_env}=..., or set {setting}.base_url to a local OpenAI-compatible "
                            "server")]


def dub_blockers(lp, backends) -> list[InputError]:
    project = lp.project
    if not project.languages:
        return []
    out = _voices(lp, backends)
    out += _glossary_misses(lp, backends)
    return out


def _voices(lp, backends) -> list[InputError]:
    """Each character's voice in each language: one the engine has (eSpeak's languages), one it can make."""
    from stages.backends.espeak import available_languages
    from stages.synthesize_speech import speech_engine, speech_request

    project, out, espeak = lp.project, [], None
    yaml_file = str(lp.root / "project.yaml")
    for lang in project.languages:
        for c in project.cast:
            engine = speech_engine(project, c.id, lang)
            voice = project.voice_for(c.id, lang)
            line = lp.line_of("cast", project.cast.index(c), *(("voices", lang) if lang in c.voices else ("voice",)))
            if engine == "espeak":
                espeak = espeak or set(available_languages())
                if voice.language.lower() not in espeak:
                    near = sorted(n for n in espeak if n[:2] == voice.language.lower()[:2])[:6]
                    out.append(InputError(f"cast {c.id}: eSpeak NG has no voice for the dub language {lang!r} "
                                          f"({voice.language!r})", file=yaml_file, line=line, text=lp.text_at(line),
                                          hint=f"set voices: {{{lang}: {{language: <one of "
                                               f"{', '.join(near or ['es', 'fr', 'id', 'ja', 'th'])}>}}}} on them"))
                    continue
            try:
                speech_request("-", c.id, project, lp.root, backend=backends.speech(engine), language=lang)
            except InputError as exc:
                out.append(InputError(exc.message, file=yaml_file, line=line, text=lp.text_at(line), hint=exc.hint))
    return out


def _glossary_misses(lp, backends) -> list[InputError]:
    """Every own translation (translations/<language>.yaml) of a line with a glossary term that lacks
    the language's word for it. (The translator's answers are held to the glossary as they are made.)"""
    t, out = lp.translations, []
    for lang, own in t.own.items():
        path = lp.root / t.own_file(lang)
        lines = path.read_text(encoding="utf-8-sig").splitlines()
        for source, said in own.items():
            for term, word in t.glossary.misses(source, said, lang):
                at = t.own_lines[lang][source]
                out.append(InputError(
                    f"glossary: {source!r} is translated {said!r} in {lang}, without {word!r} for {term!r} "
                    f"({t.glossary.file.name}:{t.glossary.term(term).line})", file=str(path), line=at,
                    text=lines[at - 1], hint=f"write {word!r} in that translation, or change the glossary"))
    return out
