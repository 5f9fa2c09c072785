"""The bundled Noto Sans CJK font: one place that knows where it is and which face is which."""

from __future__ import annotations

import functools
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
    """Characters of `text` the font cannot draw (Pillow reports a zero-size .notdef box)."""
    font = pil_font(48, family)
    missing = []
    notdef = font.getmask("\uffff").getbbox()
    for ch in sorted(set(text)):
        if ch.isspace() or ord(ch) < 0x20:
            continue
        if font.getmask(ch).getbbox() == notdef and ch not in missing:
            missing.append(ch)
    return missing
