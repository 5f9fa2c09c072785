"""The `dramaforge` command line.

Only commands that render start Prefect (imported lazily); `check` and `plan` answer in about a
second. `main` is the one place that turns a DramaforgeError into a clear message and exit code.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

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
                         hint=f"episodes in the script: {_ranges(available)}")
    return out


def _ranges(nums: list[int]) -> str:
    if not nums:
        return "none"
    if len(nums) == 1:
        return str(nums[0])
    return f"{nums[0]}-{nums[-1]}" if nums == list(range(nums[0], nums[-1] + 1)) else ",".join(map(str, nums))


def _prefect_environment() -> None:
    """Quiet, offline-friendly Prefect settings, unless the user set their own."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_LOG_PRINTS", "false")
    os.environ.setdefault("PREFECT_CLI_PROMPT", "false")
    os.environ.setdefault("PREFECT_UI_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def _console():
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)  # never break paths or file:line across lines


DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="print what would be made, reused, and what it "
                                          "would cost and take (from `rates` in project.yaml); make nothing")]
MaxCostOpt = Annotated[Optional[float], typer.Option(
    "--max-cost", metavar="AMOUNT", min=0, help="refuse to start if the estimate is over AMOUNT (in "
    "rates.currency), or unknown because a billed backend has no rate")]


@app.command()
def render(project: ProjectArg, episodes: EpisodesOpt = None, dask: DaskOpt = None, dry_run: DryRunOpt = False,
           max_cost: MaxCostOpt = None) -> None:
    """Render episodes to PROJECT/build/episodes/epNN.mp4 (+ .srt .vtt subtitles, a .jpg poster and an .otio
    timeline for editors; build/series.json lists them, build/review/index.html shows them), making only
    what is missing or changed."""
    from stages.load_project import load_project

    lp = load_project(project)
    _render(lp, parse_episode_spec(episodes, [e.number for e in lp.script.episodes]), dask, dry_run=dry_run,
            max_cost=max_cost)


