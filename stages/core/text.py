"""Text as the screen and the clock see it: wrapping measured with the real font, how long a line
takes to say, and frame-aligned durations.

Subtitles are wrapped as a subtitler would: into as few lines as fit, balanced in width; English
breaks at spaces and never leaves one word alone on a line; Chinese breaks between words (the jieba
segmenter, with the cast's names as words) and never leaves a lone character or punctuation on a
line; no line starts with closing punctuation or ends with an opening one (kinsoku); Japanese breaks
between characters with the same rules.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Iterable

CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff]")
# Characters that must not begin a line (closing punctuation, small kana, prolonged sound mark).
NO_START = set("，。！？、；：」』）》〉】〕,.!?;:)]}%’”…—～ー々ぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮヵヶ")
# Characters that must not end a line (opening brackets and quotes).
NO_END = set("「『（《〈【〔([{‘“")
_PUNCT = NO_START | NO_END | set("\"'·・-–")


def _is_cjk(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F") or "\u3000" <= ch <= "\u9fff"


@functools.lru_cache(maxsize=8)
def _segmenter(words: tuple[str, ...]):
    """A jieba tokenizer that knows `words` (the cast's names) as words; loaded once per process."""
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)  # it announces its dictionary on stderr otherwise
    tk = jieba.Tokenizer()
    for w in words:
        tk.add_word(w, freq=100_000)
    return tk


def segment(text: str, words: Iterable[str] = ()) -> list[str]:
    """Chinese text as words (jieba), other scripts untouched; the pieces join back to `text`."""
    names = tuple(sorted({w for w in words if _HAN.search(w)}))
    return list(_segmenter(names).cut(text, HMM=True))


def _tokens(text: str, words: Iterable[str] = ()) -> list[str]:
    """Break opportunities: Chinese words, Japanese characters, Latin and Korean words with their
    trailing space; punctuation glued to the word it belongs to (kinsoku)."""
    raw: list[str] = []
    for m in re.finditer(r"[^\s\u3000-\u9fff\uff00-\uffef]+\s*|[\u3000-\u9fff\uff00-\uffef]+\s*|\s+", text):
        tok = m.group(0)
        if _HAN.search(tok) and not _KANA.search(text):
            raw.extend(segment(tok, words))
        elif any(_is_cjk(c) for c in tok) and not re.search(r"[\uac00-\ud7af]", tok):
            raw.extend(tok)
        else:
            raw.append(tok)
    out: list[str] = []
    glue_next = False
    for tok in raw:
        if not tok:
            continue
        if out and (glue_next or tok.strip() == "" or all(c in NO_START for c in tok.strip())):
            out[-1] += tok  # closing punctuation (and spaces) stay with the word before
        else:
            out.append(tok)
        glue_next = bool(tok.strip()) and all(c in NO_END for c in tok.strip())
    return out


def wrap_text(text: str, font, max_width_px: float, *, words: Iterable[str] = ()) -> list[str]:
    """Wrap `text` into the fewest lines that fit `max_width_px` (measured with `font`, a Pillow
    FreeType font), as even as they can be; no line is a lone word, character or punctuation
    where another break avoids it. `words`: names the Chinese segmenter must keep whole."""
    text = " ".join(text.split())
    if not text:
        return []
    toks: list[str] = []
    for tok in _tokens(text, words):
        if font.getlength(tok.rstrip()) > max_width_px:  # a word wider than the line: break inside it
            toks.extend(_split_long(tok, font, max_width_px))
        else:
            toks.append(tok)
    n = len(toks)

    @functools.cache
    def width(i: int, j: int) -> float:
        return font.getlength("".join(toks[i:j]).strip())

    def lonely(i: int, j: int) -> bool:
        """A line that is one Latin word, one CJK character, or punctuation alone."""
        body = "".join(toks[i:j]).strip()
        letters = [c for c in body if c not in _PUNCT and not c.isspace()]
        if any(_is_cjk(c) and not re.match(r"[\uac00-\ud7af]", c) for c in letters):
            return len(letters) < 2
        return j - i < 2

    for strict in (True, False):
        lines = _balanced(n, width, max_width_px, lonely if strict else None)
        if lines is not None:
            return ["".join(toks[i:j]).strip() for i, j in lines]
    return [text]


def _balanced(n: int, width, max_w: float, lonely) -> list[tuple[int, int]] | None:
    """Breaks of n tokens into the fewest lines that fit, minimising the widest line (then the
    spread); lines that are `lonely` are not allowed. None when no split fits."""
    for lines in range(1, n + 1):
        cost: dict[int, tuple] = {0: ((0.0, 0.0), [])}  # end token -> (widest, squares), breaks
        for _ in range(lines):
            nxt: dict[int, tuple] = {}
            for i, ((wide, sq), brk) in cost.items():
                for j in range(i + 1, n + 1):
                    w = width(i, j)
                    if w > max_w:
                        break
                    if lonely is not None and lines > 1 and lonely(i, j):
                        continue
                    c = (max(wide, w), sq + (max_w - w) ** 2)
                    if j not in nxt or c < nxt[j][0]:
                        nxt[j] = (c, [*brk, (i, j)])
            cost = nxt
        if n in cost:
            return cost[n][1]
    return None


def _split_long(tok: str, font, max_w: float) -> list[str]:
    """A word wider than a whole line, cut into pieces that fit."""
    out, cur = [], ""
    for ch in tok:
        if cur and font.getlength((cur + ch).strip()) > max_w:
            out.append(cur)
            cur = ""
        cur += ch
    return out + ([cur] if cur else [])


def estimate_speech_s(text: str) -> float:
    """A reading-speed estimate until real speech is measured (about 15 Latin chars/s, 4.5 CJK/s)."""
    cjk = len(CJK.findall(text))
    latin = len(text) - cjk
    return max(0.6, latin / 15.0 + cjk / 4.5)


def frames_ceil(seconds: float, fps: int) -> float:
    """Round up to a whole frame so shot boundaries land on frames."""
    return math.ceil(round(seconds * fps, 6)) / fps


def cn_number(s: str) -> int:
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


def contains(text: str, term: str) -> bool:
    """`term` in `text`, ignoring case and full/half width (a name is the same name in either)."""
    import unicodedata

    def norm(s: str) -> str:
        return unicodedata.normalize("NFKC", s).casefold()

    return norm(term) in norm(text)
