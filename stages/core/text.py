"""Text as the screen and the clock see it: wrapping measured with the real font (CJK breaks
anywhere, kinsoku, no orphans), how long a line takes to say, and frame-aligned durations.

Chinese and Japanese break between any two characters, English at spaces; no line may start
with closing punctuation (kinsoku), and a lone last character is pulled down with a partner.
"""

from __future__ import annotations

import math
import re
import unicodedata

CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
# Characters that must not begin a line (closing punctuation, small kana, prolonged sound mark).
NO_START = set("，。！？、；：」』）》〉】〕,.!?;:)]}%’”…—～ー々ぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮヵヶ")
# Characters that must not end a line (opening brackets and quotes).
NO_END = set("「『（《〈【〔([{‘“")


def _is_cjk(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F") or "\u3000" <= ch <= "\u9fff"


def _tokens(text: str) -> list[str]:
    """Break opportunities: each CJK character alone; Latin words with their trailing space."""
    out: list[str] = []
    for m in re.finditer(r"[^\s\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]+\s*|\S\s*|\s+", text):
        tok = m.group(0)
        if len(tok.strip()) > 1 and any(_is_cjk(c) for c in tok):
            out.extend(tok)
        else:
            out.append(tok)
    return out


def wrap_text(text: str, font, max_width_px: float) -> list[str]:
    """Greedy wrap measured with `font` (a Pillow FreeType font), with kinsoku and no orphans."""
    text = " ".join(text.split())
    if not text:
        return []
    lines: list[list[str]] = [[]]

    def width(toks: list[str]) -> float:
        return font.getlength("".join(toks).rstrip())

    for tok in _tokens(text):
        if width(tok and [tok]) > max_width_px:  # a word wider than the line: break inside it
            for ch in tok:
                _place(lines, ch, width, max_width_px)
            continue
        _place(lines, tok, width, max_width_px)
    # no orphan: a single CJK character alone on the last line takes one more from above
    if len(lines) > 1 and len("".join(lines[-1]).strip()) == 1 and len(lines[-2]) > 2:
        lines[-1].insert(0, lines[-2].pop())
        _fix_kinsoku(lines, len(lines) - 1)
    return ["".join(ln).strip() for ln in lines if "".join(ln).strip()]


def _place(lines: list[list[str]], tok: str, width, max_w: float) -> None:
    if not lines[-1] or width(lines[-1] + [tok]) <= max_w:
        lines[-1].append(tok)
        return
    lines.append([tok])
    _fix_kinsoku(lines, len(lines) - 1)


def _fix_kinsoku(lines: list[list[str]], i: int) -> None:
    """Line i must not start with closing punctuation; line i-1 must not end with an opener."""
    prev, cur = lines[i - 1], lines[i]
    while cur and cur[0].strip() and cur[0].strip()[0] in NO_START and len(prev) > 1:
        # carry the previous character down with the punctuation (keeps both lines inside the width)
        cur.insert(0, prev.pop())
    while prev and prev[-1].strip() and prev[-1].strip()[-1] in NO_END and len(prev) > 1:
        cur.insert(0, prev.pop())


def estimate_speech_s(text: str) -> float:
    """A reading-speed estimate until real speech is measured (about 15 Latin chars/s, 4.5 CJK/s)."""
    cjk = len(CJK.findall(text))
    latin = len(text) - cjk
    return max(0.6, latin / 15.0 + cjk / 4.5)


def frames_ceil(seconds: float, fps: int) -> float:
    """Round up to a whole frame so shot boundaries land on frames."""
    return math.ceil(round(seconds * fps, 6)) / fps
