"""Parse a screenplay (Fountain, or the Chinese short-drama layout) into a `Script`.

The reader runs in numbered steps:

1. read bytes and decode them (refusing PDFs, Word and Final Draft files with a fix hint);
2. normalise line endings, drop the boneyard `/* */` and lift out notes `[[ ]]`, keeping every
   remaining line tied to its line number in the original file;
3. pick the layout (Fountain, or `第1集` / `1-1 日 内 客厅` / `△` / `角色：台词`) and turn the lines
   into a flat stream of episode marks, scene headings and elements;
4. assemble episodes and scenes from the stream, refusing what cannot be filmed (dialogue before
   any scene heading, episodes out of order, no scenes at all);
5. check the cast: one id per character however it is spelled, and a warning for names that are
   probably one person spelled two ways.

Everything the user can fix is an `InputError` naming file:line; everything that is merely
suspicious is a `Warning_` on the returned `Script`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path

from stages.core.errors import InputError
from stages.parse_script.assemble import _assemble, _build_script, _episode_number, _natural_key
from stages.parse_script.chinese import _ChineseReader, _looks_chinese_layout
from stages.parse_script.decode import _decode, _refuse_binary_text
from stages.parse_script.fountain import _FountainReader
from stages.parse_script.model import _Doc, _extract_notes, _merge_notes, _remove_boneyard, _source_lines
from stages.schema import Episode, Script

__all__ = ["parse_script", "parse_text"]

SCRIPT_SUFFIXES = (".fountain", ".txt")


# --- public API --------------------------------------------------------------------------------


def parse_script(path: Path, *, aliases: dict[str, str] | None = None) -> Script:
    """Parse a script file, or a folder holding one file per episode."""
    path = Path(path)
    aliases = dict(aliases or {})
    if path.is_dir():
        return _parse_folder(path, aliases)
    if not path.is_file():
        raise InputError("script file not found", file=str(path),
                         hint="check the `script:` path in project.yaml")
    text, warnings = _decode(path.read_bytes(), str(path))
    doc = _parse_document(text, str(path), aliases)
    doc.warnings[:0] = warnings
    return _build_script([doc], [_assemble(doc)], aliases)


def parse_text(text: str, file: str, *, aliases: dict[str, str] | None = None) -> Script:
    """Parse script text already in memory; `file` is only used in messages."""
    aliases = dict(aliases or {})
    doc = _parse_document(text, file, aliases)
    return _build_script([doc], [_assemble(doc)], aliases)


def _parse_document(text: str, file: str, aliases: Mapping[str, str]) -> _Doc:
    """Steps 2-3: one file's text to a flat stream of episode marks, headings and elements."""
    _refuse_binary_text(text, file)
    raw = _source_lines(text)
    if not "".join(raw).strip():
        raise InputError("the script is empty", file=file, line=1,
                         hint="write at least one scene: a heading like `INT. PLACE - DAY` and some action")
    lines, notes = _extract_notes(_remove_boneyard(raw, file), file)
    doc = _Doc(file=file)
    if _looks_chinese_layout(lines):
        if file.lower().endswith(".fountain"):
            doc.warn(1, "this .fountain file is written in the Chinese short-drama layout "
                        "(第1集 / 1-1 日 内 地点 / △ / 角色：台词), not Fountain; it was read as that layout")
        _ChineseReader(doc, lines, aliases).run()
    else:
        _FountainReader(doc, lines, aliases).run()
    if notes:
        doc.items = _merge_notes(doc.items, notes, file)
    return doc


# --- a folder of episode files -----------------------------------------------------------------


def _parse_folder(folder: Path, aliases: Mapping[str, str]) -> Script:
    files = sorted((p for p in folder.iterdir()
                    if p.is_file() and p.suffix.lower() in SCRIPT_SUFFIXES and not p.name.startswith(".")),
                   key=lambda p: _natural_key(p.name))
    if not files:
        raise InputError("the script folder has no episode files (*.fountain, *.txt)", file=str(folder),
                         hint="put one file per episode in the folder, e.g. ep01.fountain, ep02.fountain")
    numbered: list[tuple[int, Path, _Doc, list[Episode]]] = []
    for path in files:
        text, notices = _decode(path.read_bytes(), str(path))
        doc = _parse_document(text, str(path), aliases)
        doc.warnings[:0] = notices
        eps = _assemble(doc, first_episode=None)
        if len(eps) > 1:
            raise InputError(f"this file holds {len(eps)} episodes, but each file in an episode folder "
                             "must hold one", file=str(path), line=eps[1].line,
                             hint="split it into one file per episode, or pass the file itself instead of the folder")
        number = _episode_number(doc, eps[0], path)
        numbered.append((number, path, doc, eps))
    numbered.sort(key=lambda t: (t[0], _natural_key(t[1].name)))
    for (n1, p1, _, _), (n2, p2, _, _) in itertools.pairwise(numbered):
        if n1 == n2:
            raise InputError(f"episode {n2} appears twice: {p1.name} and {p2.name}", file=str(p2), line=1,
                             hint="give each file its own `Episode: N` on the title page or number in its name")
    for k, (number, path, doc, eps) in enumerate(numbered, 1):
        if number != k:
            raise InputError(f"episode {k} is missing: the episode files are numbered "
                             f"{', '.join(str(t[0]) for t in numbered)}", file=str(path), line=1,
                             hint="number the episodes 1, 2, 3 ... without gaps (`Episode: N` on the title page "
                                  "or a number in the file name)")
        eps[0].number = number
        eps[0].title = doc.title_page.get("episode title") or eps[0].title
    return _build_script([t[2] for t in numbered], [t[3] for t in numbered], aliases)
