"""Step 3b of reading a script: the Chinese short-drama layout.

`第1集` episode lines, `1-1 日 内 客厅` scene lines, `△` action and `角色：台词` dialogue, one element
per line; `_looks_chinese_layout` tells this layout from Fountain, `_ChineseReader` reads it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from stages.core.text import cn_number
from stages.parse_script.model import (_CJK, _CN_NUM, _INTERIORS, _SCENE_PREFIX, _EpisodeMark, _Heading, _Line,
                                       _Reader, _clean)

_ZH_EPISODE = re.compile(rf"^\s*第\s*(?P<n>[{_CN_NUM}]+)\s*集\s*(?:[:：\-–—]\s*|\s+|$)(?P<title>.*)$")
_ZH_SCENE = re.compile(r"^\s*(?P<ep>[0-9０-９]+)\s*[-－—–]\s*(?P<sc>[0-9０-９]+)(?:\s+|[、.．:：]\s*)(?P<rest>\S.*)$")
_ZH_SCENE_ALT = re.compile(rf"^\s*第\s*(?P<sc>[{_CN_NUM}]+)\s*[场場](?:\s+|[、.．:：]\s*)(?P<rest>\S.*)$")
_ZH_TIMES = frozenset("日 夜 晨 昏 早 晚 午 黄昏 黃昏 傍晚 清晨 早晨 早上 晚上 夜晚 深夜 凌晨 白天 上午 中午 "
                      "下午 黎明 日景 夜景 同上 接上 同前 承上 连续".split())  # 同上: the scene before's time
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
_ZH_LISTED = re.compile(r"(?P<name>[^、，,/\s（()）]+)\s*(?:[（(](?P<intro>[^（()）]*)[）)])?")


def listed_names(text: str) -> list[tuple[str, str | None]] | None:
    """`人物：林晓（25岁，短发）、王总` -> [('林晓', '25岁，短发'), ('王总', None)]; None if not such a line."""
    m = _ZH_PRESENT.match(text)
    if not m:
        return None
    return [(g.group("name"), (g.group("intro") or "").strip() or None)
            for g in _ZH_LISTED.finditer(m.group("names").strip())]


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
        episode, number = None, str(cn_number(m.group("sc")))
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
    paren_no: int | None = None  # the line its first acting note is on, when that is not the cue's


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
                episode, in_scene = cn_number(m.group("n")), False
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
            else:  # an outline or a bio (`林晓：女，25岁`): kept as front matter, which casting reads
                self.emit("synopsis", _clean(s), line.no)
        if self.waiting:
            self._no_words(self.waiting)

    def _words_for(self, waiting: _WaitingCue, line: _Line, s: str) -> bool:
        """Use `s` as the words of a waiting `林美：` line; False if `s` is something else."""
        if (_ZH_EPISODE.match(s) or _zh_scene(s) or s[0] in "△▲" or _ZH_BRACKET.match(s) or _ZH_END.match(s)
                or _ZH_DIALOGUE.match(s) or _ZH_PRESENT.match(s) or _ZH_META.match(s)):
            self._no_words(waiting)
            return False
        m = re.match(r"^[（(](?P<p>[^（()）]*)[）)]\s*(?P<t>.*)$", s)
        if m:
            inner = _clean(m.group("p").strip())
            if not waiting.parenthetical:
                waiting.paren_no = line.no
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
        if waiting.parenthetical:  # 林晓：（怔住） with no words: a wordless reaction shot, where its note is
            self.reaction(waiting.cue, waiting.name, waiting.extension, waiting.parenthetical,
                          waiting.paren_no or waiting.no, waiting.no)
            return
        self.doc.warn(waiting.no, f"{waiting.cue}： has no words after it; nothing was spoken")

    def _scene_line(self, line: _Line, s: str) -> None:
        if _ZH_END.match(s):  # （完）, 未完待续: the episode's own end card if it closes the episode
            self.emit("centered", s.strip().strip("（()）【】[] "), line.no)
            return
        if s[0] in "△▲":
            self.emit("action", _clean(s[1:].strip()), line.no)
        elif m := _ZH_CAPTION.match(s):
            self.emit("centered", _clean(m.group("text")), line.no)
        elif m := _ZH_BRACKET.match(s):
            self.emit("note", m.group("text").strip(), line.no)  # 【闪回】, 【音效：…】: never spoken
        elif (listed := listed_names(s)) is not None:
            for name, _ in listed:
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
