"""Step 3a of reading a script: the Fountain reader (https://fountain.io/syntax).

`_FountainReader` turns paragraphs (runs of non-blank lines) into the element stream: title page,
sections and `# Episode N` marks, scene headings, dialogue blocks (CJK cues too), transitions,
centered text, lyrics and action.
"""

from __future__ import annotations

import re

from stages.core.errors import InputError
from stages.core.text import cn_number
from stages.parse_script.model import (_CJK, _CN_NUM, _INTERIORS, _SCENE_PREFIX, CONTINUITY, _EpisodeMark, _Heading,
                                       _Line, _Reader, _clean, _is_blank)
from stages.schema import Element, ElementKind, normalize_name

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
    if len(parts) > 2 and CONTINUITY.match(parts[-1].strip()) and parts[-2].strip().upper() in _EN_TIMES:
        parts = parts[:-1]  # DINER - NIGHT - CONTINUOUS: the time is NIGHT
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
            self.doc.items.append(_EpisodeMark(cn_number(m.group("n")), _clean(m.group("title").strip()),
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
            if t == "^":  # a dual-dialogue caret written on a line of its own, not words to say
                dual = True
                k += 1
                continue
            if t.startswith(_PAREN_OPEN):
                end = k
                while end < len(rest) and not rest[end].text.rstrip().endswith(_PAREN_CLOSE):
                    end += 1
                if end < len(rest):
                    flush()
                    inner = " ".join(ln.text.strip() for ln in rest[k:end + 1])[1:-1].strip()
                    inner = _clean(inner)
                    if not paren:  # a second parenthetical joins the first: the element starts at the first
                        paren_no = line.no
                    paren = f"{paren} {inner}" if paren else inner
                    k = end + 1
                    continue
            if t and not any(text_lines):
                text_no = line.no
            if t or text_lines:
                text_lines.append(_clean(t))
            k += 1
        flush()
        if paren is not None:  # `MARY / (stunned)` with no words: a reaction, filmed, never spoken
            if (el := self.reaction(cue_text, name, extension, paren, paren_no, cue_line.no)) is not None:
                block.append(el)
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
