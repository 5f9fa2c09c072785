"""Step 5 of reading a script: the cast.

One id per character however it is spelled, a warning for each character spelled several ways,
and a warning for names that are probably one person spelled two ways (homoglyphs, one letter).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping

from stages.parse_script.model import _Cue
from stages.schema import Warning_, normalize_name

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
