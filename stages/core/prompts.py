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
    """Prompts are plain text; pages (`html`) are autoescaped, so script text never becomes markup.

    Sandboxed: a project's own templates come with a project folder from anyone, and a plain Jinja
    environment lets a template reach Python (`cycler.__init__.__globals__.os`); a template file that
    is a link out of its folder is refused (it would put that file's text into a prompt)."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Confined(jinja2.FileSystemLoader):
        def get_source(self, environment, template):
            from stages.core.errors import InputError

            source, filename, uptodate = super().get_source(environment, template)
            real = Path(filename).resolve()
            if not any(real.is_relative_to(Path(d).resolve()) for d in self.searchpath):
                raise InputError(f"the template {filename} links to {real}, outside its templates folder",
                                 file=filename, hint="copy the template's text into the file instead of linking it")
            return source, filename, uptodate

    dirs = [project_templates] if project_templates else []
    env = ImmutableSandboxedEnvironment(
        loader=Confined([*dirs, str(TEMPLATES_DIR)]),
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
    text = _render(name, _overrides(project_dir), False, context)
    if keep_lines:
        return "\n".join(" ".join(line.split()) for line in text.splitlines() if line.strip())
    return " ".join(text.split())


def render_page(name: str, project_dir: Path | None = None, **context) -> str:
    """Render an HTML page template (or the project's override), autoescaped."""
    return _render(name, _overrides(project_dir), True, context)


def _render(name: str, overrides: str | None, html: bool, context: dict) -> str:
    """A project's own template that fails (a typo, an unknown variable, a reach outside the sandbox)
    is the user's input: refused naming its file; a built-in one that fails is a bug."""
    import jinja2

    try:
        return _env(overrides, html=html).get_template(name).render(**context)
    except jinja2.TemplateError as exc:
        mine = Path(overrides) / name if overrides else None
        if mine is None or not mine.is_file():
            raise
        from stages.core.errors import InputError

        raise InputError(f"the project's template {name} cannot be used: {exc}", file=str(mine),
                         line=getattr(exc, "lineno", None),
                         hint=f"fix it, or delete it to use the built-in {name} (templates/{name} in dramaforge)") \
            from None


def _overrides(project_dir: Path | None) -> str | None:
    """PROJECT/templates/, when the project has one."""
    folder = project_dir / "templates" if project_dir is not None else None
    return str(folder) if folder is not None and folder.is_dir() else None


def template_source(name: str, project_dir: Path | None = None) -> str:
    """The text of the template that would be used: part of every prompt's artifact hash."""
    if project_dir is not None and (project_dir / "templates" / name).is_file():
        return (project_dir / "templates" / name).read_text(encoding="utf-8")
    return (TEMPLATES_DIR / name).read_text(encoding="utf-8")
