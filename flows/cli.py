"""The `dramaforge` command line.

Only commands that render start Prefect (imported lazily); `check` and `plan` answer in about a
second. `main` is the one place that turns a DramaforgeError into a clear message and exit code.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from flows.cli_render import ranges, render_episodes
from flows.console import err_console, esc
from stages.backends.base import BackendError
from stages.core.errors import DramaforgeError, InputError

app = typer.Typer(
    name="dramaforge",
    help="Turn a screenplay into a vertical short-drama series: parse, plan shots, voice, "
         "generate, subtitle and assemble every episode.\n\n"
         "Start with `dramaforge render projects/demo` (an offline storyboard animatic).",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ProjectArg = Annotated[Path, typer.Argument(help="project folder (holds project.yaml)", show_default=False)]
DaskOpt = Annotated[Optional[str], typer.Option(
    "--dask", metavar="ADDRESS", help="run shots on this Dask scheduler, e.g. tcp://10.0.0.5:8786 "
    "(needs the dask extra; every worker must see the project folder)")]
EpisodesOpt = Annotated[Optional[str], typer.Option("--episodes", "-e", metavar="SPEC",
                                                    help="episodes to use, e.g. 1-3,5 (default: all)")]


def parse_episode_spec(spec: str | None, available: list[int]) -> list[int]:
    """'1-3,5' -> [1, 2, 3, 5], each checked against the script's episodes."""
    if not spec:
        return list(available)
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not m:
            raise InputError(f"--episodes: cannot read {part!r}", hint="use numbers and ranges, e.g. 1-3,5")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise InputError(f"--episodes: range {part!r} runs backwards", hint=f"write {hi}-{lo}")
        out.extend(n for n in range(lo, hi + 1) if n not in out)
    missing = [n for n in out if n not in available]
    if missing:
        raise InputError(f"--episodes: the script has no episode {', '.join(map(str, missing))}",
                         hint=f"episodes in the script: {ranges(available)}")
    return out


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"dramaforge {version('dramaforge')}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[Optional[bool], typer.Option(
        "--version", callback=_version, is_eager=True, help="print the version and exit")] = None) -> None:
    # the app's help is the Typer(help=...) above; this callback only adds --version
    return None


DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="print what would be made, reused, and what it "
                                          "would cost and take (from `rates` in project.yaml); make nothing")]
MaxCostOpt = Annotated[Optional[float], typer.Option(
    "--max-cost", metavar="AMOUNT", min=0, help="refuse to start if the estimate is over AMOUNT (in "
    "rates.currency), or unknown because a billed backend has no rate")]


ViaOpt = Annotated[Optional[str], typer.Option(
    "--via", metavar="deployment", help="`deployment`: run it on the Prefect workers of the project's "
    "deployment (`dramaforge deploy`) and follow it here")]


LanguageOpt = Annotated[Optional[list[str]], typer.Option(
    "--language", metavar="LANG", help="make only this dub (of those `languages:` lists; repeat for more): "
    "epNN.LANG.mp4, its pictures the original's")]


@app.command()
def render(project: ProjectArg, episodes: EpisodesOpt = None, dask: DaskOpt = None, dry_run: DryRunOpt = False,
           max_cost: MaxCostOpt = None, via: ViaOpt = None, language: LanguageOpt = None) -> None:
    """Render episodes to PROJECT/build/episodes/epNN.mp4 (+ .srt .vtt subtitles, a .jpg poster and an .otio
    timeline for editors; build/series.json lists them, build/review/index.html shows them), making only
    what is missing or changed, and each dub `languages:` lists as epNN.LANG.mp4 (+ .LANG.srt .vtt). Two
    episodes are voiced and shot at once while earlier ones are cut.
    Prefect runs on a local server that renders share (started by the first; it stops after
    DRAMAFORGE_PREFECT_SERVER_IDLE_S=900 idle seconds), or on yours if PREFECT_API_URL is set."""
    from stages.load_project import load_project

    if via not in (None, "deployment"):
        raise InputError(f"--via {via}: unknown", hint="--via deployment (after `dramaforge deploy PROJECT`)")
    if via and language:
        raise InputError("--language with --via deployment: the deployment makes every dub `languages:` lists",
                         hint="leave out --language, or render here")
    lp = load_project(project).dubbing(language)
    render_episodes(lp, parse_episode_spec(episodes, [e.number for e in lp.script.episodes]), dask, dry_run=dry_run,
            max_cost=max_cost, via=via, languages=language)


