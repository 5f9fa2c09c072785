"""Project folder -> (Project, Script): all validation of user input happens here, once.

Errors name project.yaml's file and line, the key, and the allowed keys or values.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from stages.core.yaml_lines import _line, _line_of, read_yaml
from stages.core.errors import InputError
from stages.core.paths import BuildPaths
from stages.glossary import Translations, read_translations
from stages.schema import Project, Script, Warning_, normalize_name


@dataclass(frozen=True)
class LoadedProject:
    root: Path
    project: Project
    script: Script
    translations: Translations = Translations()  # glossary.yaml and translations/<language>.yaml

    @property
    def build(self) -> Path:
        return BuildPaths.of(self.root).root

    @property
    def warnings(self) -> list[Warning_]:
        return self.script.warnings

    def dubbing(self, languages: list[str] | None) -> "LoadedProject":
        """This project making only the dubs in `languages` (None: every one `languages:` lists)."""
        if languages is None:
            return self
        import dataclasses

        unknown = sorted(set(languages) - set(self.project.languages))
        if unknown:
            raise InputError(f"--language {', '.join(unknown)}: project.yaml does not dub into it",
                             file=str(self.root / "project.yaml"),
                             hint=f"add it to `languages:` (now: {self.project.languages or 'none'})")
        return dataclasses.replace(self, project=self.project.model_copy(update={"languages": list(languages)}))

    @functools.cached_property
    def _yaml(self) -> tuple[str, object]:
        """project.yaml's text and node tree, read once, for messages that name a line."""
        text = (self.root / "project.yaml").read_text(encoding="utf-8-sig")
        return text, yaml.compose(text)

    def line_of(self, *loc) -> int:
        """The line of project.yaml that sets `loc` (`"cast", 2, "voice", "language"`), else its nearest parent's."""
        return _line_of(self._yaml[1], tuple(loc)) or 1

    def text_at(self, line: int) -> str:
        """Line `line` of project.yaml, as written."""
        return _line(self._yaml[0], line)

    def cast_line(self, char_id: str, *loc) -> int:
        """The line of project.yaml that sets `loc` of the cast member `char_id`."""
        index = next((i for i, c in enumerate(self.project.cast) if c.id == char_id), None)
        return self.line_of("cast", index, *loc) if index is not None else self.line_of("cast")


def load_project(root: Path) -> LoadedProject:
    """Read and validate `root/project.yaml` and the script it names."""
    from stages.parse_script import parse_script

    root = Path(root)
    if not root.is_dir():
        raise InputError(f"no project folder at {root}",
                         hint="pass a folder that holds project.yaml (see `dramaforge new`)")
    project = read_project_yaml(root / "project.yaml")
    _within_reach(project, root)
    script_path = root / project.script
    if not script_path.exists():
        raise InputError(f"the script {project.script!r} does not exist", file=str(root / "project.yaml"),
                         hint="set `script:` to your script file (relative to the project folder)")
    aliases = {normalize_name(n): c.id for c in project.cast for n in (c.name, *c.aliases)}
    script = parse_script(script_path, aliases=aliases)
    _within_limits(script)
    _cues_within_reach(script, root)
    script.warnings.extend(_cast_warnings(project, script, root))
    targets = [*project.languages, *([project.subtitles.translation.language] if project.subtitles.translation else [])]
    return LoadedProject(root=root, project=project, script=script, translations=read_translations(root, targets))


def _within_reach(project: Project, root: Path) -> None:
    """Refuse what a project file may not reach (`core.trust`): a key variable it may not name, an
    address with credentials, a file outside the project folder. All of them, with their lines."""
    from stages import project_reach
    from stages.core import trust

    yaml_file = str(root / "project.yaml")
    parsed: list = []

    def line_of(*loc) -> int:
        if not parsed:  # read again only when there is something to point at
            text = (root / "project.yaml").read_text(encoding="utf-8-sig")
            parsed.extend([text, yaml.compose(text)])
        return _line_of(parsed[1], tuple(loc)) or 1

    problems = project_reach.key_problems(project, yaml_file, line_of) + \
        project_reach.host_problems(project, yaml_file, line_of) + \
        project_reach.path_problems(project, root, yaml_file, line_of)
    for p in problems:  # the line as written, its addresses redacted
        p.text = re.sub(r"\w+://[^\s'\"]+", lambda m: trust.redact_url(m.group(0)), _line(parsed[0], p.line))
    if problems:
        first, *more = problems
        raise InputError(first.message, file=first.file, line=first.line, text=first.text, hint=first.hint,
                         more=more)


