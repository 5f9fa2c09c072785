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

import codecs
import io
import itertools
import re
import unicodedata
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from stages.core.errors import InputError
from stages.schema import Element, ElementKind, Episode, Scene, Script, Warning_, normalize_name

__all__ = ["parse_script", "parse_text"]

FIX_EXPORT = ("export the script as Fountain (.fountain) or plain text (.txt), UTF-8: "
              "Final Draft: File > Export > Fountain; Word: Save As > Plain Text (UTF-8)")
OPENING_PLACE = "opening"  # the place of a scene written before any heading
FIX_SCENE = "add a scene heading such as `INT. PLACE - DAY` (or `1-1 日 内 客厅`) above it"
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


# --- step 1: bytes to text ---------------------------------------------------------------------

# A few hundred of the most frequent Chinese characters, simplified and traditional. GB18030
# decodes almost any byte string, so "decodes cleanly" alone cannot tell GB18030 from Big5 or
# from a Latin-1 file; real Chinese text is dense in these characters, mojibake is not.
_COMMON_HAN = frozenset(
    "的一是不了人我在有他这這中大来來上个個们們到说說你她地出道也时時年得就那要下以生会會自着著"
    "去之过過家学學对對可里裡后後小么麼心多天而能好都然没沒日于於起还還发發成事只作当當想看文无無"
    "开開手用主行方又如前所本见見经經头頭面公同三已老从從动動两兩长長知样樣现現分将將外但身些与與"
    "高意进進把法此实實回二理美点點月明其种種声聲全工己话話儿兒者向情部正名定女问問力机機给給等几"
    "幾很业業最间間新什打便位因重被走电電四第门門相次东東海口使西再平真听聽世气氣信北少关關并内加"
    "化由却代军軍产產入先山五太水万萬市眼体體别別处處总總才场場师師书書比住员員九笑性通目华華报報"
    "立马馬命张張活难難神数數件安表原车車白应應路期叫死常提感金何更反合放做系计計或司利受光王果亲"
    "親界及今京务務制解各任至清物台象记記边邊共风風战戰干接它许許八特觉覺望直服毛林题題建南度统統"
    "色字请請交爱愛让讓认認算论論百吃义義科怎元社术術结結六功指思非流每青管夫连連远遠资資队隊跟带"
    "帶花快条條院变變联聯言权權往展该該领領传傳近留红紅治决決周保达達办辦运運半候七必城父强步完深"
    "区區即求品士转轉量空甚众眾技轻輕程告江语語英基满滿式李息写寫呢识識极極令黄德收脸臉钱錢倒未持"
    "取设設始版双雙历歷越史商千片容像找友孩站广廣改议議形委早房音火际際则則首单單据據导導影失拿网"
    "網香似专專石若兵弟谁誰校读讀志飞飛观觀争爭究包组組造落视視喜离離虽雖坐集编編谈談府拉黑且随隨"
    "格尽盡讲講杀殺怕母调調局根准团團段终終乐樂切级級克精哪官示冷吗嗎啊吧呀哥妈媽爸姐妹您谢謝起"
    "嗯哦喂呵哈嘿别別走快来來去吃喝睡门門窗桌椅客厅廳房间間办公室夜晨内外景集场場角色台詞词詞字幕"
)
# C0 controls that never occur in text files (tab, newlines, form feed and escape are allowed).
_CONTROL_BYTES = frozenset(set(range(9)) | set(range(0x0E, 0x1B)) | set(range(0x1C, 0x20)))