@app.command()
def estimate(project: ProjectArg, episodes: EpisodesOpt = None,
             as_json: Annotated[bool, typer.Option("--json", help="print the estimate (every unit to make) as JSON")
                                ] = False) -> None:
    """What a render would make and reuse, and what it would cost and take (same as `render --dry-run`)."""
    from stages.load_project import load_project

    lp = load_project(project)
    numbers = parse_episode_spec(episodes, [e.number for e in lp.script.episodes])
    if as_json:  # what the numbers are, even for a project a render would refuse
        from flows.guards import estimate as plan_estimate

        print(json.dumps(plan_estimate(lp, numbers).estimate.to_dict(), ensure_ascii=False, indent=1))
        return
    render_episodes(lp, numbers, dry_run=True)


@app.command()
def review(project: ProjectArg) -> None:
    """Write the review site: build/review/index.html (every episode) and epNN.html (each shot's storyboard
    card: picture, prompt, dialogue, state, the re-run command; clips play inline). Opens from disk."""
    from stages.core.paths import BuildPaths
    from stages.load_project import load_project
    from stages.project_status import project_status
    from stages.write_review import write_review

    lp = load_project(project)  # re-run commands on the pages name the project as typed
    print(write_review(lp, project_status(lp), BuildPaths(lp.build), command_root=str(lp.root)))


@app.command()
def status(project: ProjectArg, episodes: EpisodesOpt = None,
           as_json: Annotated[bool, typer.Option("--json", help="print every shot's state as JSON")] = False
           ) -> None:
    """Per-episode shot counts by state, and every failed shot with its reason and the command to re-run it;
    with lip sync, each episode's synced shots and any whose sync figure is below dialogue.min_sync."""
    from flows.status_text import print_status
    from stages.load_project import load_project
    from stages.project_status import project_status

    lp = load_project(project)
    numbers = parse_episode_spec(episodes, [e.number for e in lp.script.episodes])
    print_status(lp, project_status(lp, numbers), project, as_json=as_json)


@app.command()
def rerun(project: ProjectArg,
          failed: Annotated[bool, typer.Option("--failed", help="shots that failed, were rejected or interrupted")] = False,
          shot: Annotated[Optional[list[str]], typer.Option("--shot", metavar="ID", help="these shots, made anew")] = None,
          stale: Annotated[bool, typer.Option("--stale", help="shots whose inputs changed")] = False,
          line: Annotated[Optional[list[str]], typer.Option(
              "--line", metavar="ID", help="these lines spoken again (a new take; `status --json` lists the ids)")
          ] = None,
          episode: Annotated[Optional[int], typer.Option("--episode", metavar="N", help="one whole episode")] = None,
          new_job: Annotated[bool, typer.Option(
              "--new-job", help="with --shot: give up on the shot's open or unknown paid job (cancelled at the "
                                "provider where it can be) and pay for a new one")] = False,
          dask: DaskOpt = None, dry_run: DryRunOpt = False, max_cost: MaxCostOpt = None) -> None:
    """Re-run failed, stale or chosen shots, or re-speak chosen lines (and re-assemble their episodes);
    nothing else is redone (a new take of a line that comes out longer or shorter re-times its shot).

    A shot whose paid job is unknown (its request's answer was lost) is never paid for again
    silently: check the provider's dashboard first, then `--shot ID --new-job`."""
    from flows.run import rerun_selection
    from stages.load_project import load_project

    lp = load_project(project)
    if episode is not None:
        parse_episode_spec(str(episode), [e.number for e in lp.script.episodes])
    if new_job and not shot:
        raise InputError("--new-job needs --shot ID: it pays again for the shots you name",
                         hint="e.g. `dramaforge rerun PROJECT --shot e1s3 --new-job`")
    numbers, force = rerun_selection(lp, failed=failed, shots=shot, stale=stale, episode=episode, lines=line)
    render_episodes(lp, numbers, dask, dry_run=dry_run, max_cost=max_cost, force=force, new_job=new_job)


