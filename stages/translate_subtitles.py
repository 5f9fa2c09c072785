"""Subtitle lines -> the same lines in a second language, content-addressed like every artifact.

The cache key is a hash of the lines, both languages and the backend's identity (model, server,
prompt templates), so re-rendering an episode never pays for a translation twice, and a changed
line, model or template gets a new one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from stages.backends.base import TranslationBackend
from stages.core.artifacts import write_text_atomic
from stages.units import TranslationUnit

log = logging.getLogger("dramaforge.translate")


def translate_subtitles(unit: TranslationUnit, backend: TranslationBackend, context: str,
                        turn: Callable[[], AbstractContextManager] = nullcontext) -> list[str]:
    """The unit's lines in its target language, same count and order (or the cached answer for exactly
    these lines at its content-addressed path). The server is asked within `turn()` (its limits)."""
    lines = list(unit.lines)
    if not lines:
        return []
    cached = _read(unit.path, len(lines))
    if cached is not None:
        return cached
    with turn():
        out = backend.translate(lines, unit.source, unit.target, context, unit.glossary) if unit.glossary else \
            backend.translate(lines, unit.source, unit.target, context)
    if len(out) != len(lines) or not all(isinstance(t, str) for t in out):  # a backend bug must not be cached
        raise ValueError(f"translation backend {backend.name!r} returned {len(out)} lines for {len(lines)}")
    write_text_atomic(unit.path, json.dumps({"source": unit.source, "target": unit.target, "lines": lines,
                                             "translated": out}, ensure_ascii=False, indent=1))
    return out


def cached_translation(unit: TranslationUnit) -> list[str] | None:
    """The unit's translation if it is made (an empty one has nothing to make), else None."""
    return [] if not unit.lines else _read(unit.path, len(unit.lines))


def _read(path: Path, count: int) -> list[str] | None:
    """The cached translation, or None when missing or unusable (then it is simply made again)."""
    if not path.exists():
        return None
    try:
        out = json.loads(path.read_text(encoding="utf-8"))["translated"]
        if isinstance(out, list) and len(out) == count and all(isinstance(t, str) for t in out):
            return out
        reason = f"{len(out) if isinstance(out, list) else 'no'} lines for {count}"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        reason = str(exc)
    log.warning("re-translating %s: cached file unusable (%s)", path.name, reason)
    return None
