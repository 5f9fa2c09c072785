"""ShotList <-> human-editable YAML in build/shotlists/epNN.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import yaml

from stages.core.artifacts import spec_hash, write_text_atomic
from stages.core.errors import InputError
from stages.schema import Shot, ShotList


# libyaml's safe loader where PyYAML was built with it (its wheels are): measured on a 100-episode series,
# reading the 100 shot lists took 0.77 s in pure Python and 0.10 s in C, 55 % of `status` (1.21 s).
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # writing them: 1.7 -> 0.2 s of `plan` on 100 episodes


def editing(path: Path):
    """Held while a shot list is read, changed and written (a render re-planning it, `edit`, `pick`, the
    studio): an edit made meanwhile is never overwritten by a plan read before it."""
    from filelock import FileLock

    (path.parent / ".locks").mkdir(parents=True, exist_ok=True)
    return FileLock(str(path.parent / ".locks" / f"{path.name}.lock"), timeout=60)


def write_shotlist(shotlist: ShotList, path: Path) -> None:
    data = shotlist.model_dump(mode="json", exclude_none=True)
    header = (f"# Shot list for {shotlist.id}, made by `dramaforge plan`/`render`. Edit size, camera,\n"
              "# characters, action or prompt (or set `locked: true`): re-planning keeps your edits.\n"
              "# Spoken lines come from the script; durations follow measured speech.\n")
    text = header + yaml.dump(data, Dumper=DUMPER, allow_unicode=True, sort_keys=False, width=100)
    try:
        if path.read_text(encoding="utf-8") == text:  # `plan` again, nothing changed: no write, no fsync
            return
    except (OSError, UnicodeDecodeError):
        pass
    write_text_atomic(path, text)


def read_shotlist(path: Path) -> ShotList:
    """The shot list on disk; a hand edit that breaks it is refused with the file and the problem."""
    import pydantic

    text = path.read_text(encoding="utf-8")
    try:
        return ShotList.model_validate(_parsed(path, text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputError(f"the shot list is not valid YAML: {getattr(exc, 'problem', exc)}", file=str(path),
                         line=mark.line + 1 if mark else None,
                         hint="fix the edit, or delete the file to re-plan from the script") from exc
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"the shot list has an invalid value at {where}: {first['msg']}", file=str(path),
                         hint="fix the edit (see `dramaforge schema` for allowed values), or delete the "
                              "file to re-plan from the script") from exc


def _parsed(path: Path, text: str):
    """The YAML's data, from a JSON copy beside it (build/shotlists/.parsed/) while the text is the one it
    was parsed from: building the objects is PyYAML's slow part even with libyaml (3 ms a list; JSON 0.2)."""
    import hashlib
    import json

    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    parsed = path.parent / ".parsed" / f"{path.stem}.json"
    try:
        cached = json.loads(parsed.read_text(encoding="utf-8"))
        if cached.get("sha256") == sha:
            return cached["data"]
    except (OSError, ValueError, AttributeError, KeyError):
        pass
    data = yaml.load(text, Loader=LOADER)
    try:  # a copy only of what JSON holds exactly (a YAML date or a number as a key is not copied)
        copy = json.dumps({"sha256": sha, "data": data}, ensure_ascii=False)
        if json.loads(copy)["data"] == data:
            parsed.parent.mkdir(exist_ok=True)
            write_text_atomic(parsed, copy)
    except (OSError, TypeError, ValueError):  # a read-only build folder: read from the YAML every time
        pass
    return data


# --- hand edits that survive re-planning -------------------------------------------------------

EDITABLE = ("size", "camera", "characters", "action", "dialogue", "lipsync")
_SINCE = ("dialogue", "lipsync")  # added later: in the mark only when set, so older marks hold


def _fields_mark(shot: Shot) -> str:
    fields = {k: getattr(shot, k) for k in EDITABLE if k not in _SINCE or getattr(shot, k) is not None}
    if not shot.lines:  # a dialogue shot's length follows its speech; others may be set by hand
        fields["duration_s"] = shot.duration_s
    return spec_hash("shot-fields", fields)[:10]


def _prompt_mark(prompt: str) -> str:
    return spec_hash("shot-prompt", {"prompt": prompt})[:10]


def planned_mark(shot: Shot) -> str:
    return f"{_fields_mark(shot)}/{_prompt_mark(shot.prompt)}"


def apply_edits(plan: ShotList, path: Path, reprompt: Callable[[Shot], str],
                known: set[str] | None = None) -> ShotList:
    """Fold the user's edits in `path` (the shot list on disk) into a fresh plan.

    A shot is kept as edited when it is `locked: true` or its fields differ from what the planner
    made (the `planned` mark written with it). Spoken lines always come from the script. A changed
    prompt is kept verbatim; otherwise the prompt is rebuilt from the edited fields. A shot's `takes` and
    chosen `take` are always kept (they change no picture). `known`: the
    character ids a shot may show (the cast's and the script's); an edit naming another is refused.
    """
    shots = [s.model_copy(update={"planned": planned_mark(s)}) for s in plan.shots]
    if not path.exists():
        return plan.model_copy(update={"shots": shots})
    old = {s.id: s for s in read_shotlist(path).shots}
    out = []
    for s in shots:
        o = old.get(s.id)
        if o is not None and (o.takes, o.take) != (None, None):  # how many takes, and which: always the user's
            s = s.model_copy(update={"takes": o.takes, "take": o.take})
        edited = o is not None and (o.locked or (o.planned is not None and planned_mark(o) != o.planned))
        if not edited:
            out.append(s)
            continue
        strangers = [c for c in o.characters if known is not None and c not in known]
        if strangers:
            raise InputError(f"shot {o.id} shows {', '.join(map(repr, strangers))}, who is not in the cast or the "
                             "script", file=str(path), text=f"characters: {o.characters}",
                             hint=f"use a character id from project.yaml's cast ({', '.join(sorted(known)) or 'none'})"
                                  ", or add them to the cast")
        upd = {k: getattr(o, k) for k in EDITABLE} | {"locked": o.locked}
        if not s.lines:
            upd["duration_s"] = o.duration_s
        kept = s.model_copy(update=upd)
        prompt_edited = o.planned is not None and _prompt_mark(o.prompt) != o.planned.split("/")[-1]
        kept = kept.model_copy(update={"prompt": o.prompt if prompt_edited or o.locked else reprompt(kept)})
        out.append(kept)
    return plan.model_copy(update={"shots": out})
