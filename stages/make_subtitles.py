"""Timed cues -> SRT and ASS files, wrapped by measuring with the real font.

Chinese and Japanese break between any two characters, English at spaces; no line may start
with closing punctuation (kinsoku), and a lone last character is pulled down with a partner.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from stages.artifacts import write_text_atomic
from stages.schema import SubtitleStyle

# Characters that must not begin a line (closing punctuation, small kana, prolonged sound mark).
NO_START = set("，。！？、；：」』）》〉】〕,.!?;:)]}%’”…—～ー々ぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮヵヶ")
# Characters that must not end a line (opening brackets and quotes).
NO_END = set("「『（《〈【〔([{‘“")


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    text: str
    character: str = ""


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


def make_subtitles(cues: list[Cue], style: SubtitleStyle, *, width: int, height: int,
                   out_srt: Path, out_ass: Path) -> None:
    """Write SRT and WebVTT (UTF-8, next to the SRT) and ASS (PlayRes = the video size, so libass
    places text in pixels)."""
    import pysubs2

    from stages.fonts import pil_font

    font = pil_font(style.size_px, style.font)
    max_w = width * style.safe_width
    subs = pysubs2.SSAFile()
    subs.info["PlayResX"] = str(width)
    subs.info["PlayResY"] = str(height)
    subs.info["WrapStyle"] = "2"  # we wrap; libass must not re-wrap
    subs.info["ScaledBorderAndShadow"] = "yes"
    st = pysubs2.SSAStyle(
        fontname=style.font, fontsize=style.size_px, primarycolor=pysubs2.Color(255, 255, 255),
        outlinecolor=pysubs2.Color(0, 0, 0), backcolor=pysubs2.Color(0, 0, 0, 128),
        outline=style.outline_px, shadow=0, alignment=pysubs2.Alignment.BOTTOM_CENTER,
        marginl=int(width * (1 - style.safe_width) / 2), marginr=int(width * (1 - style.safe_width) / 2),
        marginv=style.margin_bottom_px,
    )
    subs.styles["Default"] = st
    prev_end = 0
    for cue in cues:
        start = max(int(round(cue.start_s * 1000)), prev_end)  # never overlap
        end = max(int(round(cue.end_s * 1000)), start + 1)
        prev_end = end
        lines = wrap_text(cue.text, font, max_w)
        subs.events.append(pysubs2.SSAEvent(start=start, end=end, text=r"\N".join(_ass_escape(ln) for ln in lines)))
    write_text_atomic(out_ass, subs.to_string("ass"))
    srt = pysubs2.SSAFile()
    for ev in subs.events:
        srt.events.append(pysubs2.SSAEvent(start=ev.start, end=ev.end, text=ev.text))
    write_text_atomic(out_srt, srt.to_string("srt"))
    write_text_atomic(out_srt.with_suffix(".vtt"), srt.to_string("vtt"))


def _ass_escape(text: str) -> str:
    # Braces would start an override block; backslashes an escape.
    return text.replace("\\", "\uff3c").replace("{", "｛").replace("}", "｝")
