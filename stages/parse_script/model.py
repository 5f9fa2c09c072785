"""Step 2 of reading a script, and what both readers share.

Lines tied to their line numbers, the boneyard `/* */` dropped and notes `[[ ]]` lifted out;
inline emphasis cleaning; the flat stream both readers write (`_Heading`, `_EpisodeMark`, `_Cue`,
`_Doc`); the base `_Reader`; and the heading helpers both layouts use.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from stages.core.errors import InputError
from stages.schema import Element, ElementKind, Warning_, normalize_name


# --- step 2: lines, boneyard and notes ---------------------------------------------------------


@dataclass
class _Line:
    no: int  # 1-based line in the original file
    text: str


def _source_lines(text: str) -> list[str]:
    """Split into lines the way editors number them: CRLF, CR and LF are all one line break."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufeff", "")
    return text.split("\n")


def _remove_boneyard(lines: list[str], file: str) -> list[_Line]:
    """Drop `/* ... */` (nested allowed); a line that held only boneyard disappears.

    A boneyard that cut whole paragraphs (it spans a blank line) leaves one blank line behind,
    so the paragraphs around it stay apart; one that cut lines out of a paragraph leaves the
    paragraph whole. Both match what writers expect when they comment something out.
    """
    out: list[_Line] = []
    depth = 0
    open_no = 0
    spanned_blank = False
    for no, raw in enumerate(lines, 1):
        if depth == 0 and "/*" not in raw:
            out.append(_Line(no, raw))
            continue
        if depth and not raw.strip():
            spanned_blank = True
        kept: list[str] = []
        i = 0
        while i < len(raw):
            if depth == 0:
                j = raw.find("/*", i)
                if j < 0:
                    kept.append(raw[i:])
                    break
                kept.append(raw[i:j])
                depth, open_no, spanned_blank, i = 1, no, False, j + 2
            else:
                j_open, j_close = raw.find("/*", i), raw.find("*/", i)
                if j_close < 0:
                    break
                if 0 <= j_open < j_close:
                    depth, i = depth + 1, j_open + 2
                    continue
                depth, i = depth - 1, j_close + 2
                if depth == 0 and spanned_blank:
                    out.append(_Line(no, ""))
        rest = "".join(kept)
        if rest.strip():
            out.append(_Line(no, rest))
    if depth:
        raise InputError(
            "boneyard `/*` is never closed with `*/`: everything after it would vanish",
            file=file, line=open_no, text=lines[open_no - 1],
            hint="add `*/` where the commented-out part ends, or remove the `/*`")
    return out


@dataclass
class _Note:
    no: int
    text: str


def _is_blank(text: str) -> bool:
    """An empty line; a line of exactly two spaces is Fountain's deliberate in-block blank."""
    return not text.strip() and text != "  "


def _extract_notes(lines: list[_Line], file: str) -> tuple[list[_Line], list[_Note]]:
    """Lift `[[notes]]` out of the text; a note may span lines but not a blank line.

    The text around a note closes up ("Before [[x]]After" -> "Before After"); a line that held
    only a note disappears, so a note inside a dialogue block does not end the block.
    """
    out: list[_Line] = []
    notes: list[_Note] = []
    i = 0
    while i < len(lines):
        if "[[" not in lines[i].text:
            out.append(lines[i])
            i += 1
            continue
        kept: list[tuple[int, str]] = []  # text outside notes, with the line it sits on
        cur, pos, text = i, 0, lines[i].text
        while True:
            j = text.find("[[", pos)
            if j < 0:
                kept.append((lines[cur].no, text[pos:]))
                break
            kept.append((lines[cur].no, text[pos:j]))
            opened = lines[cur]
            body: list[tuple[int, str]] = []
            start = j + 2
            while True:
                k = text.find("]]", start)
                if k >= 0:
                    body.append((lines[cur].no, text[start:k].strip()))
                    pos = k + 2
                    break
                body.append((lines[cur].no, text[start:].strip()))
                cur += 1
                if cur >= len(lines) or _is_blank(lines[cur].text):
                    where = ("the end of the file" if cur >= len(lines)
                             else f"the blank line {lines[cur].no}")
                    raise InputError(
                        f"note `[[` is not closed with `]]` before {where}: the text after it would vanish",
                        file=file, line=opened.no, text=opened.text,
                        hint="close the note with `]]`; a note may span lines but not a blank line "
                             "(put two spaces on a line to keep a blank line inside a note)")
                text, start = lines[cur].text, 0
            while body and not body[0][1]:
                body.pop(0)
            while body and not body[-1][1]:
                body.pop()
            if body:
                notes.append(_Note(body[0][0], "\n".join(t for _, t in body)))
        joined = "".join(t for _, t in kept)
        if joined.strip():
            out.append(_Line(next(no for no, t in kept if t.strip()), joined))
        i = cur + 1
    return out, notes