@app.command()
def plan(project: ProjectArg, episodes: EpisodesOpt = None,
         as_json: Annotated[bool, typer.Option("--json", help="print the ShotList models as JSON")] = False) -> None:
    """Plan shots into PROJECT/build/shotlists/epNN.yaml (edit them there; re-planning keeps your edits)."""
    from stages.core.paths import BuildPaths
    from stages.load_project import load_project
    from stages.plan_shots import plan_shots
    from stages.write_shotlist import editing, write_shotlist

    lp = load_project(project)
    numbers = parse_episode_spec(episodes, [e.number for e in lp.script.episodes])
    paths, plans = BuildPaths(lp.build), []
    for n in numbers:
        with editing(paths.shotlist(f"ep{n:02d}")):  # an edit made meanwhile is read, not overwritten
            plans.append(plan_shots(lp.script.episode(n), lp.project, project_dir=lp.root,
                                    characters=lp.script.characters))
            write_shotlist(plans[-1], paths.shotlist(plans[-1].id))
    if as_json:
        print(json.dumps([p.model_dump(mode="json") for p in plans], ensure_ascii=False, indent=1))
        return
    target = lp.project.target_episode_s
    for p in plans:
        off = p.duration_s - target
        verdict = "on target" if abs(off) <= 0.15 * target else f"{abs(off):.0f}s {'over' if off > 0 else 'under'}"
        print(f"{p.id} {p.title!r}: {len(p.shots)} shots, ~{p.duration_s:.1f}s of a {target:g}s target "
              f"({verdict}); {esc(str(paths.shotlist(p.id)))}")
        for s in p.shots:
            said = f"  {s.lines[0].character}: {s.lines[0].text[:50]}" if s.lines else \
                f"  {s.card and '[card] ' + s.card[:50] or s.action[:60] or ', '.join(s.characters) + ' reacts'}"
            cues = "".join(f"  [sfx {f}]" for f in s.sfx) + (f"  [music {s.music}]" if s.music and (
                s is p.shots[0] or s.scene != p.shots[p.shots.index(s) - 1].scene) else "")
            print(f"  {s.id}  {s.size:<16} {s.camera:<9} {s.duration_s:5.2f}s{said}{cues}")


@app.command()
def accept(project: ProjectArg,
           shot: Annotated[list[str], typer.Option("--shot", metavar="ID", help="the shot(s) to accept")],
           placeholder: Annotated[bool, typer.Option("--placeholder", help="use a titled card in its place")] = False,
           force: Annotated[bool, typer.Option("--force", help="also replace a shot that is already made")] = False,
           ) -> None:
    """Let an episode assemble without a shot that keeps failing: a placeholder card stands in for it."""
    from flows.run import accept_placeholders
    from stages.load_project import load_project

    if not placeholder:
        raise InputError("accept needs --placeholder", hint=f"dramaforge accept {project} --shot ID --placeholder")
    accept_placeholders(load_project(project), shot, force=force)
    print(f"accepted {len(shot)} placeholder(s); `dramaforge rerun {project} --episode N` assembles the episode, "
          f"`dramaforge rerun {project} --shot ID` tries the shot again")


def _print_references(console, refs: dict, most: int = 12) -> None:
    """Which characters' references the shots carry to the video backend: each shot that leaves one out,
    then a count of those that carry everyone's."""
    if not refs:
        return
    short = [s for s in refs["shots"] if s["dropped"]]
    console.print(f"references to {refs['backend']} (at most {refs['limit']} per request): "
                  f"{len(refs['shots']) - len(short)} of {len(refs['shots'])} shot(s) with characters carry "
                  f"every reference" + (", these leave some out:" if short else ""))
    for s in short[:most]:
        console.print(f"  {s['shot']}: {esc(', '.join(s['sent']))}; left out: {esc(', '.join(s['dropped']))}")
    if len(short) > most:
        console.print(f"  ... and {len(short) - most} more (`check --json` lists every shot)")


def _print_lipsync(console, plan: dict, most: int = 12) -> None:
    """Which shots' lips will be synced, and each line that will not be, with why."""
    if not plan:
        return
    synced, skipped = plan["synced"], plan["not_synced"]
    console.print(f"lip sync with {plan['backend']}: {len(synced)} shot(s) synced"
                  + (f"; {len(skipped)} line(s) not synced:" if skipped else ""))
    for s in skipped[:most]:
        console.print(f"  {s['shot']} line {s['line']}: {esc(s['why'])}")
    if len(skipped) > most:
        console.print(f"  ... and {len(skipped) - most} more (`check --json` lists every shot)")


@app.command()
def check(project: ProjectArg,
          as_json: Annotated[bool, typer.Option("--json", help="print counts, warnings and errors as JSON")] = False
          ) -> None:
    """Lint the script and project.yaml without rendering, and show which characters' references each shot
    carries to the video model (and what its limit leaves out) and, with dialogue tts+lipsync, which shots
    get their lips synced and why the other lines do not; exit 2 if there are errors."""
    from stages.check_project import check_project

    report = check_project(project)
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=1))
    else:
        console = err_console()
        for e in report.errors:
            where = f"{e['file']}:{e['line']}: " if e.get("line") else (f"{e['file']}: " if e.get("file") else "")
            console.print(f"[red]error[/] {esc(where + e['message'])}")
            if e.get("text"):
                console.print(f"    {esc(e['text'])}")
            if e.get("hint"):
                console.print(f"  hint: {esc(e['hint'])}")
        for w in report.warnings:
            console.print(f"[yellow]warning[/] {esc(f'{w.file}:{w.line}: {w.message}')}")
        _print_references(console, report.references)
        _print_lipsync(console, report.lipsync)
        if not report.errors:
            takes = f", {report.takes} takes of each shot" if report.takes > 1 else ""
            print(f"{report.episodes} episode(s), {report.scenes} scene(s), {report.lines} line(s), "
                  f"{len(report.characters)} character(s){takes}; {len(report.warnings)} warning(s)")
    if report.errors:
        raise typer.Exit(2)