def _decode(data: bytes, file: str) -> tuple[str, list[Warning_]]:
    """Decode a script file's bytes, or refuse with what the file is and how to fix it."""
    _refuse_non_text(data, file)
    for bom, codec, name in ((codecs.BOM_UTF32_LE, "utf-32", "UTF-32"),
                             (codecs.BOM_UTF32_BE, "utf-32", "UTF-32"),
                             (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"),
                             (codecs.BOM_UTF16_BE, "utf-16", "UTF-16")):
        if data.startswith(bom):
            try:
                text = data.decode(codec)
            except UnicodeDecodeError as e:
                raise InputError(f"the file starts with a {name} byte-order mark but is not valid {name}",
                                 file=file, line=_byte_line(data, e.start), hint=FIX_EXPORT) from None
            _refuse_binary_text(text, file)
            return text, [_encoding_notice(file, name)]
    data = data.removeprefix(codecs.BOM_UTF8)
    _refuse_binary_bytes(data, file)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        guesses = _guess_cjk(data)
        if guesses:
            name, text = guesses[0]
            return text, [_encoding_notice(file, name)]
        raise InputError(
            f"not UTF-8: byte 0x{data[e.start]:02x} cannot be decoded, and the file is not "
            "UTF-16, GB18030 or Big5 either", file=file, line=_byte_line(data, e.start),
            hint="open it in a text editor and save it as UTF-8 (e.g. from Windows-1252 or Shift-JIS)",
        ) from None
    _refuse_binary_text(text, file)
    return text, []


def _encoding_notice(file: str, name: str) -> Warning_:
    return Warning_(file=file, line=1, message=(
        f"the file is encoded as {name}, not UTF-8; it was converted to Unicode "
        "(save it as UTF-8 to silence this notice)"))


def _guess_cjk(data: bytes) -> list[tuple[str, str]]:
    """Clean GB18030/Big5 decodings that read like Chinese, best first."""
    found: list[tuple[float, str, str]] = []
    for codec, name in (("gb18030", "GB18030"), ("big5", "Big5")):
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            continue
        if any(ord(c) < 32 and c not in "\t\n\r\f" for c in text):
            continue
        han = [c for c in text if "\u3400" <= c <= "\u9fff"]
        if not han:
            continue
        score = sum(c in _COMMON_HAN for c in han) / len(han)
        if score >= 0.2:
            found.append((score, name, text))
    found.sort(key=lambda t: -t[0])
    return [(name, text) for _, name, text in found]


def _byte_line(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _refuse_non_text(data: bytes, file: str) -> None:
    """Name the file type when the user handed us a document that is not plain text."""
    head = data[:4096]
    what = None
    if head.startswith(b"%PDF"):
        what = "a PDF document"
    elif head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        what = "a Word 97-2003 (.doc) or other old Office document"
    elif head.startswith(b"{\\rtf"):
        what = "an RTF document"
    elif head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        what = _describe_zip(data)
    else:
        probe = head.lstrip(codecs.BOM_UTF8).lstrip()
        probe16 = b""
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            probe16 = head.decode("utf-16", errors="ignore").encode("utf-8", errors="ignore")
        for p in (probe, probe16.lstrip()):
            if p.startswith(b"<") and b"<FinalDraft" in p[:2000]:
                what = "a Final Draft file (.fdx, XML `<FinalDraft`)"
            elif p[:200].lower().startswith((b"<!doctype html", b"<html")):
                what = "an HTML page"
    if what:
        raise InputError(f"this is {what}, not a script in plain text", file=file, line=None,
                         hint=FIX_EXPORT)


def _describe_zip(data: bytes) -> str:
    try:
        names = set(zipfile.ZipFile(io.BytesIO(data)).namelist())
    except (zipfile.BadZipFile, ValueError, OSError):
        return "a zip-based file (damaged)"
    if "word/document.xml" in names:
        return "a Word document (.docx, a zip file)"
    if "content.xml" in names:
        return "an OpenDocument file (.odt, a zip file)"
    if any(n.startswith("Index/") for n in names):
        return "an Apple Pages document (a zip file)"
    return "a zip archive"


def _refuse_binary_bytes(data: bytes, file: str) -> None:
    nul = data.find(b"\x00")
    if nul >= 0:
        # UTF-16 without a byte-order mark is NUL-heavy too, and guessing its byte order could
        # garble the script silently: name both possibilities instead.
        raise InputError(
            "binary data (NUL bytes): this is not a text file, or it is UTF-16 without a byte-order mark",
            file=file, line=_byte_line(data, nul), hint=FIX_EXPORT)
    sample = data[:8192]
    if sample and sum(b in _CONTROL_BYTES for b in sample) > max(8, len(sample) // 100):
        raise InputError("binary data (control bytes): this is not a text file", file=file,
                         line=None, hint=FIX_EXPORT)


def _refuse_binary_text(text: str, file: str) -> None:
    nul = text.find("\x00")
    if nul >= 0:
        raise InputError("binary data (NUL characters): this is not a text file", file=file,
                         line=text.count("\n", 0, nul) + 1, hint=FIX_EXPORT)


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

    def warn(self, no: int, message: str) -> None:
        self.warnings.append(Warning_(file=self.file, line=no, message=message))


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

_EXT_RE = re.compile(r"\s*[\(（]([^()（）]*)[\)）]\s*$")


def _split_cue(cue: str) -> tuple[str, str | None]:
    """'EDWARD (V.O.)(CONT'D)' -> ('EDWARD', "V.O., CONT'D")."""
    name = cue.strip()
    exts: list[str] = []
    while True:
        m = _EXT_RE.search(name)
        if not m or m.start() == 0:
            break
        exts.insert(0, m.group(1).strip())
        name = name[: m.start()].rstrip()
    return name, (", ".join(e for e in exts if e) or None)


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


# --- step 3a: Fountain -------------------------------------------------------------------------

_SCENE_PREFIX = re.compile(
    r"^(?P<p>INT\.?\s*/\s*EXT|EXT\.?\s*/\s*INT|I\.?\s*/\s*E|E\.?\s*/\s*I|INT|EXT|EST)"
    r"(?:\.\s*|\s+-\s+|\s+)(?=\S)", re.IGNORECASE)
# Full-width `。` after INT and the Chinese 内景/外景 are not Fountain, but writers use them.
_SCENE_PREFIX_LOOSE = re.compile(
    r"^(?P<p>INT|EXT|EST|INT/EXT|I/E)。\s*(?=\S)|^(?P<zh>内/外景|外/内景|内外景|内景|外景)[.。]?\s*(?=\S)",
    re.IGNORECASE)
_SCENE_NUMBER = re.compile(r"\s*#([\w.\-]+)#\s*$")
_TIME_SPLIT = re.compile(r"\s+[-–—]\s+")
_TIME_SPLIT_CJK = re.compile(r"[-－—–]")
_EN_TIMES = frozenset("DAY NIGHT MORNING EVENING AFTERNOON DUSK DAWN LATER CONTINUOUS SAME "
                      "SUNSET SUNRISE NOON MIDNIGHT".split())
_TITLE_KEY = re.compile(r"^(?P<key>[^\s:：!@#=>.~\[(][^:：]{0,29}?)\s*(?P<colon>[:：])\s*(?P<value>.*)$")
_KNOWN_KEYS = frozenset(
    "title credit author authors source draft date contact copyright notes revision episode season "
    "series writer writers format language font header footer".split()
    + ["draft date", "written by", "episode title", "标题", "署名", "作者", "联系", "版权", "草稿",
       "草稿日期", "剧名", "片名", "编剧", "集数", "日期", "タイトル", "作者名"])
_TITLE_ALIASES = ("title", "标题", "剧名", "片名", "タイトル")
_EPISODE_SECTION = re.compile(
    r"^#+\s*(?:episode|ep\.?)\s*(?P<n>\d+)\s*(?:[:：.\-–—]\s*|\s+|$)(?P<title>.*)$", re.IGNORECASE)
_CN_NUM = "0-9０-９〇零一二两三四五六七八九十百千"
_EPISODE_SECTION_ZH = re.compile(rf"^#+\s*第\s*(?P<n>[{_CN_NUM}]+)\s*集\s*(?:[:：\-–—]\s*|\s+|$)(?P<title>.*)$")
_KNOWN_TRANSITIONS = re.compile(
    r"^(?:FADE IN|FADE OUT|FADE TO BLACK|CUT TO BLACK|淡入|淡出|フェードイン|フェードアウト)\s*[:.：。]?$")
_PAREN_OPEN = ("(", "（")
_PAREN_CLOSE = (")", "）")
_CJK_CUE_STOP = re.compile("[。，、！？；：…,.!?;:\"“”「」『』—\\s]")
_ZH_DIALOGUE_IN_FOUNTAIN = re.compile(r"^[^\s：:]{1,6}：\S")


def _is_heading(s: str) -> re.Match | None:
    return _SCENE_PREFIX.match(s) or _SCENE_PREFIX_LOOSE.match(s)


def _split_heading(heading: str) -> tuple[str, str, str]:
    """'INT. HOUSE - DAY' -> ('INT', 'HOUSE', 'DAY')."""
    interior = ""
    rest = heading
    m = _is_heading(heading)
    if m:
        p = (m.group("p") or "").upper().replace(".", "").replace(" ", "")
        zh = m.groupdict().get("zh")
        if zh:
            interior = {"内景": "INT", "外景": "EXT"}.get(zh, "INT/EXT")
        elif "/" in p:
            interior = "INT/EXT"
        else:
            interior = {"INT": "INT", "EXT": "EXT", "EST": "EXT"}[p]  # establishing shots are exteriors
        rest = heading[m.end():]
    rest = rest.strip()
    parts = _TIME_SPLIT.split(rest)
    if len(parts) > 1:
        return interior, " - ".join(parts[:-1]).strip(), parts[-1].strip()
    if _CJK.search(rest):
        parts = _TIME_SPLIT_CJK.split(rest)
        if len(parts) > 1:
            return interior, "-".join(parts[:-1]).strip(), parts[-1].strip()
    for sep in (",", " "):
        head, _, tail = rest.rpartition(sep)
        if head and tail.strip().upper() in _EN_TIMES:
            return interior, head.strip().rstrip(","), tail.strip()
    return interior, rest, ""


def _cn_number(s: str) -> int:
    """'12', '１２', '十二', '一百零五' -> int."""
    s = unicodedata.normalize("NFKC", s)
    if s.isdigit():
        return int(s)
    digits = {"〇": 0, "零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6,
              "七": 7, "八": 8, "九": 9}
    units = {"十": 10, "百": 100, "千": 1000}
    total, cur = 0, 0
    for ch in s:
        if ch in digits:
            cur = digits[ch]
        elif ch in units:
            total += (cur or 1) * units[ch]
            cur = 0
        elif ch.isdigit():
            cur = cur * 10 + int(ch)
    return total + cur


class _FountainReader(_Reader):
    """Fountain (https://fountain.io/syntax) by paragraphs: runs of non-blank lines."""

    def run(self) -> None:
        body = self._title_page()
        self._count_cjk_cues(body)
        self.last_block: list[Element] = []
        self.nonstandard_heading_warned = False
        para: list[_Line] = []
        for k, line in enumerate(body):
            if _is_blank(line.text) or (line.text == "  " and not (para and k + 1 < len(body)
                                                                    and not _is_blank(body[k + 1].text))):
                if para:
                    self._paragraph(para)
                    para = []
            else:
                para.append(line)
        if para:
            self._paragraph(para)

    # title page ---------------------------------------------------------------------------------

    def _title_page(self) -> list[_Line]:
        lines = self.lines
        i = 0
        while i < len(lines) and _is_blank(lines[i].text):
            i += 1
        if i >= len(lines):
            return []
        m = _TITLE_KEY.match(lines[i].text)
        if not m or _is_heading(lines[i].text.strip()):
            return lines[i:]
        key = m.group("key").strip()
        if key.lower() not in _KNOWN_KEYS and key == key.upper():
            # An unknown all-caps key is more likely `JOHN: hello` than a title page.
            return lines[i:]
        tp: dict[str, list[str]] = {}
        current: list[str] | None = None
        while i < len(lines) and not _is_blank(lines[i].text):
            line = lines[i]
            m = _TITLE_KEY.match(line.text)
            if m and not line.text[:1].isspace():
                if m.group("colon") == "：":
                    self.doc.warn(line.no, f"title page key {m.group('key').strip()!r} uses a full-width `：`; "
                                           "Fountain needs an ASCII colon `:` (other tools will not see this key)")
                current = tp.setdefault(m.group("key").strip().lower(), [])
                if m.group("value").strip():
                    current.append(m.group("value").strip())
            elif current is not None:
                current.append(line.text.strip())
            i += 1
        self.doc.title_page = {k: "\n".join(_clean(v) for v in vs) for k, vs in tp.items()}
        for key in _TITLE_ALIASES:
            if self.doc.title_page.get(key):
                self.doc.title = " ".join(self.doc.title_page[key].split("\n")).strip()
                break
        self.doc.body_start = lines[i].no if i < len(lines) else lines[-1].no + 1
        if not any(not _is_blank(ln.text) for ln in lines[i:]):
            raise InputError("the script has only a title page: no scenes", file=self.file,
                             line=lines[0].no, hint="write the scenes after the title page, "
                                                    "separated from it by a blank line")
        return lines[i:]

    # CJK cues without @ -------------------------------------------------------------------------

    def _cjk_cue_name(self, text: str) -> str | None:
        """The name if this line could be a CJK character cue written without `@`."""
        s = text.strip().rstrip("^").strip()
        if not s or s[0] in "@!.#=>~[(（△" or not _CJK.search(s):
            return None
        name, _ = _split_cue(s)
        if not name or len(name) > 12 or _CJK_CUE_STOP.search(name) or any(c.islower() for c in name):
            return None
        return name

    def _count_cjk_cues(self, body: list[_Line]) -> None:
        self.cjk_counts: dict[str, int] = {}
        prev_blank = True
        for k, line in enumerate(body):
            blank = _is_blank(line.text)
            if prev_blank and not blank and k + 1 < len(body) and not _is_blank(body[k + 1].text):
                name = self._cjk_cue_name(line.text)
                if name:
                    key = normalize_name(name)
                    self.cjk_counts[key] = self.cjk_counts.get(key, 0) + 1
            prev_blank = blank
        self.cjk_warned: set[str] = set()

    # paragraphs ---------------------------------------------------------------------------------

    def _paragraph(self, lines: list[_Line]) -> None:
        while lines:
            first = lines[0]
            s = first.text.strip()
            if re.fullmatch(r"={3,}", s):
                self._element("page_break", s, first.no)
                lines = lines[1:]
            elif s.startswith("#"):
                self._section(first)
                lines = lines[1:]
            elif s.startswith("=") and not s.startswith("=="):
                self._element("synopsis", _clean(s[1:].strip()), first.no)
                lines = lines[1:]
            elif s.startswith(".") and len(s) > 1 and s[1] != ".":
                self._heading(s[1:].strip(), first)
                lines = lines[1:]
            elif (m := _is_heading(s)) and (len(lines) == 1 or m.group(0).strip(" .。") ==
                                            m.group(0).strip(" .。").upper()):
                self._heading(s, first, loose=m.re is _SCENE_PREFIX_LOOSE)
                lines = lines[1:]
            elif s.startswith(">") and s.endswith("<") and len(s) > 1:
                k = 1
                while k < len(lines) and (t := lines[k].text.strip()).startswith(">") and t.endswith("<"):
                    k += 1
                text = "\n".join(_clean(ln.text.strip()[1:-1].strip()) for ln in lines[:k])
                self._element("centered", text, first.no)
                lines = lines[k:]
            elif s.startswith(">"):
                self._element("transition", _clean(s[1:].strip()), first.no)
                lines = lines[1:]
            elif len(lines) == 1 and self._is_transition(first.text):
                self._element("transition", _clean(s), first.no)
                lines = []
            elif s.startswith("~") and all(ln.text.strip().startswith("~") for ln in lines):
                text = "\n".join(_clean(ln.text.strip()[1:].strip()) for ln in lines)
                self._element("lyrics", text, first.no)
                lines = []
            elif s.startswith("!"):
                self._action([_Line(first.no, first.text.replace("!", "", 1))] + lines[1:])
                lines = []
            elif len(lines) > 1 and (cue := self._cue(first) or self._cjk_cue_over_parenthetical(lines)):
                self._dialogue(cue, first, lines[1:])
                lines = []
            else:
                self._warn_cjk_in_action(lines)
                self._action(lines)
                lines = []

    def _element(self, kind: ElementKind, text: str, no: int) -> None:
        if self.emit(kind, text, no) is not None or kind == "page_break":
            self.last_block = []

    @staticmethod
    def _is_transition(raw: str) -> bool:
        s = raw.strip()
        if _KNOWN_TRANSITIONS.match(_clean(s)):
            return True
        # Trailing spaces after `TO:` mean "not a transition" in Fountain; leading ones are fine.
        return raw.endswith("TO:") and s == s.upper() and any(c.isupper() for c in s)

    def _section(self, line: _Line) -> None:
        s = line.text.strip()
        m = _EPISODE_SECTION.match(s) or _EPISODE_SECTION_ZH.match(s)
        if m:
            self.doc.items.append(_EpisodeMark(_cn_number(m.group("n")), _clean(m.group("title").strip()),
                                               line.no, s))
            self.last_block = []
            return
        self._element("section", _clean(s.lstrip("#").strip()), line.no)

    def _heading(self, text: str, line: _Line, loose: bool = False) -> None:
        number = None
        m = _SCENE_NUMBER.search(text)
        if m:
            number, text = m.group(1), text[: m.start()].rstrip()
        text = _clean(text)
        if loose and not self.nonstandard_heading_warned:
            self.nonstandard_heading_warned = True
            self.doc.warn(line.no, f"scene heading {text!r} is not standard Fountain (full-width `。` or "
                                   "内景/外景); it was read as a heading, but write `INT. PLACE - DAY` "
                                   "or force it with a leading `.` so other tools agree")
        interior, location, time = _split_heading(text)
        self.doc.items.append(_Heading(text, line.no, location, time, _INTERIORS[interior], number))
        self.last_block = []

    def _cue(self, line: _Line) -> tuple[str, str, str | None, bool] | None:
        """(cue as written, name, extension, dual) if `line` is a character cue."""
        s = line.text.strip()
        dual = s.endswith("^")
        body = s[:-1].rstrip() if dual else s
        if body.startswith("@"):
            name, ext = _split_cue(body[1:])
            return (body[1:].strip(), name.strip(), ext, dual) if name.strip() else None
        name, ext = _split_cue(body)
        if not name or name.startswith(_PAREN_OPEN):
            return None
        if any(c.isupper() for c in name) and not any(c.islower() for c in name):
            if body.endswith("TO:"):
                return None
            return body, name, ext, dual
        cjk = self._cjk_cue_name(s)
        if cjk is None:
            return None
        key = normalize_name(cjk)
        accepted = key in self.aliases or self.cjk_counts.get(key, 0) >= 2
        if not accepted:
            return None  # unless a parenthetical follows: see _cjk_cue_over_parenthetical
        self._warn_cjk_cue(cjk, line.no, read_as_cue=True)
        return body, name, ext, dual

    def _warn_cjk_cue(self, name: str, no: int, read_as_cue: bool) -> None:
        key = normalize_name(name)
        if key in self.cjk_warned:
            return
        self.cjk_warned.add(key)
        how = "it was read as a cue" if read_as_cue else "it was read as action"
        self.doc.warn(no, f"{name!r} looks like a character cue, but Fountain cues must be upper case "
                          f"and CJK names have no case; {how}. Write it as `@{name}` so every Fountain "
                          "tool reads the dialogue below it")

    def _dialogue(self, cue: tuple[str, str, str | None, bool], cue_line: _Line, rest: list[_Line]) -> None:
        cue_text, name, extension, dual = cue
        block: list[Element] = []
        paren: str | None = None
        paren_no = cue_line.no
        text_lines: list[str] = []
        text_no = 0

        def flush() -> None:
            nonlocal paren, text_lines
            if not text_lines:
                return
            kind: ElementKind = "dialogue"
            if all(t.startswith("~") for t in text_lines if t):
                kind = "lyrics"  # sung by this character
                text_lines = [t[1:].strip() for t in text_lines]
            el = self.dialogue(cue_text, name, extension, "\n".join(text_lines).strip("\n"), text_no,
                               paren, kind=kind, cue_no=cue_line.no)
            if el is not None:
                block.append(el)
            paren, text_lines = None, []

        k = 0
        while k < len(rest):
            line = rest[k]
            t = line.text.strip()
            if t.startswith(_PAREN_OPEN):
                end = k
                while end < len(rest) and not rest[end].text.rstrip().endswith(_PAREN_CLOSE):
                    end += 1
                if end < len(rest):
                    flush()
                    inner = " ".join(ln.text.strip() for ln in rest[k:end + 1])[1:-1].strip()
                    inner = _clean(inner)
                    paren = f"{paren} {inner}" if paren else inner
                    paren_no = line.no
                    k = end + 1
                    continue
            if t and not any(text_lines):
                text_no = line.no
            if t or text_lines:
                text_lines.append(_clean(t))
            k += 1
        flush()
        if paren is not None:
            self.doc.warn(paren_no, f"parenthetical ({paren}) after {name}'s last line has no dialogue "
                                    "after it; it was dropped (parentheticals are acting notes, never spoken)")
        if dual:
            for el in self.last_block:
                el.dual = True
            for el in block:
                el.dual = True
        self.last_block = block

    def _cjk_cue_over_parenthetical(self, lines: list[_Line]) -> tuple[str, str, str | None, bool] | None:
        """A CJK name over a parenthetical is dialogue beyond reasonable doubt, even without `@`."""
        name = self._cjk_cue_name(lines[0].text)
        if name is None or not lines[1].text.strip().startswith(_PAREN_OPEN):
            return None
        self._warn_cjk_cue(name, lines[0].no, read_as_cue=True)
        s = lines[0].text.strip()
        dual = s.endswith("^")
        body = s[:-1].rstrip() if dual else s
        name, extension = _split_cue(body)
        return body, name, extension, dual

    def _warn_cjk_in_action(self, lines: list[_Line]) -> None:
        """Explain CJK lines that a writer probably meant as dialogue but Fountain reads as action."""
        if len(lines) > 1 and (name := self._cjk_cue_name(lines[0].text)):
            self._warn_cjk_cue(name, lines[0].no, read_as_cue=False)
        first = lines[0].text.strip()
        if _ZH_DIALOGUE_IN_FOUNTAIN.match(first):
            who = first.split("：", 1)[0]
            self.doc.warn(lines[0].no, f"{first[:20]!r} looks like Chinese-layout dialogue (角色：台词) with a "
                                       "full-width `：`, which Fountain reads as action; put "
                                       f"`@{who}` on its own line and the words on the next line")

    def _action(self, lines: list[_Line]) -> None:
        texts = [_clean(ln.text.rstrip()) if ln.text != "  " else "" for ln in lines]
        start = next((k for k, t in enumerate(texts) if t.strip()), None)
        if start is not None:
            self._element("action", "\n".join(texts[start:]), lines[start].no)


# --- step 3b: the Chinese short-drama layout ---------------------------------------------------

_ZH_EPISODE = re.compile(rf"^\s*第\s*(?P<n>[{_CN_NUM}]+)\s*集\s*(?:[:：\-–—]\s*|\s+|$)(?P<title>.*)$")
_ZH_SCENE = re.compile(r"^\s*(?P<ep>[0-9０-９]+)\s*[-－—–]\s*(?P<sc>[0-9０-９]+)(?:\s+|[、.．:：]\s*)(?P<rest>\S.*)$")
_ZH_SCENE_ALT = re.compile(rf"^\s*第\s*(?P<sc>[{_CN_NUM}]+)\s*[场場](?:\s+|[、.．:：]\s*)(?P<rest>\S.*)$")
_ZH_TIMES = frozenset("日 夜 晨 昏 早 晚 午 黄昏 黃昏 傍晚 清晨 早晨 早上 晚上 夜晚 深夜 凌晨 白天 上午 中午 "
                      "下午 黎明 日景 夜景".split())
_ZH_PLACES = {"内": "INT", "外": "EXT", "内景": "INT", "外景": "EXT", "内/外": "INT/EXT",
              "外/内": "INT/EXT", "内外": "INT/EXT", "内外景": "INT/EXT",
              # traditional characters (Big5 scripts from Taiwan and Hong Kong)
              "內": "INT", "內景": "INT", "內/外": "INT/EXT", "外/內": "INT/EXT", "內外": "INT/EXT",
              "內外景": "INT/EXT"}
_ZH_DIALOGUE = re.compile(
    r"^(?P<name>[^\s：:（()）△▲【】\[\]，。！？、“”\"']{1,12})"
    r"\s*(?:[（(](?P<ext>[^（()）]{1,12})[）)])?\s*[：:]\s*"
    r"(?:[（(](?P<paren>[^（()）]*)[）)])?\s*(?P<text>.*)$")
_ZH_EXTENSIONS = frozenset("os o.s. vo v.o. 续 cont'd 画外 画外音 内心 内心独白 心声 旁白 电话 回忆".split())
_ZH_PRESENT = re.compile(r"^\s*(?:出场)?(?:人物|角色)\s*[：:]\s*(?P<names>.*)$")
_ZH_META = re.compile(r"^\s*(?:时间|時間|地点|地點|场景|場景|环境|道具|服装|备注|注|梗概|简介|大纲|提要|看点|本集梗概|本集看点|"
                      r"剧情简介|人物小传|人物介绍)\s*[：:]")
_ZH_CAPTION = re.compile(r"^\s*【\s*(?:字幕|屏幕文字|文字)\s*[：:]?\s*(?P<text>.*?)\s*】\s*$")
_ZH_BRACKET = re.compile(r"^\s*【(?P<text>.*)】\s*$")
_ZH_TITLE = re.compile(r"^\s*《(?P<t>[^》]+)》\s*$|^\s*(?:剧名|劇名|片名|标题|標題|[Tt]itle)\s*[：:]\s*(?P<t2>.+)$")
_ZH_END = re.compile(r"^\s*[（(【\[]?\s*(?:完|本集完|全剧终|剧终|未完待续|待续)\s*[）)】\]]?\s*$")
_ZH_NAME_SPLIT = re.compile(r"[、，,/\s]+")


def _zh_place_time(token: str) -> list[tuple[str, str]] | None:
    """'日' -> [('time', '日')]; '日/内' or '夜外' -> both; None if the token is a place name."""
    if token in _ZH_PLACES:
        return [("interior", _ZH_PLACES[token])]
    if token in _ZH_TIMES:
        return [("time", token)]
    parts = token.split("/") if "/" in token else None
    if parts is None:
        # `日内`, `夜外`: a time and a place word written together
        parts = next(([token[:k], token[k:]] for k in range(1, len(token))
                      if {token[:k], token[k:]} <= (_ZH_TIMES | _ZH_PLACES.keys())), None)
    if not parts or not all(p in _ZH_TIMES or p in _ZH_PLACES for p in parts):
        return None
    return [("time", p) if p in _ZH_TIMES else ("interior", _ZH_PLACES[p]) for p in parts]


def _zh_scene(text: str) -> tuple[str, int | None, str, str, str] | None:
    """'1-2 客厅 夜 内' -> ('1-2', 1, '客厅', '夜', 'INT'); None if this is not a scene line."""
    m = _ZH_SCENE.match(text)
    if m:
        episode: int | None = int(unicodedata.normalize("NFKC", m.group("ep")))
        number = f"{episode}-{int(unicodedata.normalize('NFKC', m.group('sc')))}"
    elif m := _ZH_SCENE_ALT.match(text):
        episode, number = None, str(_cn_number(m.group("sc")))
    else:
        return None
    time, interior, place = "", "", []
    for token in re.split(r"[\s,，、\u3000（()）\[\]【】]+", m.group("rest").strip()):
        if not token:
            continue
        found = _zh_place_time(token)
        if found is None:
            place.append(token)
            continue
        for what, value in found:
            if what == "time":
                time = time or value
            else:
                interior = "INT/EXT" if interior and interior != value else value
    if not time and not interior:
        return None
    return number, episode, " ".join(place), time, interior


def _looks_chinese_layout(lines: list[_Line]) -> bool:
    """The Chinese short-drama layout: scene lines like `1-1 日 内 客厅`, `第1集`, `△`, `角色：台词`."""
    scenes = episodes = actions = dialogue = fountain = 0
    for line in lines:
        s = line.text.strip()
        if not s:
            continue
        if _zh_scene(s):
            scenes += 1
        elif _ZH_EPISODE.match(s):
            episodes += 1
        elif s[0] in "△▲":
            actions += 1
        elif _ZH_DIALOGUE.match(s) and _CJK.search(s):
            dialogue += 1
        if _SCENE_PREFIX.match(s) or (s.startswith(".") and len(s) > 1 and s[1] != "."):
            fountain += 1
    if scenes and scenes > fountain:
        return True
    if fountain:
        return False
    return bool(episodes and (actions or dialogue)) or (actions >= 2 and dialogue >= 2)


@dataclass
class _WaitingCue:
    """A `林美：` line whose words come on the next line(s)."""

    cue: str
    name: str
    extension: str | None
    parenthetical: str | None
    no: int


class _ChineseReader(_Reader):
    """The layout Chinese short-drama writers paste: one element per line, no blank-line rules."""

    def run(self) -> None:
        has_marks = any(_ZH_EPISODE.match(ln.text) for ln in self.lines)
        episode: int | None = None
        in_scene = False
        self.waiting: _WaitingCue | None = None
        for line in self.lines:
            s = line.text.strip()
            if not s:
                continue
            if self.waiting and self._words_for(self.waiting, line, s):
                continue
            if m := _ZH_EPISODE.match(s):
                episode, in_scene = _cn_number(m.group("n")), False
                self.doc.items.append(_EpisodeMark(episode, _clean(m.group("title").strip()), line.no, s))
            elif sc := _zh_scene(s):
                number, ep_of_scene, location, time, interior = sc
                if ep_of_scene is not None and not has_marks and ep_of_scene != episode:
                    # No 第N集 lines: the first number of `2-1` starts episode 2.
                    episode = ep_of_scene
                    self.doc.items.append(_EpisodeMark(episode, "", line.no, s))
                elif ep_of_scene is not None and has_marks and ep_of_scene != episode:
                    self.doc.warn(line.no, f"scene {number} is written under episode {episode}; "
                                           f"its first number should be {episode}")
                self.doc.items.append(_Heading(s, line.no, location, time, _INTERIORS[interior], number))
                in_scene = True
            elif in_scene:
                self._scene_line(line, s)
            elif s[0] in "△▲" or (episode is not None and _ZH_DIALOGUE.match(s)
                                   and not _ZH_PRESENT.match(s) and not _ZH_META.match(s)):
                # Before any scene line: the assembler films it as an opening scene and warns.
                self._scene_line(line, s)
            elif (m := _ZH_TITLE.match(s)) and not self.doc.title:
                # Before the first episode: title, outline and character bios, never filmed.
                self.doc.title = (m.group("t") or m.group("t2")).strip()
                self.doc.title_page["title"] = self.doc.title
        if self.waiting:
            self._no_words(self.waiting)

    def _words_for(self, waiting: _WaitingCue, line: _Line, s: str) -> bool:
        """Use `s` as the words of a waiting `林美：` line; False if `s` is something else."""
        if (_ZH_EPISODE.match(s) or _zh_scene(s) or s[0] in "△▲" or _ZH_BRACKET.match(s)
                or _ZH_DIALOGUE.match(s) or _ZH_PRESENT.match(s) or _ZH_META.match(s)):
            self._no_words(waiting)
            return False
        m = re.match(r"^[（(](?P<p>[^（()）]*)[）)]\s*(?P<t>.*)$", s)
        if m:
            inner = _clean(m.group("p").strip())
            waiting.parenthetical = f"{waiting.parenthetical} {inner}" if waiting.parenthetical else inner
            s = m.group("t").strip()
            if not s:
                return True
        self.dialogue(waiting.cue, waiting.name, waiting.extension, _clean(s), line.no,
                      waiting.parenthetical, cue_no=waiting.no)
        self.waiting = None
        return True

    def _no_words(self, waiting: _WaitingCue) -> None:
        self.waiting = None
        self.doc.warn(waiting.no, f"{waiting.cue}： has no words after it; nothing was spoken")

    def _scene_line(self, line: _Line, s: str) -> None:
        if _ZH_END.match(s):
            return
        if s[0] in "△▲":
            self.emit("action", _clean(s[1:].strip()), line.no)
        elif m := _ZH_CAPTION.match(s):
            self.emit("centered", _clean(m.group("text")), line.no)
        elif m := _ZH_BRACKET.match(s):
            self.emit("note", m.group("text").strip(), line.no)  # 【闪回】, 【音效：…】: never spoken
        elif m := _ZH_PRESENT.match(s):
            for name in _ZH_NAME_SPLIT.split(m.group("names").strip()):
                if name:
                    self.register(name, line.no)
            self.emit("note", s, line.no)
        elif _ZH_META.match(s):
            self.emit("note", s, line.no)
        elif (m := _ZH_DIALOGUE.match(s)) and not s.startswith(("http:", "https:")):
            self._dialogue_line(line, s, m)
        else:
            # Unmarked lines inside a scene are action; writers often leave out the △.
            self.emit("action", _clean(s), line.no)

    def _dialogue_line(self, line: _Line, s: str, m: re.Match) -> None:
        name = m.group("name").strip()
        ext = (m.group("ext") or "").strip() or None
        paren = (m.group("paren") or "").strip() or None
        if ext and unicodedata.normalize("NFKC", ext).casefold() not in _ZH_EXTENSIONS:
            # 林美（冷笑）：… carries an acting note, not an extension like （OS） or （续）.
            paren, ext = (f"{ext} {paren}" if paren else ext), None
        text = _clean(m.group("text").strip())
        if name == "字幕":
            self.emit("centered", text, line.no)
            return
        cue = re.split(r"[：:]", s, maxsplit=1)[0].strip()
        paren = _clean(paren) if paren else None
        if not text:
            self.waiting = _WaitingCue(cue, name, ext, paren, line.no)
            return
        self.dialogue(cue, name, ext, text, line.no, paren)


# --- step 4: episodes and scenes ---------------------------------------------------------------

_SPOKEN_OR_SHOWN = {"action": "action", "dialogue": "dialogue", "centered": "on-screen text",
                    "lyrics": "lyrics"}


def _assemble(doc: _Doc, *, first_episode: int | None = 1) -> list[Episode]:
    """Turn the stream into episodes of scenes; refuse what cannot be filmed.

    `first_episode=None` lets the first episode heading carry any number: in a folder, each file
    is one episode and the folder checks the numbering across files.
    """
    episodes: list[Episode] = []
    marks = [it for it in doc.items if isinstance(it, _EpisodeMark)]
    if not marks:
        episodes.append(Episode(number=1, title=doc.title, file=doc.file, line=1))
    seen: dict[int, _EpisodeMark] = {}
    scene: Scene | None = None
    scene_numbers: dict[str, int] = {}
    dropped = False
    headless: InputError | None = None  # the first text filmed without a heading
    for item in doc.items:
        if isinstance(item, _EpisodeMark):
            expected = len(episodes) + 1
            if not episodes and first_episode is None:
                expected = item.number
            elif episodes:
                expected = episodes[-1].number + 1
            if item.number in seen:
                raise InputError(
                    f"episode {item.number} appears twice (first at {doc.file}:{seen[item.number].no})",
                    file=doc.file, line=item.no, text=item.text,
                    hint=f"number the episodes 1, 2, 3 ... in order; this one should be episode {expected}")
            if item.number != expected:
                after = f"follows episode {expected - 1}" if expected > 1 else "is the first episode"
                raise InputError(
                    f"episode {item.number} {after}: episodes must be numbered 1, 2, 3 ... in order, "
                    "without gaps", file=doc.file, line=item.no, text=item.text,
                    hint=f"renumber it as episode {expected}, or move it after episode {item.number - 1}")
            seen[item.number] = item
            episodes.append(Episode(number=item.number, title=item.title, file=doc.file, line=item.no))
            scene = None
            scene_numbers = {}
        elif isinstance(item, _Heading):
            if not episodes:
                raise InputError("scene heading before the first episode heading", file=doc.file,
                                 line=item.no, text=item.text,
                                 hint=f"put `{marks[0].text}` (or `# Episode 1`) above this scene")
            ep = episodes[-1]
            scene = Scene(number=len(ep.scenes) + 1, heading=item.text, location=item.location,
                          time=item.time, interior=item.interior, scene_number=item.scene_number,
                          file=doc.file, line=item.no)
            ep.scenes.append(scene)
            if item.scene_number is not None:
                if item.scene_number in scene_numbers:
                    doc.warn(item.no, f"scene number #{item.scene_number}# is used twice in episode "
                                      f"{ep.number} (first at line {scene_numbers[item.scene_number]}); "
                                      "scenes are still numbered by position")
                else:
                    scene_numbers[item.scene_number] = item.no
        elif scene is not None:
            scene.elements.append(item)
        elif item.kind in _SPOKEN_OR_SHOWN and episodes:
            # Real scripts open on an epigraph or a voice over black before any heading (Big Fish
            # does). Film it as an opening scene without a set place rather than refuse the script.
            ep = episodes[-1]
            what = _SPOKEN_OR_SHOWN[item.kind]
            hint = FIX_SCENE
            if item.kind == "action" and "\n" not in item.text and item.text == item.text.upper() \
                    and re.search(r"\s[-–—]\s", item.text):
                hint = "this looks like a scene heading: start it with `.` to force it, e.g. `." \
                       f"{item.text.strip()[:40]}`"
            where = f" of episode {ep.number}" if marks else ""
            if headless is None:
                headless = InputError(f"{what} before any scene heading{where}: a shot needs a place",
                                      file=doc.file, line=item.line, text=item.text.split("\n")[0],
                                      hint=hint)
            doc.warn(item.line, f"{what} before any scene heading{where}: filmed as an opening scene "
                                f"with no set place; to give it one, {hint}")
            scene = Scene(number=len(ep.scenes) + 1, heading="", location=OPENING_PLACE, time="",
                          file=doc.file, line=item.line)
            ep.scenes.append(scene)
            scene.elements.append(item)
        elif item.kind in _SPOKEN_OR_SHOWN:
            if not dropped:
                doc.warn(item.line, f"{_SPOKEN_OR_SHOWN[item.kind]} before the first episode heading "
                                    f"`{marks[0].text}` is not filmed (a synopsis or cast list belongs "
                                    "there); move it under an episode to film it")
            dropped = True
        # Sections, synopses, notes, transitions and page breaks before the first scene are dropped:
        # they are never spoken or shown.
    if not any(sc.heading for ep in episodes for sc in ep.scenes):
        # Not one heading: this is prose, not a screenplay (or its headings are not recognised).
        if headless is not None:
            raise headless
        raise InputError("no scenes: the script has no scene headings", file=doc.file,
                         line=doc.body_start, hint=FIX_SCENE.replace(" above it", ""))
    for ep in episodes:
        if not ep.scenes:
            raise InputError(f"episode {ep.number} has no scenes", file=doc.file, line=ep.line,
                             hint="write its scenes under the episode heading, or remove the heading")
    return episodes


# --- step 5: the cast --------------------------------------------------------------------------

_CONFUSABLES = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "х": "x", "у": "y", "к": "k", "м": "m",
    "т": "t", "н": "h", "в": "b", "і": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ӏ": "l", "ё": "e",
    "α": "a", "ο": "o", "ι": "i", "ν": "v", "ρ": "p", "τ": "t", "κ": "k", "ε": "e", "υ": "u",
    "0": "o", "1": "l", "|": "l",
})


def _skeleton(key: str) -> str:
    return key.translate(_CONFUSABLES)


def _one_edit_apart(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        # Numbered extras (GUARD 1, GUARD 2) are meant to differ.
        if a[i].isdigit() and b[i].isdigit():
            return False
        return a[i + 1:] == b[i + 1:]
    return a[i:] == b[i + 1:]


def _near_pairs(keys: list[str]) -> set[tuple[int, int]]:
    """Index pairs that may be homoglyphs or one edit apart, without comparing all pairs."""
    buckets: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        skel = _skeleton(key)
        # Two names one edit apart share a name-with-one-letter-deleted (or one is the other).
        variants = {"=" + skel, key} | {key[:k] + key[k + 1:] for k in range(len(key))}
        for v in variants:
            buckets.setdefault(v, []).append(i)
    pairs: set[tuple[int, int]] = set()
    for members in buckets.values():
        if 1 < len(members) < 50:  # a huge bucket is a short common stem, not a typo
            pairs.update((a, b) for n, a in enumerate(members) for b in members[n + 1:])
    return pairs


def _check_cast(cues: list[_Cue], aliases: Mapping[str, str]) -> tuple[dict[str, str], list[Warning_]]:
    """Character ids to display names, plus warnings for one person spelled two ways."""
    characters: dict[str, str] = {}
    spellings: dict[str, dict[str, _Cue]] = {}
    for cue in cues:
        characters.setdefault(cue.char_id, cue.spelling)
        spellings.setdefault(cue.char_id, {}).setdefault(cue.spelling, cue)
    warnings: list[Warning_] = []
    for char_id, variants in spellings.items():
        if len(variants) > 1:
            firsts = list(variants.values())
            listed = ", ".join(f"{c.spelling!r} ({c.file}:{c.no})" for c in firsts)
            warnings.append(Warning_(file=firsts[1].file, line=firsts[1].no, message=(
                f"one character is spelled {len(firsts)} ways: {listed}; they were read as one "
                f"character ({char_id!r}); spell them alike to avoid confusion")))
    firsts = [next(iter(v.values())) for v in spellings.values()]
    keys = [normalize_name(c.spelling) for c in firsts]
    for i, j in sorted(_near_pairs(keys)):
        a, b = firsts[i], firsts[j]
        if keys[i] in aliases and keys[j] in aliases:
            continue  # the cast declares both: the project says they are different people
        if _skeleton(keys[i]) == _skeleton(keys[j]):
            diff = ", ".join(f"{x!r} ({unicodedata.name(x, '?').title()}) vs {y!r} "
                             f"({unicodedata.name(y, '?').title()})"
                             for x, y in zip(keys[i], keys[j]) if x != y)
            why = f"look the same but use different letters: {diff}"
        elif min(len(keys[i]), len(keys[j])) >= 4 and _one_edit_apart(keys[i], keys[j]):
            why = "differ by one letter"
        else:
            continue
        later, earlier = (b, a) if (b.file, b.no) >= (a.file, a.no) else (a, b)
        warnings.append(Warning_(file=later.file, line=later.no, message=(
            f"character names {earlier.spelling!r} ({earlier.file}:{earlier.no}) and "
            f"{later.spelling!r} ({later.file}:{later.no}) {why}: they would get two voices and "
            "two faces; if they are one person, spell them alike (or add an alias in project.yaml)")))
    return characters, warnings


def _build_script(docs: list[_Doc], episodes_per_doc: list[list[Episode]],
                  aliases: Mapping[str, str]) -> Script:
    first = docs[0]
    episodes = [ep for eps in episodes_per_doc for ep in eps]
    characters, cast_warnings = _check_cast([c for d in docs for c in d.cues], aliases)
    warnings = [w for d in docs for w in d.warnings] + cast_warnings
    title = next((d.title for d in docs if d.title), "")
    return Script(title=title, title_page=dict(first.title_page), episodes=episodes,
                  characters=characters, warnings=_dedupe(warnings))


def _dedupe(warnings: Iterable[Warning_]) -> list[Warning_]:
    seen: set[tuple[str, int, str]] = set()
    out = []
    for w in warnings:
        key = (w.file, w.line, w.message)
        if key not in seen:
            seen.add(key)
            out.append(w)
    return out


# --- a folder of episode files -----------------------------------------------------------------

_NAME_PATTERNS = (
    re.compile(r"[Ss]\d+[ ._-]?[Ee](\d+)"),
    re.compile(r"\d+[xX](\d+)"),
    re.compile(r"(?i)ep(?:isode)?[\s._-]*(\d+)"),
    re.compile(rf"第\s*([{_CN_NUM}]+)\s*集"),
)


def _natural_key(name: str) -> list[int | str]:
    return [int(t) if t.isdigit() else t.casefold() for t in re.split(r"(\d+)", name)]


def _number_from_name(stem: str) -> int | None:
    for rx in _NAME_PATTERNS:
        m = rx.search(stem)
        if m:
            return _cn_number(m.group(1))
    nums = re.findall(r"\d+", stem)
    return int(nums[-1]) if nums else None


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


def _episode_number(doc: _Doc, episode: Episode, path: Path) -> int:
    """The title page's `Episode:`, else the file's `# Episode N` heading, else the file name's number."""
    key = doc.title_page.get("episode") or doc.title_page.get("集数")
    if key:
        m = re.search(rf"[{_CN_NUM}]+", key)
        if m and _cn_number(m.group(0)) >= 1:
            return _cn_number(m.group(0))
        raise InputError(f"the title page's `Episode: {key}` has no episode number", file=str(path), line=1,
                         hint="write `Episode: 2`")
    if any(isinstance(it, _EpisodeMark) for it in doc.items):
        return episode.number
    number = _number_from_name(path.stem)
    if number is None or number < 1:
        raise InputError("cannot tell which episode this file is", file=str(path), line=1,
                         hint="add `Episode: N` to its title page, or put the number in the file name (ep02.fountain)")
    return number