# --- inline cleaning ---------------------------------------------------------------------------

# The markers may not occur inside what they wrap, which keeps each search linear; nesting is
# undone by repeating the pass (`_**BOLD UNDERLINE**_`, `**bold *italic* bold**`).
_EMPHASIS = (
    re.compile(r"\*\*\*(?=[^\s*])([^*]+?)(?<=[^\s*])\*\*\*"),
    re.compile(r"\*\*(?=[^\s*])([^*]+?)(?<=[^\s*])\*\*"),
    re.compile(r"\*(?=[^\s*])([^*]+?)(?<=[^\s*])\*"),
    # Underline only at word edges, so snake_case_names survive.
    re.compile(r"(?<!\w)_(?=[^\s_])([^_]+?)(?<=[^\s_])_(?!\w)"),
)


def _clean(text: str) -> str:
    """Strip Fountain emphasis markup from one line; `\\*` and `\\_` stay as `*` and `_`."""
    if "*" not in text and "_" not in text:
        return text
    # Park escaped markers on private-use characters the line does not already contain.
    free = (chr(c) for c in range(0xE000, 0xF900) if chr(c) not in text)
    escapes = [("\\*", next(free), "*"), ("\\_", next(free), "_")]
    for esc, ph, _ in escapes:
        text = text.replace(esc, ph)
    for _ in range(4):
        before = text
        for rx in _EMPHASIS:
            text = rx.sub(r"\1", text)
        if text == before:
            break
    for _, ph, plain in escapes:
        text = text.replace(ph, plain)
    return text


_EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\uFE0F]")
_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\U00020000-\U0002fa1f]")


# --- shared document model ---------------------------------------------------------------------

Interior = Literal["INT", "EXT", "INT/EXT", ""]
_INTERIORS: dict[str, Interior] = {"INT": "INT", "EXT": "EXT", "INT/EXT": "INT/EXT", "": ""}


@dataclass
class _Heading:
    text: str
    no: int
    location: str
    time: str
    interior: Interior
    scene_number: str | None


@dataclass
class _EpisodeMark:
    number: int
    title: str
    no: int
    text: str


@dataclass
class _Cue:
    char_id: str
    spelling: str
    no: int
    file: str


@dataclass
class _Doc:
    file: str
    title_page: dict[str, str] = field(default_factory=dict)
    title: str = ""
    items: list[_Heading | _EpisodeMark | Element] = field(default_factory=list)
    warnings: list[Warning_] = field(default_factory=list)
    cues: list[_Cue] = field(default_factory=list)
    body_start: int = 1  # first line after the title page
    front: list[Element] = field(default_factory=list)  # never filmed: text before the first scene

    def warn(self, no: int, message: str) -> None:
        self.warnings.append(Warning_(file=self.file, line=no, message=message))


def _merge_notes(items: list, notes: list[_Note], file: str) -> list:
    """Put each note after the last item that starts on or before the note's line."""
    out: list = []
    k = 0
    for item in items:
        no = item.no if isinstance(item, (_Heading, _EpisodeMark)) else item.line
        while k < len(notes) and notes[k].no < no:
            out.append(Element(kind="note", text=notes[k].text, file=file, line=notes[k].no))
            k += 1
        out.append(item)
    out.extend(Element(kind="note", text=n.text, file=file, line=n.no) for n in notes[k:])
    return out


# --- characters --------------------------------------------------------------------------------


def _character_id(name: str, aliases: Mapping[str, str]) -> str:
    key = normalize_name(name)
    if key in aliases:
        return aliases[key]
    # Unknown characters keep a readable id derived from the name; the caller reports them.
    return re.sub(r"[^\w]+", "_", key).strip("_") or key