@app.command()
def new(folder: Annotated[Path, typer.Argument(help="folder to create", show_default=False)],
        from_script: Annotated[Optional[Path], typer.Option("--from-script", metavar="FILE",
                                                            help="start from this script (Fountain or 中文短剧 layout)")] = None,
        llm: Annotated[Optional[str], typer.Option(
            "--llm", metavar="MODEL", help="read the cast with this chat model (any OpenAI-compatible server; key in "
            "$OPENAI_API_KEY) and plan shots with it too (planner: llm); default: the script's own words, offline")] = None,
        base_url: Annotated[Optional[str], typer.Option(
            "--base-url", metavar="URL", help="with --llm: the server, e.g. http://localhost:8000/v1")] = None,
        ) -> None:
    """Scaffold a project from a script: project.yaml with each character's look and voice read from the script
    (their introduction, age, gender words, pronouns), an original music bed, folders, a README. Prints what it read
    for each character, what it could not tell, and every warning `check` would give."""
    from stages.cast_characters import casting_report
    from stages.check_project import check_project
    from stages.scaffold_project import LLMCasting, scaffold_project

    if base_url and not llm:
        raise InputError("--base-url needs --llm MODEL", hint="e.g. --llm qwen2.5-7b --base-url http://localhost:8000/v1")
    made = scaffold_project(folder, from_script, llm=LLMCasting(llm, base_url) if llm else None)
    console = err_console()
    console.print(f"created {esc(str(made.folder))}/project.yaml with {len(made.cast)} character(s):")
    for line in casting_report(made.cast):
        console.print(f"  {esc(line)}")
    report = check_project(made.folder)
    for w in report.warnings:
        console.print(f"[yellow]warning[/] {esc(f'{w.file}:{w.line}: {w.message}')}")
    for e in report.errors:
        where = f"{e['file']}:{e['line']}: " if e.get("line") else ""
        console.print(f"[red]error[/] {esc(where + e['message'])}")
    todo = "fill in each DESCRIBE ME and check the voices, then " if any(
        c.description == "" or c.unknown() for c in made.cast) else "review the cast, then "
    console.print(f"next: {todo}`dramaforge check {esc(str(made.folder))}`")


@app.command()
def schema(out: Annotated[Optional[Path], typer.Option("--out", "-o", help="write here instead of stdout")] = None
           ) -> None:
    """Write the JSON Schema of project.yaml (for editor completion and checking)."""
    from stages.schema import Project

    text = json.dumps(Project.model_json_schema(), indent=1, ensure_ascii=False)
    if out is None:
        print(text)
    else:
        from stages.core.artifacts import write_text_atomic

        write_text_atomic(out, text + "\n")


def main() -> None:
    """Console entry point: clear errors, no tracebacks, exit 2 for bad input. A full disk or an
    unwritable folder, however it surfaced (an OSError, SQLite, ffmpeg), is said once, the same way."""
    from flows import quick_exit

    quick_exit.install()
    try:
        _main()
    except SystemExit as exc:
        quick_exit.ended(exc.code)
        raise
    quick_exit.ended(0)


def _main() -> None:
    from rich.markup import escape

    from stages.core.errors import environment_failure

    try:
        app(standalone_mode=True)
    except KeyboardInterrupt:
        err_console().print("interrupted: finished shots are kept; run the same command to resume")
        sys.exit(130)
    except Exception as exc:
        failure = exc if isinstance(exc, DramaforgeError) else environment_failure(exc)
        if failure is None and isinstance(exc, BackendError):  # a provider failed outside any shot (translation)
            err_console().print(f"[red]error[/] {escape(str(exc))}", highlight=False)
            err_console().print("  the ledger has the reason (`dramaforge status`); what was made is kept: run the "
                             "same command again to retry")
            sys.exit(1)
        if failure is None:
            raise
        for problem in (failure, *failure.more):  # a check that found several problems names each
            err_console().print(f"[red]error[/] {escape(str(problem))}", highlight=False)
        sys.exit(failure.exit_code)


from flows.cli_farm import deploy, worker  # noqa: E402 (a render farm's commands)
from flows.cli_takes import edit, pick, takes  # noqa: E402
from flows.studio import studio  # noqa: E402

app.command()(deploy)
app.command()(worker)
app.command()(takes)
app.command()(pick)
app.command()(edit)
app.command()(studio)

if __name__ == "__main__":
    main()
