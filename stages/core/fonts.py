"""The bundled Noto Sans CJK font: one place that knows where it is and which face is which."""

from __future__ import annotations

import functools
import re
from pathlib import Path

_FACES = {"Noto Sans CJK JP": 0, "Noto Sans CJK KR": 1, "Noto Sans CJK SC": 2,
          "Noto Sans CJK TC": 3, "Noto Sans CJK HK": 4}
DEFAULT_FAMILY = "Noto Sans CJK SC"


def font_file() -> Path:
    import noto_cjk_sans_otc

    return Path(noto_cjk_sans_otc.FONT_PATH)


def face_index(family: str) -> int:
    """Which face of the bundled collection is `family` (an unknown name: the default's)."""
    return _FACES.get(family, _FACES[DEFAULT_FAMILY])


def fonts_dir() -> Path:
    """The folder to hand libass (`subtitles=...:fontsdir=`): it holds only the bundled font."""
    return font_file().parent


@functools.lru_cache(maxsize=64)
def pil_font(size_px: int, family: str = DEFAULT_FAMILY):
    from PIL import ImageFont

    if family not in _FACES:
        from stages.core.errors import InputError

        raise InputError(f"font {family!r} is not bundled", hint=f"use one of: {', '.join(_FACES)}")
    return ImageFont.truetype(str(font_file()), size_px, index=_FACES[family])


def missing_glyphs(text: str, family: str = DEFAULT_FAMILY) -> list[str]:
    """Characters of `text` the font has no glyph for (its cmap), in order of first use: a
    subtitle would show each as an empty box."""
    if _COMMON.fullmatch(text):  # what every bundled face draws: no need to read the font's tables
        return []
    have = _cmap(family)
    out: list[str] = []
    for ch in text:
        if not ch.isspace() and ord(ch) >= 0x20 and ord(ch) not in have and ch not in out \
                and not 0xFE00 <= ord(ch) <= 0xFE0F and ch not in "\u200b\u200c\u200d\u2060\ufeff":
            out.append(ch)  # (variation selectors and zero-width joiners draw nothing anyway)
    return out


# ASCII, Latin-1, general punctuation, CJK symbols, kana, CJK ideographs, Hangul, full-width forms
_COMMON = re.compile("[\\s\u0020-\u007e\u00a0-\u00ff\u2010-\u2016\u2018-\u201a\u201c-\u201e\u2020-\u2022"
                     "\u2025-\u2026\u3000-\u303f\u3041-\u3096\u3099-\u30ff\u4e00-\u9fef\uac00-\ud7a3"
                     "\uff01-\uff5e]*")  # (ranges every bundled face draws, read from their cmaps)


@functools.lru_cache(maxsize=8)
def _cmap(family: str) -> frozenset[int]:
    from fontTools.ttLib import TTCollection

    with TTCollection(str(font_file()), lazy=True) as fonts:
        return frozenset(fonts[face_index(family)]["cmap"].getBestCmap())