def _cues_within_reach(script: Script, root: Path) -> None:
    """A script's `[[music: file]]` and `[[sfx: file]]` stay inside the project (`core.trust.confined`)."""
    from stages.core.trust import confined
    from stages.plan_shots import MUSIC_NOTE, SFX_NOTE

    problems = []
    for ep in script.episodes:
        for sc in ep.scenes:
            for el in sc.elements:
                cue = (MUSIC_NOTE.match(el.text) or SFX_NOTE.match(el.text)) if el.kind == "note" else None
                if cue and cue.group("file").lower() != "none":
                    try:
                        confined(cue.group("file"), root, what="the sound file", file=el.file, line=el.line,
                                 text=el.text)
                    except InputError as exc:
                        problems.append(exc)
    if problems:
        first, *more = problems
        raise InputError(first.message, file=first.file, line=first.line, text=first.text, hint=first.hint,
                         more=more)


MAX_LINE_S = 60.0  # a spoken line longer than this is a pasting mistake, not a line: one shot would hold it all


MAX_EPISODE_S = 3600.0  # an episode with more speech than this is a missing episode heading, not an episode
MAX_EPISODES = 1000


def _within_limits(script) -> None:
    """A line no vertical shot can hold, an episode of hours, a series of thousands of episodes: each
    refused where it is written (`check` warns of a long line from 12 s)."""
    from stages.core.text import estimate_speech_s

    if len(script.episodes) > MAX_EPISODES:
        ep = script.episodes[MAX_EPISODES]
        raise InputError(f"{len(script.episodes):,} episodes: more than {MAX_EPISODES} in one script",
                         file=ep.file, line=ep.line, hint="split the series into several projects")
    for ep in script.episodes:
        spoken = 0.0
        for sc in ep.scenes:
            for el in sc.elements:
                if el.kind != "dialogue":
                    continue
                est = estimate_speech_s(el.text)
                if est > MAX_LINE_S:
                    raise InputError(f"a line of about {est:,.0f} s ({len(el.text):,} characters): no shot can hold it",
                                     file=el.file, line=el.line, text=el.text[:80] + ("…" if len(el.text) > 80 else ""),
                                     hint=f"split it into lines of under {MAX_LINE_S:.0f} s (a few sentences each)")
                spoken += est
        if spoken > MAX_EPISODE_S:
            raise InputError(f"episode {ep.number} holds about {spoken / 60:,.0f} minutes of dialogue, over "
                             f"{MAX_EPISODE_S / 60:.0f}: an episode heading is probably missing",
                             file=ep.file, line=ep.line,
                             hint="start each episode with its heading (`# Episode 2` or `第2集`); a short-drama "
                                  "episode is 1-3 minutes")


def read_project_yaml(path: Path) -> Project:
    if not path.exists():
        raise InputError(f"no project.yaml in {path.parent}",
                         hint="create one with `dramaforge new DIR` or copy projects/demo/project.yaml")
    text, node, data = read_yaml(path, "project.yaml")
    if not isinstance(data, dict):
        raise InputError("project.yaml must be a mapping of keys (title, cast, ...)", file=str(path), line=1)
    try:
        return Project.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        line = _line_of(node, loc)
        key = ".".join(str(p) for p in loc) or "(top level)"
        msg = err["msg"]
        hint = None
        if err["type"] == "extra_forbidden":
            model = _model_at(Project, loc[:-1], data)
            allowed = ", ".join(model.model_fields) if model else ""
            msg = f"unknown key {loc[-1]!r}"
            hint = f"allowed keys here: {allowed}"
        elif err["type"] == "literal_error":
            hint = f"allowed values: {err.get('ctx', {}).get('expected', '')}"
        elif err["type"] == "missing":
            hint = f"add `{loc[-1]}:`"
        raise InputError(f"{key}: {msg}", file=str(path), line=line,
                         text=_line(text, line) if line else None, hint=hint) from None


def _model_at(model, loc: tuple, data):
    """The pydantic model class at a location, to list its allowed keys."""
    from typing import get_args

    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        cands = [ann, *get_args(ann)]
        for c in cands:
            inner = get_args(c)
            for x in (c, *inner):
                if isinstance(x, type) and hasattr(x, "model_fields"):
                    model = x
                    break
            else:
                continue
            break
        else:
            return None
    return model


def _cast_warnings(project: Project, script: Script, root: Path) -> list[Warning_]:
    out: list[Warning_] = []
    cast_ids = {c.id for c in project.cast}
    first_seen: dict[str, tuple[str, int]] = {}
    for ep in script.episodes:
        for sc in ep.scenes:
            for el in sc.elements:
                if el.kind == "dialogue" and el.character and el.character not in first_seen:
                    first_seen[el.character] = (el.file, el.line)
    for cid, (file, line) in first_seen.items():
        if cid not in cast_ids:
            out.append(Warning_(file=file, line=line, message=(
                f"character {script.characters.get(cid, cid)!r} is not in project.yaml's cast: "
                "they get a default voice and a look drawn from their name; add them to `cast:`")))
    for c in project.cast:
        if c.reference_image is not None and not (root / c.reference_image).exists():
            out.append(Warning_(file=str(root / "project.yaml"), line=1,
                                message=f"cast {c.id}: reference_image {str(c.reference_image)!r} does not exist"))
    return out
