"""`dramaforge takes`, `dramaforge pick` and `dramaforge edit`: a shot's takes, the one cut, its shot list's
fields (`flows/cli.py` adds them to the command line; the studio does the same through them)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer

from flows.console import err_console, esc
from stages.core.errors import InputError

ProjectArg = Annotated[Path, typer.Argument(help="project folder (holds project.yaml)", show_default=False)]
ShotOpt = Annotated[str, typer.Option("--shot", metavar="ID", help="the shot, as the shot list names it "
                                                                   "(e.g. ep01-sc01-sh002)")]


def takes(project: ProjectArg, shot: ShotOpt,
          as_json: Annotated[bool, typer.Option("--json", help="print them as JSON")] = False) -> None:
    """List a shot's takes: each one's state, whether the episode uses it, its clip and what it was billed.
    Set `takes: N` in project.yaml (or per shot in its shot list) to make more than one."""
    from stages.load_project import load_project
    from stages.pick_take import shot_takes

    lp = load_project(project)
    _, found = shot_takes(lp, shot)
    if as_json:
        print(json.dumps([{**asdict(t), "state": str(t.state)} for t in found], ensure_ascii=False, indent=1))
        return
    for t in found:
        billed = f"  {t.jobs} paid job(s), {t.billed_s:g} s billed" if t.jobs else ""
        billed += f"  identity {t.identity['verdict']}: {t.identity['why']}" if t.identity else ""
        print(f"{'*' if t.chosen else ' '} take {t.take}  {t.id:<22} {str(t.state):<11} "
              f"{esc(t.clip or t.reason or '')}{billed}")
    if len(found) > 1:
        print(f"(* the episode uses it; `dramaforge pick {esc(str(project))} --shot {shot} --take K` chooses)")


def pick(project: ProjectArg, shot: ShotOpt,
         take: Annotated[int, typer.Option("--take", metavar="K", help="the take to use (`dramaforge takes` "
                                                                     "lists them)")],
         no_cut: Annotated[bool, typer.Option("--no-cut", help="only record the choice: the episode is cut "
                                                              "again by the next render")] = False) -> None:
    """Choose the take a shot's episode uses (written to its shot list, as a hand edit would be), then cut
    the episode again: nothing is generated. Refused for a take that is not made."""
    from stages.load_project import load_project
    from stages.pick_take import pick_take, shot_takes, still_to_make

    lp = load_project(project)
    status, path = pick_take(lp, shot, take)
    console = err_console()
    console.print(f"shot {shot}: take {take} is the one episode {status.number} uses ({esc(str(path))})")
    if no_cut:
        console.print(f"the next `dramaforge render {esc(str(project))} -e {status.number}` cuts it again")
        return
    status, _ = shot_takes(lp, shot)
    missing = still_to_make(status)
    if missing:  # a re-cut would make them first, and a pick never makes anything
        console.print(f"episode {status.number} is not cut again: {len(missing)} of its shots or takes are not "
                      f"made ({', '.join(s.id for s in missing[:5])}{'…' if len(missing) > 5 else ''}); "
                      f"`dramaforge render {esc(str(project))} -e {status.number}` makes them and cuts it")
        return
    from flows.cli_render import render_episodes

    render_episodes(lp, [status.number])


def edit(project: ProjectArg, shot: ShotOpt,
         prompt: Annotated[Optional[str], typer.Option("--prompt", help="the shot's prompt, verbatim")] = None,
         size: Annotated[Optional[str], typer.Option("--size", help="its framing, e.g. close-up, medium, wide")] = None,
         camera: Annotated[Optional[str], typer.Option("--camera", help="its camera move, e.g. static, push-in")] = None,
         lock: Annotated[Optional[bool], typer.Option("--lock/--unlock", help="keep the shot exactly as written "
                                                                          "when re-planning")] = None) -> None:
    """Change a shot's prompt, size, camera or lock in its shot list, as a hand edit there would (re-planning
    keeps it); the next render makes the shot anew."""
    from stages.edit_shot import edit_shot
    from stages.load_project import load_project

    if prompt is None and size is None and camera is None and lock is None:
        raise InputError("nothing to edit", hint="give --prompt, --size, --camera, --lock or --unlock")
    path = edit_shot(load_project(project), shot, prompt=prompt, size=size, camera=camera, locked=lock)
    err_console().print(f"shot {shot} edited in {esc(str(path))}; `dramaforge render {esc(str(project))}` makes it")
