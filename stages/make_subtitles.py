"""Timed cues -> SRT and ASS files, wrapped by measuring with the real font, placed clear of faces.

Lines break as a subtitler would (`core.text.wrap_text`: fewest lines, balanced, no lone word or
character, Chinese between words). A cue sits in the band above `margin_bottom_px`; where the video
backend says a face is there while it shows (the animatic does), it moves up to the lowest place in
the safe area (`margin_top_px` to `margin_bottom_px`, `safe_width` wide) that covers no face.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from stages.core.artifacts import write_text_atomic
from stages.core.text import wrap_text
from stages.schema import SubtitleStyle

@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    text: str
    character: str = ""


def make_subtitles(cues: list[Cue], style: SubtitleStyle, *, width: int, height: int, out_srt: Path, out_ass: Path,
                   cards: list[tuple[float, float, str]] = (), translated: list[str] | None = None,
                   out_vtt: Path | None = None, out_translated: tuple[Path, Path] | None = None,
                   faces: list = (), names: list[str] = (), languages: tuple[str, str] | None = None) -> None:
    """Write SRT and WebVTT (UTF-8; the WebVTT beside the SRT unless `out_vtt`) and ASS (PlayRes =
    the video size, so libass places text in pixels).

    `cards` (start, end, text) are on-screen text: burned in mid-frame, larger, never in the SRT.
    `translated` (one per cue) is a second language: under each cue (`second_line`) or only in
    its own `epNN.<lang>.srt/.vtt` (`separate`; or `out_translated`); both modes write the separate files.
    `faces` (start, end, [box, ...]) are where the picture shows faces; `names` are words the Chinese
    line breaker keeps whole. `languages`: (the cues', the translation's); when `style.bilingual` names
    both, both are burned in that order, each in its own ASS style (`L-<language>`) and wrapped by its
    own rules, and each has its own SRT/WebVTT.
    """
    import pysubs2

    from stages.core.fonts import pil_font

    # Sizes are given for a 1080x1920 frame and scale with the output (a 720p preview, a square cut).
    k, kv = width / 1080, height / 1920
    size_px = max(8, round(style.size_px * k))
    font = pil_font(size_px, style.font)
    small = pil_font(int(size_px * 0.75), style.font)
    max_w = width * style.safe_width
    margin = int(width * (1 - style.safe_width) / 2)
    subs = pysubs2.SSAFile()
    subs.info["PlayResX"] = str(width)
    subs.info["PlayResY"] = str(height)
    subs.info["WrapStyle"] = "2"  # we wrap; libass must not re-wrap
    subs.info["ScaledBorderAndShadow"] = "yes"
    common = dict(fontname=style.font, primarycolor=_color(style.color), outlinecolor=_color(style.outline_color),
                  backcolor=pysubs2.Color(0, 0, 0, 128), outline=round(style.outline_px * k, 1), shadow=0,
                  marginl=margin, marginr=margin)
    subs.styles["Default"] = pysubs2.SSAStyle(fontsize=size_px, alignment=pysubs2.Alignment.BOTTOM_CENTER,
                                              marginv=round(style.margin_bottom_px * kv), **common)
    card_px = int(size_px * 1.25)
    subs.styles["Card"] = pysubs2.SSAStyle(fontsize=card_px, alignment=pysubs2.Alignment.MIDDLE_CENTER,
                                           marginv=0, bold=True, **common)
    if translated is not None and len(translated) != len(cues):
        raise ValueError(f"{len(translated)} translations for {len(cues)} subtitle cues")
    pair = languages if translated is not None and languages and style.bilingual and \
        set(style.bilingual) == set(languages) else None
    second = translated is not None and style.translation is not None and style.translation.mode == "second_line"
    if pair:  # the first language of `bilingual` above, full size; the other under it, smaller
        for lang, px in zip(style.bilingual, (size_px, int(size_px * 0.75))):
            subs.styles[f"L-{lang}"] = pysubs2.SSAStyle(fontsize=px, alignment=pysubs2.Alignment.BOTTOM_CENTER,
                                                        marginv=round(style.margin_bottom_px * kv), **common)
    own_srt = pysubs2.SSAFile()
    # the safe area: between the platform's top bar and the caption band, inside safe_width
    top, floor = style.margin_top_px * kv, height - style.margin_bottom_px * kv
    line_h = size_px * LINE_HEIGHT + 2 * style.outline_px * k
    prev_end = 0
    timed = []
    for i, cue in enumerate(cues):
        start = max(int(round(cue.start_s * 1000)), prev_end)  # never overlap
        end = max(int(round(cue.end_s * 1000)), start + 1)
        prev_end = end
        timed.append((start, end))
        own = clean_markup(cue.text)
        if pair:
            own_srt.events.append(pysubs2.SSAEvent(start=start, end=end, text=own))
            if style.bilingual[0] != pair[0]:  # the translation goes above
                own, translated_i = translated[i], own
            else:
                translated_i = translated[i]
        wrapped = wrap_text(own, font, max_w, words=names)
        text = r"\N".join(_ass_escape(ln) for ln in wrapped)
        box_w = max((font.getlength(ln) for ln in wrapped), default=0.0)
        box_h = len(wrapped) * line_h
        if pair and translated_i.strip():
            more = wrap_text(translated_i, small, max_w, words=names)
            text += r"\N{\rL-%s}" % style.bilingual[1] + r"\N".join(_ass_escape(ln) for ln in more)
            box_w = max([box_w, *(small.getlength(ln) for ln in more)])
            box_h += len(more) * line_h * 0.75
        elif second and translated[i].strip():
            more = wrap_text(translated[i], small, max_w)
            text += r"\N{\fs%d}" % int(size_px * 0.75) + r"\N".join(_ass_escape(ln) for ln in more)
            box_w = max([box_w, *(small.getlength(ln) for ln in more)])
            box_h += len(more) * line_h * 0.75
        bottom = place(start / 1000, end / 1000, box_w, box_h, faces, width=width, top=top, floor=floor)
        if bottom != floor:  # moved off a face: pinned where it is clear
            text = r"{\an2\pos(%d,%d)}" % (width // 2, round(bottom)) + text
        subs.events.append(pysubs2.SSAEvent(start=start, end=end, text=text,
                                            style=f"L-{style.bilingual[0]}" if pair else "Default"))
    srt = own_srt if pair else pysubs2.SSAFile()
    for ev in [] if pair else subs.events:
        srt.events.append(pysubs2.SSAEvent(start=ev.start, end=ev.end, text=ev.plaintext.replace("\n", r"\N")))
    card_font = pil_font(card_px, style.font)
    for start_s, end_s, text in cards:
        lines = [w for para in text.splitlines() for w in wrap_text(para, card_font, max_w)]
        subs.events.append(pysubs2.SSAEvent(start=int(round(start_s * 1000)), end=int(round(end_s * 1000)),
                                            style="Card", text=r"\N".join(_ass_escape(ln) for ln in lines)))
    write_text_atomic(out_ass, subs.to_string("ass"))
    write_text_atomic(out_srt, srt.to_string("srt"))
    write_text_atomic(out_vtt or out_srt.with_suffix(".vtt"), webvtt(srt))
    if translated is not None and (style.translation is not None or pair):
        other = pysubs2.SSAFile()
        for (start, end), text in zip(timed, translated):
            if text.strip():
                other.events.append(pysubs2.SSAEvent(start=start, end=end, text=r"\N".join(
                    _ass_escape(ln) for ln in wrap_text(text, small, max_w))))
        base, lang = out_srt.with_suffix(""), pair[1] if pair else style.translation.language
        srt_path, vtt_path = out_translated or (base.with_name(f"{base.name}.{lang}.srt"),
                                                base.with_name(f"{base.name}.{lang}.vtt"))
        write_text_atomic(srt_path, other.to_string("srt"))
        write_text_atomic(vtt_path, webvtt(other))


def webvtt(subs) -> str:
    """WebVTT of `subs` (pysubs2 events) with the cue text escaped as the format requires: `&`, `<` and
    `>` as entities (a line saying `<b>`, `&` or `-->` would otherwise be markup or break the cue)."""
    out = ["WEBVTT", ""]
    for i, ev in enumerate(subs.events, 1):
        text = ev.plaintext.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        lines = [ln for ln in text.split("\n") if ln.strip()] or [" "]
        out += [str(i), f"{_vtt_time(ev.start)} --> {_vtt_time(ev.end)}", *lines, ""]
    return "\n".join(out) + "\n"


def _vtt_time(ms: int) -> str:
    h, rest = divmod(max(0, int(ms)), 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


LAYOUT = 2  # how cues are wrapped and placed: part of every cut's key (2: balanced, Chinese by words, off faces)
LINE_HEIGHT = 1.0  # libass scales a font so its ascent and descent span `fontsize`: a line is one size tall
_PAD = 0.25  # of a line: air kept between a subtitle and a face


def place(start_s: float, end_s: float, box_w: float, box_h: float, faces, *, width: int, top: float,
          floor: float) -> float:
    """The bottom edge (y, pixels) of a subtitle block `box_w` x `box_h`, centred: at `floor` unless a
    face shown between `start_s` and `end_s` is there, else the lowest clear place between `top` and
    `floor`; if none is clear, `floor` (the face and the words share the frame)."""
    pad = _PAD * box_h
    x0, x1 = (width - box_w) / 2 - pad, (width + box_w) / 2 + pad
    blocked = sorted((y0, y1) for a, b, boxes in faces if a < end_s and b > start_s
                     for fx0, y0, fx1, y1 in boxes if fx0 < x1 and fx1 > x0)
    bottom = floor
    for y0, y1 in sorted(blocked, key=lambda r: -r[1]):  # from the lowest face up
        if bottom - box_h - pad < y1 and bottom + pad > y0:  # the block overlaps this face: go above it
            bottom = y0 - pad
    if bottom - box_h < top:
        return floor
    return bottom


_MARKUP = re.compile(r"(?<!\w)[*_]{1,3}(?=\S)|(?<=\S)[*_]{1,3}(?!\w)|^\s*[\^~>!@]\s*|\s*[\^<]\s*$|\[\[.*?\]\]")


def clean_markup(text: str) -> str:
    """Whatever Fountain markup survived (a caret, emphasis stars, a forced-element mark, a note) never
    reaches a subtitle."""
    return " ".join(_MARKUP.sub("", line).strip() for line in text.split("\n") if _MARKUP.sub("", line).strip())


def _color(hex_rgb: str):
    import pysubs2

    return pysubs2.Color(int(hex_rgb[1:3], 16), int(hex_rgb[3:5], 16), int(hex_rgb[5:7], 16))


def _ass_escape(text: str) -> str:
    # Braces would start an override block; backslashes an escape.
    return text.replace("\\", "\uff3c").replace("{", "｛").replace("}", "｝")
