"""Subtitle lines -> the same lines in a second language, content-addressed like every artifact.

The cache key is a hash of the lines, both languages and the backend's identity (model, server,
prompt templates), so re-rendering an episode never pays for a translation twice, and a changed
line, model or template gets a new one.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from stages.core.artifacts import spec_hash, write_text_atomic
from stages.schema import Translation

log = logging.getLogger("dramaforge.translate")


def translation_key(lines: list[str], source: str, target: str, identity: dict) -> str:
    return spec_hash("translation", {"lines": list(lines), "source": source, "target": target,
                                     "backend": identity})


def translate_lines(lines: list[str], source: str, options: Translation, context: str, cache_dir: Path,
                    backend=None, project_dir: Path | None = None) -> list[str]:
    """`lines` in `options.language`, same count and order (or the cached answer for exactly these)."""
    if not lines:
        return []
    if backend is None:
        from stages.backends.registry import make_translation_backend

        backend = make_translation_backend(options, project_dir)
    target = options.language
    key = translation_key(lines, source, target, backend.identity())
    path = cache_dir / f"{key}.json"
    cached = _read(path, len(lines))
    if cached is not None:
        return cached
    out = backend.translate(list(lines), source, target, context)
    if len(out) != len(lines) or not all(isinstance(t, str) for t in out):  # a backend bug must not be cached
        raise ValueError(f"translation backend {backend.name!r} returned {len(out)} lines for {len(lines)}")
    write_text_atomic(path, json.dumps({"source": source, "target": target, "lines": list(lines), "translated": out},
                                       ensure_ascii=False, indent=1))
    return out


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