def _render(lp, numbers: list[int], dask: str | None = None, *, dry_run: bool = False,
            max_cost: float | None = None, force: set[str] = frozenset()) -> None:
    """Run the Prefect flow over the episodes in `numbers` that are not up to date; exit 1 if shots failed.

    An episode whose exact cut exists (same clips, speech, timing and settings) is skipped before
    Prefect starts, so a no-op re-render costs about as much as `status`. `dry_run` prints the
    estimate instead; `max_cost` refuses a render whose estimate is over it (or unknown).
    """
    from stages.core.artifacts import sweep_partials
    from stages.core.paths import BuildPaths
    from stages.core.ledger import Ledger

    console = _console()
    if dask and not dry_run:
        from flows.tasks import dask_runner

        dask_runner(dask)  # refuse now, before any work, if the extra is missing
        if not os.environ.get("PREFECT_API_URL"):
            # Without it every worker would start a private temporary server (and its task runs
            # would be invisible here); a remote worker could never reach ours anyway.
            raise InputError("--dask needs a Prefect server that this command and every worker can reach",
                             hint="run `prefect server start --host 0.0.0.0`, then set "
                                  "PREFECT_API_URL=http://HOST:4200/api here and on each worker")
    for w in lp.warnings:
        console.print(f"[yellow]warning[/] {_esc(f'{w.file}:{w.line}: {w.message}')}")
    from stages.check_project import blockers

    missing = blockers(lp)
    for extra in missing[1:]:
        console.print(f"[red]error[/] {_esc(str(extra))}")
    if missing:
        raise missing[0]
    if not numbers:
        console.print("nothing to render")
        return
    started = time.monotonic()
    eps = _status(lp, numbers, verify=True, cached_only=True)  # no LLM planning call before the guard
    if dry_run:
        _print_estimate(_estimate(lp, eps, force), lp)
        return
    if max_cost is not None:
        _check_cost(_estimate(lp, eps, force), max_cost)
    if any(e.provisional for e in eps):  # the LLM plans those episodes now, as the render would
        eps = _status(lp, numbers, verify=True)
    paths = BuildPaths(lp.build)
    paths.make_dirs()
    swept = sweep_partials(paths.root)  # temp files of a killed render
    interrupted = Ledger(paths.ledger).reconcile()
    if swept or interrupted:
        console.print(f"resuming: {interrupted} interrupted unit(s), {swept} partial file(s) removed")
    current = [e for e in eps if e.assembly == "done"]
    todo = [e for e in eps if e.assembly != "done"]
    if current:
        console.print(f"{len(current)} episode(s) up to date: {_ranges([e.number for e in current])}")
    if not todo:
        _report_outputs(console, [{"episode": e.number, "mp4": e.mp4, "reused": True, "failed": [], "stopped": []}
                                  for e in eps])
        if not (paths.root / "series.json").exists() or not (paths.review / "index.html").exists():
            _write_deliverables(lp)
        console.print(f"[green]nothing to do[/] ({time.monotonic() - started:.1f}s)")
        return
    numbers = [e.number for e in todo]
    totals = {"episodes": len(todo), "shots": sum(len(e.shots) for e in todo), "lines": sum(e.lines for e in todo)}
    todo_shots = sum(1 for e in todo for s in e.shots if s.state not in ("done", "placeholder"))

    _prefect_environment()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from flows import progress
    from flows.render_series import render_series

    with Progress(TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as bars:
        console.print(f"[bold]{_esc(lp.project.title)}[/]: rendering episode(s) {_ranges(numbers)} "
                      f"({totals['shots']} shots, {todo_shots} to make; {totals['lines']} lines); "
                      "starting Prefect…")
        ids = {k: bars.add_task(k, total=v) for k, v in (("lines", totals["lines"]), ("shots", totals["shots"]),
                                                         ("episodes", totals["episodes"]))}

        class _Bars:
            def advance(self, kind: str, n: int = 1) -> None:
                if kind in ids:
                    bars.advance(ids[kind], n)

        progress.install(_Bars())
        try:
            outcomes = render_series(str(lp.root.resolve()), numbers, [e.number for e in current], dask)
        finally:
            progress.install(None)
    outcomes += [{"episode": e.number, "mp4": e.mp4, "reused": True, "failed": [], "stopped": []} for e in current]
    failed = _report_outputs(console, sorted(outcomes, key=lambda o: o["episode"]))
    review = _write_deliverables(lp)
    console.print(f"  review: {_esc(str(review))}")
    if any(o.get("blocked") for o in outcomes):
        console.print("[red]fix the voices, lines or references above[/] (project.yaml cast, backends), "
                      f"then `dramaforge render {_esc(str(lp.root))}` again")
        raise typer.Exit(1)
    if failed:
        console.print(f"[red]{len(failed)} shot(s) failed[/]; see `dramaforge status {_esc(str(lp.root))}`, "
                      f"then `dramaforge rerun {_esc(str(lp.root))} --failed`")
        raise typer.Exit(1)
    console.print(f"[green]done[/] in {time.monotonic() - started:.1f}s")


def _estimate(lp, eps, force: set[str] = frozenset()):
    from stages.core.paths import BuildPaths
    from stages.backends.registry import make_image_backend
    from stages.estimate_render import estimate_render
    from stages.core.ledger import Ledger

    ledger_path = BuildPaths(lp.build).ledger
    video, speech = _backends(lp)
    return estimate_render(eps, lp.project, video=video, image=make_image_backend(lp.project.backends.image),
                           speech=speech, ledger=Ledger(ledger_path) if ledger_path.exists() else None,
                           force=set(force))


def _check_cost(est, max_cost: float) -> None:
    """Refuse (exit 2, before any work) a render over budget, or one that cannot be priced."""
    from stages.estimate_render import UNIT, rate_hint

    if est.unpriced:
        w = est.unpriced[0]
        raise InputError(f"--max-cost {max_cost:g}: cannot price {w.todo} {UNIT[w.kind]}(s) on {w.backend}: it may "
                         "charge and project.yaml has no rate for it (nothing was started)",
                         hint=f"set {rate_hint(w)} in project.yaml (0 for a free local server), then "
                              "`dramaforge estimate` shows the cost")
    if est.cost > max_cost:
        raise InputError(f"this render would cost about {est.currency} {est.cost:,.2f}, over --max-cost "
                         f"{max_cost:,.2f} (nothing was started)",
                         hint="render fewer episodes (--episodes 1-2), raise --max-cost, or see "
                              "`dramaforge estimate` for what would be made")


def _print_estimate(est, lp) -> None:
    from stages.estimate_render import UNIT, rate_hint

    def money(v):
        return "unknown" if v is None else "free" if v == 0 else f"{est.currency} {v:,.2f}"

    def hms(v):
        if v is None:
            return "time unknown"
        v = round(v)
        return f"~{v} s" if v < 60 else f"~{v // 60} min {v % 60:02d} s" if v < 3600 else \
            f"~{v // 3600} h {v % 3600 // 60:02d} min"

    up = f"; episode(s) {_ranges(est.up_to_date)} up to date" if est.up_to_date else ""
    if not est.episodes:
        print(f"{lp.project.title}: nothing to render{up}")
        return
    print(f"{lp.project.title}: would render episode(s) {_ranges(est.episodes)}{up}")
    verbs = {"video": ("to make", "reused"), "speech": ("to speak", "reused"), "image": ("to make", "reused"),
             "assembly": ("to assemble", "up to date"), "planning": ("to make (LLM)", "cached"),
             "translation": ("to make", "cached")}
    for w in est.work:
        if not (w.todo or w.cached):
            continue
        noun, (verb, kept) = UNIT[w.kind], verbs[w.kind]
        size = f" ({w.todo_s:.1f} s of video)" if w.kind == "video" and w.todo else \
            f" ({w.chars} chars)" if w.kind == "speech" and w.todo else ""
        amount = f"{w.todo} {noun}(s) {verb}{size}, {w.cached} {kept}"
        timing = hms(w.time_s) + (f" ({w.basis})" if w.basis else "") if w.todo else ""
        if w.kind == "video" and w.todo and w.time_s is not None:
            timing += f", {est.concurrency} at once"
        print(f"  {w.kind:<8} {w.backend:<13} {amount:<52} {money(w.cost) if w.todo else '':>12}  {timing}")
    print(f"  total: {money(est.cost)}, {hms(est.time_s)} of rendering")
    for w in est.unpriced:
        print(f"  cost unknown: {w.backend} may charge and has no rate; set {rate_hint(w)}")
    untimed = [f"{w.kind} on {w.backend}" for w in est.work if w.todo and w.time_s is None]
    if untimed:
        print(f"  time unknown for {', '.join(untimed)}: nothing measured in this project yet and no rate "
              "(a render measures it; or set rates.<video|speech|image>.<backend>.seconds_per_<shot|line|image>)")
    if est.provisional:
        print(f"  {', '.join(est.provisional)}: not planned by the LLM yet; counted from the rules planner's "
              "shots (the LLM's plan may have other shots)")
    for n, ids in est.shots.items():
        if ids:
            shown = ", ".join(ids[:6]) + (f", … (+{len(ids) - 6}; `dramaforge estimate --json` lists all)"
                                          if len(ids) > 6 else "")
            print(f"  ep{n:02d}: {len(ids)} shot(s) to make: {shown}")


def _report_outputs(console, outcomes: list[dict]) -> list[str]:
    """One line per episode; returns the failed shot ids (or unspoken lines' reasons)."""
    from stages.core.media import probe

    failed = []
    for o in outcomes:
        if o["mp4"]:
            info = probe(Path(o["mp4"]))
            note = " (up to date)" if o["reused"] else ""
            console.print(f"  {_esc(o['mp4'])}  {info.duration_s:.2f}s {info.width}x{info.height} "
                          f"{info.fps:g}fps{note}")
        elif o.get("blocked"):
            failed.extend(o["blocked"])
            console.print(f"  [red]ep{o['episode']:02d} not rendered[/]: {len(o['blocked'])} problem(s) before "
                          "any shot was made:")
            for reason in o["blocked"]:
                console.print(f"    {_esc(reason)}")
        else:
            failed.extend(o["failed"])
            console.print(f"  [red]ep{o['episode']:02d} not assembled[/]: {len(o['failed'])} shot(s) failed")
            if o["stopped"]:
                console.print(f"    [red]stopped[/]: {len(o['stopped'])} shot(s) not attempted after "
                              f"{len(o['failed'])} failures (limits.failed_shots_per_episode)")
    return failed


def _write_deliverables(lp) -> Path:
    """build/series.json and the review site, from one look at the project; returns review/index.html."""
    eps = _status(lp)
    _write_series(lp, eps)
    return _write_review(lp, eps)


def _write_series(lp, eps) -> None:
    """build/series.json: every episode made so far, its files, length, shots and content keys."""
    from stages.core.paths import BuildPaths
    from stages.core.ledger import Ledger
    from stages.core.media import probe
    from stages.write_series import write_series_json

    paths = BuildPaths(lp.build)
    rows = {r.id: r for r in Ledger(paths.ledger).rows(kind="episode")} if paths.ledger.exists() else {}
    episodes = []
    for e in eps:
        mp4 = paths.episode_mp4(e.id)
        if e.assembly != "done" or not mp4.exists():
            continue
        ep = lp.script.episode(e.number)
        extra = [paths.episode_srt(e.id), paths.episode_srt(e.id).with_suffix(".vtt"), paths.episode_ass(e.id)]
        episodes.append({"episode": e.number, "title": ep.title, "mp4": mp4,
                         "duration_s": round(probe(mp4).duration_s, 3),
                         "cut_key": rows[e.id].spec_hash if e.id in rows else None,
                         "shots": [{"id": s.id, "key": s.key, "state": s.state} for s in e.shots],
                         "subtitles": [p for p in extra if p.exists()],
                         "poster": paths.episodes / f"{e.id}.jpg", "otio": paths.episodes / f"{e.id}.otio"})
    write_series_json(paths.root / "series.json", title=lp.script.title or lp.project.title,
                      project_settings=lp.project.model_dump(mode="json"), episodes=episodes)


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _backends(lp):
    """(video backend, speech(engine)) for keys and identities: nothing is loaded or called."""
    import functools

    from stages.backends.registry import make_speech_backend, make_video_backend

    return (make_video_backend(lp.project.backends),
            functools.cache(lambda engine: make_speech_backend(engine, lp.project.backends)))


def _status(lp, numbers=None, *, verify: bool = False, cached_only: bool = False):
    from stages.project_status import project_status

    video, speech = _backends(lp)
    return project_status(lp, video, speech, numbers, verify=verify, cached_only=cached_only)


@app.command()
def estimate(project: ProjectArg, episodes: EpisodesOpt = None,
             as_json: Annotated[bool, typer.Option("--json", help="print the estimate (every unit to make) as JSON")
                                ] = False) -> None:
    """What a render would make and reuse, and what it would cost and take (same as `render --dry-run`)."""
    from stages.load_project import load_project

    lp = load_project(project)
    numbers = parse_episode_spec(episodes, [e.number for e in lp.script.episodes])
    if as_json:
        eps = _status(lp, numbers, verify=True, cached_only=True)
        print(json.dumps(_estimate(lp, eps).to_dict(), ensure_ascii=False, indent=1))
        return
    _render(lp, numbers, dry_run=True)


@app.command()
def review(project: ProjectArg) -> None:
    """Write the review site: build/review/index.html (every episode) and epNN.html (each shot's storyboard
    card: picture, prompt, dialogue, state, the re-run command; clips play inline). Opens from disk."""
    from stages.load_project import load_project

    lp = load_project(project)
    print(_write_review(lp, _status(lp)))


def _write_review(lp, eps) -> Path:
    """Refresh build/review/ from `eps` (the project's status); re-run commands name the project as typed."""
    from stages.core.paths import BuildPaths
    from stages.write_review import write_review

    return write_review(lp, eps, BuildPaths(lp.build), command_root=str(lp.root))


@app.command()
def status(project: ProjectArg, episodes: EpisodesOpt = None,
           as_json: Annotated[bool, typer.Option("--json", help="print every shot's state as JSON")] = False
           ) -> None:
    """Per-episode shot counts by state, and every failed shot with its reason and the command to re-run it."""
    import shlex

    from stages.load_project import load_project

    lp = load_project(project)
    numbers = parse_episode_spec(episodes, [e.number for e in lp.script.episodes])
    eps = _status(lp, numbers)
    if as_json:
        print(json.dumps({"episodes": [{"id": e.id, "assembly": e.assembly, "mp4": e.mp4, "shots": [
            {"id": s.id, "state": s.state, "reason": s.reason, "attempts": s.attempts, "artifact": s.artifact}
            for s in e.shots]} for e in eps]}, ensure_ascii=False, indent=1))
        return
    states = ("done", "pending", "stale", "failed", "rejected", "interrupted", "placeholder")
    print(f"{'episode':<8} " + " ".join(f"{s:>11}" for s in states) + "  cut")
    for e in eps:
        print(f"{e.id:<8} " + " ".join(f"{e.count(s):>11}" for s in states) + f"  {e.assembly}")
    root = shlex.quote(str(project))
    for e in eps:
        for s in e.shots:
            if s.state in ("failed", "rejected", "interrupted"):
                print(f"{s.id}  {s.state} after {s.attempts} attempt(s): {s.reason}")
                print(f"    re-run: dramaforge rerun {root} --shot {s.id}")


@app.command()
def rerun(project: ProjectArg,
          failed: Annotated[bool, typer.Option("--failed", help="shots that failed, were rejected or interrupted")] = False,
          shot: Annotated[Optional[list[str]], typer.Option("--shot", metavar="ID", help="these shots, made anew")] = None,
          stale: Annotated[bool, typer.Option("--stale", help="shots whose inputs changed")] = False,
          episode: Annotated[Optional[int], typer.Option("--episode", metavar="N", help="one whole episode")] = None,
          dask: DaskOpt = None, dry_run: DryRunOpt = False, max_cost: MaxCostOpt = None) -> None:
    """Re-run failed, stale or chosen shots (and re-assemble their episodes); nothing else is redone."""
    from stages.load_project import load_project

    if sum([failed, bool(shot), stale, episode is not None]) != 1:
        raise InputError("rerun needs exactly one of --failed, --shot ID, --stale, --episode N",
                         hint="e.g. `dramaforge rerun PROJECT --failed`")
    lp = load_project(project)
    available = [e.number for e in lp.script.episodes]
    if episode is not None:
        numbers = parse_episode_spec(str(episode), available)
    else:
        eps = _status(lp)
        by_id = {s.id: (e.number, s) for e in eps for s in e.shots}
        if shot:
            unknown = [i for i in shot if i not in by_id]
            if unknown:
                raise InputError(f"no shot {', '.join(unknown)} in this project",
                                 hint=f"see the ids with `dramaforge status {project}`")
            numbers = sorted({by_id[i][0] for i in shot})
            if dry_run:  # nothing is touched: the chosen shots are counted as made anew
                return _render(lp, numbers, dry_run=True, force=set(shot))
            if max_cost is not None:  # checked before their files are dropped
                _check_cost(_estimate(lp, [e for e in eps if e.number in numbers], set(shot)), max_cost)
            from stages.core.paths import BuildPaths
            from stages.core.ledger import Ledger

            ledger = Ledger(BuildPaths(lp.build).ledger)
            for i in shot:  # made anew: drop the artifact so the hash check cannot reuse it
                if by_id[i][1].state == "placeholder":
                    ledger.set_state(i, "pending")
                artifact = by_id[i][1].artifact
                if artifact and Path(artifact).exists():
                    Path(artifact).unlink()
        else:
            wanted = ("failed", "rejected", "interrupted") if failed else ("stale",)
            numbers = sorted({n for n, s in by_id.values() if s.state in wanted})
    _render(lp, numbers, dask, dry_run=dry_run, max_cost=max_cost)


@app.command()
def plan(project: ProjectArg, episodes: EpisodesOpt = None,
         as_json: Annotated[bool, typer.Option("--json", help="print the ShotList models as JSON")] = False) -> None:
    """Plan shots into PROJECT/build/shotlists/epNN.yaml (edit them there; re-planning keeps your edits)."""
    from stages.core.paths import BuildPaths
    from stages.load_project import load_project
    from stages.plan_shots import plan_shots
    from stages.write_shotlist import write_shotlist

    lp = load_project(project)
    numbers = parse_episode_spec(episodes, [e.number for e in lp.script.episodes])
    plans = [plan_shots(lp.script.episode(n), lp.project, project_dir=lp.root,
                        characters=lp.script.characters) for n in numbers]
    paths = BuildPaths(lp.build)
    paths.shotlists.mkdir(parents=True, exist_ok=True)
    for p in plans:
        write_shotlist(p, paths.shotlist(p.id))
    if as_json:
        print(json.dumps([p.model_dump(mode="json") for p in plans], ensure_ascii=False, indent=1))
        return
    target = lp.project.target_episode_s
    for p in plans:
        off = p.duration_s - target
        verdict = "on target" if abs(off) <= 0.15 * target else f"{abs(off):.0f}s {'over' if off > 0 else 'under'}"
        print(f"{p.id} {p.title!r}: {len(p.shots)} shots, ~{p.duration_s:.1f}s of a {target:g}s target "
              f"({verdict}); {_esc(str(paths.shotlist(p.id)))}")
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
           ) -> None:
    """Let an episode assemble without a shot that keeps failing: a placeholder card stands in for it."""
    from stages.core.paths import BuildPaths
    from stages.core.ledger import Ledger
    from stages.load_project import load_project

    if not placeholder:
        raise InputError("accept needs --placeholder", hint=f"dramaforge accept {project} --shot ID --placeholder")
    lp = load_project(project)
    known = {s.id: e.number for e in _status(lp) for s in e.shots}
    unknown = [i for i in shot if i not in known]
    if unknown:
        raise InputError(f"no shot {', '.join(unknown)} in this project", hint=f"see `dramaforge status {project}`")
    ledger = Ledger(BuildPaths(lp.build).ledger)
    for i in shot:
        ledger.accept_placeholder(i, episode=known[i])
    print(f"accepted {len(shot)} placeholder(s); `dramaforge rerun {project} --episode N` assembles the episode, "
          f"`dramaforge rerun {project} --shot ID` tries the shot again")


