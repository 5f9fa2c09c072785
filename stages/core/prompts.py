"""The one way prompts are made: Jinja2 templates from templates/ with StrictUndefined.

A project may override any template by putting a file of the same name in PROJECT/templates/.
Script text enters templates only as data (quoted through the `quote` filter).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"


@functools.lru_cache(maxsize=16)
def _env(project_templates: str | None, html: bool = False):
    """Prompts are plain text; pages (`html`) are autoescaped, so script text never becomes markup."""
    import jinja2

    dirs = [project_templates] if project_templates else []
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([*dirs, str(TEMPLATES_DIR)]),
        undefined=jinja2.StrictUndefined, autoescape=html, keep_trailing_newline=False,
        trim_blocks=True, lstrip_blocks=True,
    )
    # Script text is data: JSON-quote it so it reads as a quotation, never as an instruction.
    env.filters["quote"] = lambda s: json.dumps(str(s), ensure_ascii=False)
    return env


def render_template(name: str, project_dir: Path | None = None, *, keep_lines: bool = False, **context) -> str:
    """Render templates/<name> (or the project's override) with every variable required.

    Whitespace is collapsed to single spaces, or with `keep_lines` to one line per non-empty line.
    """
    text = _env(_overrides(project_dir)).get_template(name).render(**context)
    if keep_lines:
        return "\n".join(" ".join(line.split()) for line in text.splitlines() if line.strip())
    return " ".join(text.split())


def render_page(name: str, project_dir: Path | None = None, **context) -> str:
    """Render an HTML page template (or the project's override), autoescaped."""
    return _env(_overrides(project_dir), html=True).get_template(name).render(**context)


def _overrides(project_dir: Path | None) -> str | None:
    """PROJECT/templates/, when the project has one."""
    folder = project_dir / "templates" if project_dir is not None else None
    return str(folder) if folder is not None and folder.is_dir() else None


def template_source(name: str, project_dir: Path | None = None) -> str:
    """The text of the template that would be used: part of every prompt's artifact hash."""
    if project_dir is not None and (project_dir / "templates" / name).is_file():
        return (project_dir / "templates" / name).read_text(encoding="utf-8")
    return (TEMPLATES_DIR / name).read_text(encoding="utf-8")
