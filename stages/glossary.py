"""What a project says about its translations, read and checked once as it loads:

- `glossary.yaml`: the names and terms every translation must use, by language
  (`林晚: {en: Lin Wan, es: Lin Wan}`). The translator is told them and its answer is refused
  (repaired) where a line has the term and its translation lacks the language's word; `check`
  refuses a cached translation or an own translation that misses one.
- `translations/<language>.yaml`: the writer's own translation of a line, by the line as the script
  has it (`是你？: "¿Eres tú?"`). It replaces the translator's: changing one re-speaks that line of
  that language only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from stages.core.errors import InputError
from stages.core.text import contains
from stages.core.yaml_lines import _line, _line_of, read_yaml

GLOSSARY = "glossary.yaml"
OWN = "translations"


@dataclass(frozen=True)
class Term:
    source: str
    targets: dict[str, str]
    line: int  # in glossary.yaml


@dataclass(frozen=True)
class Glossary:
    terms: tuple[Term, ...] = ()
    file: Path | None = None

    def pairs(self, language: str) -> tuple[tuple[str, str], ...]:
        """(term, its word in `language`) for every term the glossary gives in that language."""
        return tuple((t.source, t.targets[language]) for t in self.terms if language in t.targets)

    def misses(self, source: str, translated: str, language: str) -> list[tuple[str, str]]:
        """The (term, word) pairs `source` has whose word `translated` lacks."""
        return [(s, w) for s, w in self.pairs(language) if contains(source, s) and not contains(translated, w)]

    def term(self, source: str) -> Term:
        return next(t for t in self.terms if t.source == source)


@dataclass(frozen=True)
class Translations:
    """The glossary and the writer's own translations, by language (line as written -> translation)."""

    glossary: Glossary = field(default_factory=Glossary)
    own: dict[str, dict[str, str]] = field(default_factory=dict)
    own_lines: dict[str, dict[str, int]] = field(default_factory=dict)  # where each is written

    def own_file(self, language: str) -> Path:
        return Path(OWN) / f"{language}.yaml"


def read_translations(root: Path, languages: list[str]) -> Translations:
    """The project's glossary and own translations; InputError with the file and line of a bad entry."""
    glossary = _glossary(root / GLOSSARY) if (root / GLOSSARY).is_file() else Glossary()
    own, where = {}, {}
    for lang in languages:
        path = root / OWN / f"{lang}.yaml"
        if path.is_file():
            own[lang], where[lang] = _own(path)
    return Translations(glossary, own, where)


def _glossary(path: Path) -> Glossary:
    text, tree, data = read_yaml(path, GLOSSARY)
    if data is None:
        return Glossary((), path)
    if not isinstance(data, dict):
        raise InputError(f"{GLOSSARY} must map each term to its word in each language", file=str(path), line=1,
                         text=_line(text, 1), hint="e.g.  林晚: {en: Lin Wan, es: Lin Wan}")
    terms = []
    for source, targets in data.items():
        line = _line_of(tree, (source,)) or 1
        ok = isinstance(source, str) and source.strip() and isinstance(targets, dict) and targets and all(
            isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in targets.items())
        if not ok:
            raise InputError(f"{GLOSSARY}: the term {source!r} needs its word in each language, as text",
                             file=str(path), line=line, text=_line(text, line),
                             hint=f"e.g.  {source}: {{en: <its English word>, es: <its Spanish word>}}")
        terms.append(Term(source.strip(), {k: v.strip() for k, v in targets.items()}, line))
    return Glossary(tuple(terms), path)


def _own(path: Path) -> tuple[dict[str, str], dict[str, int]]:
    text, tree, data = read_yaml(path, f"{OWN}/{path.name}")
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise InputError(f"{OWN}/{path.name} must map each line, as the script has it, to its translation",
                         file=str(path), line=1, text=_line(text, 1), hint='e.g.  是你？: "¿Eres tú?"')
    out, where = {}, {}
    for source, target in data.items():
        line = _line_of(tree, (source,)) or 1
        if not (isinstance(source, str) and isinstance(target, str) and target.strip()):
            raise InputError(f"{OWN}/{path.name}: the line {source!r} needs its translation, as text",
                             file=str(path), line=line, text=_line(text, line),
                             hint='quote both sides where they hold a colon:  "原文：台词": "translation"')
        out[source.strip()], where[source.strip()] = target.strip(), line
    return out, where