@app.command()
def check(project: ProjectArg,
          as_json: Annotated[bool, typer.Option("--json", help="print counts, warnings and errors as JSON")] = False
          ) -> None:
    """Lint the script and project.yaml without rendering; exit 2 if there are errors."""
    from stages.check_project import check_project

    report = check_project(project)
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=1))
    else:
        console = _console()
        for e in report.errors:
            from rich.markup import escape

            where = f"{e['file']}:{e['line']}: " if e.get("line") else (f"{e['file']}: " if e.get("file") else "")
            console.print(f"[red]error[/] {escape(where + e['message'])}")
            if e.get("text"):
                console.print(f"    {escape(e['text'])}")
            if e.get("hint"):
                console.print(f"  hint: {escape(e['hint'])}")
        for w in report.warnings:
            from rich.markup import escape

            console.print(f"[yellow]warning[/] {escape(f'{w.file}:{w.line}: {w.message}')}")
        if not report.errors:
            print(f"{report.episodes} episode(s), {report.scenes} scene(s), {report.lines} line(s), "
                  f"{len(report.characters)} character(s); {len(report.warnings)} warning(s)")
    if report.errors:
        raise typer.Exit(2)


@app.command()
def new(folder: Annotated[Path, typer.Argument(help="folder to create", show_default=False)],
        from_script: Annotated[Optional[Path], typer.Option("--from-script", metavar="FILE",
                                                            help="start from this script (Fountain or 中文短剧 layout)")] = None
        ) -> None:
    """Scaffold a project: project.yaml with the cast inferred from the script, folders, a README."""
    from stages.scaffold_project import scaffold_project

    made = scaffold_project(folder, from_script)
    print(f"created {made}/project.yaml; next: fill in each DESCRIBE ME, then `dramaforge check {made}`")


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
    """Console entry point: clear errors, no tracebacks, exit 2 for bad input."""
    try:
        app(standalone_mode=True)
    except DramaforgeError as exc:
        from rich.markup import escape

        _console().print(f"[red]error[/] {escape(str(exc))}", highlight=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _console().print("interrupted: finished shots are kept; run the same command to resume")
        sys.exit(130)


if __name__ == "__main__":
    main()