class _Reader:
    """What both layouts share: making elements, dialogue and warnings."""

    def __init__(self, doc: _Doc, lines: list[_Line], aliases: Mapping[str, str]):
        self.doc = doc
        self.lines = lines
        self.aliases = aliases
        self.file = doc.file

    def emit(self, kind: ElementKind, text: str, no: int, *, character: str | None = None,
             cue: str | None = None, extension: str | None = None,
             parenthetical: str | None = None) -> Element | None:
        if not text.strip() and kind != "page_break":
            return None
        el = Element(kind=kind, text=text, file=self.file, line=no, character=character, cue=cue,
                     extension=extension, parenthetical=parenthetical)
        self.doc.items.append(el)
        return el

    def dialogue(self, cue: str, name: str, extension: str | None, text: str, no: int,
                 parenthetical: str | None, kind: ElementKind = "dialogue",
                 cue_no: int | None = None) -> Element | None:
        char_id = _character_id(name, self.aliases)
        self.doc.cues.append(_Cue(char_id, name, cue_no or no, self.file))
        if _EMOJI.search(text):
            emoji = "".join(dict.fromkeys(_EMOJI.findall(text)))
            self.doc.warn(no, f"emoji {emoji} in {name}'s line: voices cannot speak them; "
                              "write the feeling as a parenthetical or remove them")
        return self.emit(kind, text, no, character=char_id, cue=cue, extension=extension,
                         parenthetical=parenthetical)

    def register(self, name: str, no: int) -> None:
        self.doc.cues.append(_Cue(_character_id(name, self.aliases), name, no, self.file))

    def reaction(self, cue: str, name: str, extension: str | None, paren: str, no: int,
                 cue_no: int) -> Element | None:
        """A cue with only a parenthetical (`林晓：（怔住）`, `MARY / (stunned)`): a wordless reaction."""
        char_id = _character_id(name, self.aliases)
        self.doc.cues.append(_Cue(char_id, name, cue_no, self.file))
        return self.emit("reaction", paren, no, character=char_id, cue=cue, extension=extension,
                         parenthetical=paren)


# --- scene and episode headings, in both layouts -----------------------------------------------

_SCENE_PREFIX = re.compile(
    r"^(?P<p>INT\.?\s*/\s*EXT|EXT\.?\s*/\s*INT|I\.?\s*/\s*E|E\.?\s*/\s*I|INT|EXT|EST)"
    r"(?:\.\s*|\s+-\s+|\s+)(?=\S)", re.IGNORECASE)
_CN_NUM = "0-9０-９〇零一二两三四五六七八九十百千"


# --- what a heading's time or a closing line means, in both layouts -----------------------------

# A scene that continues the one before takes its time of day (INT. DINER - CONTINUOUS, 2-1 同上 内 客厅).
CONTINUITY = re.compile(r"^(?:CONTINUOUS|CONT'?D|CONTINUED|(?:A )?(?:MOMENTS?|MINUTES?|SECONDS?|LITTLE|FEW MINUTES) "
                        r"LATER|LATER|SAME(?: TIME)?|同上|接上|同前|承上|连续|稍后|片刻后)$", re.IGNORECASE)
# The writer's own last words for an episode: they become its end card (never a second one).
END_TEXT = re.compile(r"^(?:TO BE CONTINUED|CONTINUED NEXT (?:TIME|EPISODE|WEEK)|THE END|END OF (?:EPISODE|PART|"
                      r"SEASON|SERIES|SHOW)(?: [\w-]+)?|FIN|END|未完待续|待续|全剧终|全劇終|剧终|劇終|大结局完|本集完|完)$",
                      re.IGNORECASE)


def end_words(text: str) -> str | None:
    """`> TO BE CONTINUED... <`, `（未完待续）`, `【本集完】` -> the words as written (no brackets); else None."""
    words = text.strip().strip("()（）[]【】「」<>~*_ ").strip()
    bare = re.sub(r"[\s.…!！。·・~\-—–]+$", "", words).strip()
    return words if bare and "\n" not in bare and END_TEXT.match(re.sub(r"\s+", " ", bare)) else None
