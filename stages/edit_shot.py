"""A shot's prompt, size, camera or lock changed in its shot list, exactly as a hand edit would be
(`dramaforge edit`, the studio): re-planning keeps it (`write_shotlist.apply_edits`), and the next render
makes the shot anew under its new key."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from stages.core.errors import InputError
from stages.core.paths import BuildPaths
from stages.load_project import LoadedProject
from stages.pick_take import episode_of
from stages.schema import Shot
from stages.write_shotlist import editing, read_shotlist, write_shotlist

FIELDS = ("prompt", "size", "camera", "locked")


def edit_shot(lp: LoadedProject, shot: str, **changes) -> Path:
    """Write `changes` (any of FIELDS; None: left as it is) into `shot`'s shot list; returns its path.
    A value the shot list would refuse is refused here, naming the field and what it takes."""
    changes = {k: v for k, v in changes.items() if v is not None}
    unknown = sorted(set(changes) - set(FIELDS))
    if unknown:
        raise InputError(f"cannot edit {', '.join(unknown)} of a shot", hint=f"editable here: {', '.join(FIELDS)}")
    episode = episode_of(lp, shot)
    path = BuildPaths(lp.build).shotlist(f"ep{episode:02d}")
    if not path.exists():
        raise InputError(f"episode {episode} has no shot list yet", file=str(path),
                         hint=f"`dramaforge plan {lp.root} -e {episode}` makes it")
    with editing(path):
        shotlist = read_shotlist(path)
        found = next((s for s in shotlist.shots if s.id == shot), None)
        if found is None:
            raise InputError(f"no shot {shot} in {path.name}", file=str(path), text=shot,
                             hint=f"its shots: {', '.join(s.id for s in shotlist.shots)}")
        try:
            edited = Shot.model_validate({**found.model_dump(), **changes})
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(x) for x in err["loc"])
            raise InputError(f"shot {shot}: {field}: {err['msg']}", file=str(path),
                             text=f"{field}: {changes.get(field)}",
                             hint="see `dramaforge schema` for what each field takes") from None
        write_shotlist(shotlist.model_copy(update={"shots": [edited if s.id == shot else s for s in shotlist.shots]}),
                       path)
    return path
