"""Rendering from the command line: the guards, the estimate or the render, and what came out
(`render`, `rerun`, `estimate` and `pick` in `flows/cli.py` and `flows/cli_takes.py` call it)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from flows.console import err_console, esc


def ranges(nums: list[int]) -> str:
    if not nums:
        return "none"
    if len(nums) == 1:
        return str(nums[0])
    return f"{nums[0]}-{nums[-1]}" if nums == list(range(nums[0], nums[-1] + 1)) else ",".join(map(str, nums))


def render_episodes(lp, numbers: list[int], dask: str | None = None, *, dry_run: bool = False,
            max_cost: float | None = None, force: set[str] = frozenset(), new_job: bool = False,
            via: str | None = None, languages: list[str] | None = None) -> None:
    """Render the episodes in `numbers` that are not up to date; exit 1 if shots failed. `languages`: the
    dubs to make (`lp` is narrowed to them already; the flow is told too).

    The guards run before Prefect starts: an episode whose exact cut exists (same clips, speech,
    timing and settings) is skipped, so a no-op re-render costs about as much as `status`.
    `dry_run` prints the estimate instead; `max_cost` refuses a render whose estimate is over it
    (or unknown).
    """
    from flows import run
    from flows.guards import deliver, delivered, start_render
    from stages.core.ledger import REUSED

    asked = time.time()  # a clip made after this by another rerun of the same shot is kept
    console = err_console()
    from stages.project_reach import endpoints

    for e in endpoints(lp.project):  # first: a key is about to go somewhere its provider is not
        console.print(f"[yellow]note[/] {esc(str(e))}")
    for w in lp.warnings:
        console.print(f"[yellow]warning[/] {esc(f'{w.file}:{w.line}: {w.message}')}")
    started = time.monotonic()
    if not dry_run:  # a full or read-only disk is said before an LLM planner is paid for what cannot be kept
        from stages.core.paths import BuildPaths

        BuildPaths(lp.build).check_writable()
    checked = run.prepare(lp, numbers, dask=None if dry_run else dask, max_cost=None if dry_run else max_cost,
                          force=force, dry_run=dry_run, via=None if dry_run else via)
    if not numbers:
        console.print("nothing to render")
        return
    if dry_run:
        _print_estimate(checked.estimate, lp)
        return
    if new_job:  # after the spend guard: the user chose to pay again for these shots
        for line in run.new_jobs(lp, sorted(force)):
            console.print(esc(line))
    current, todo = checked.current, checked.todo
    if not todo:  # no flow will run: recover from a killed render here
        _resumed(console, start_render(lp, checked))
    if current:
        console.print(f"{len(current)} episode(s) up to date: {ranges([e.number for e in current])}")
    kept = [{"episode": e.number, "mp4": e.mp4, "reused": True, "failed": [], "stopped": [],  # checked as this:
             "shape": (e.work.cut.duration_s, lp.project.width, lp.project.height, lp.project.fps)} for e in current]
    if not todo:
        _report_outputs(console, kept)
        if not delivered(lp):
            deliver(lp)
        console.print(f"[green]nothing to do[/] ({time.monotonic() - started:.1f}s)")
        return
    totals = {"lines": sum(e.lines + sum(len(d.speech) for d in e.dubs) for e in todo), "shots": sum(len(e.shots) for e in todo), "episodes": len(todo)}
    from stages.sync_lips import line_verdicts

    synced = sum(1 for e in todo if e.work is not None for s in e.work.plan.shots
                 if any(ok for _, ok, _ in line_verdicts(s, lp.project)))
    if synced:  # shots whose lips are synced (dialogue: tts+lipsync)
        totals = {"lines": totals["lines"], "shots": totals["shots"], "lip sync": synced, "episodes": len(todo)}
    to_make = sum(1 for e in todo for s in e.shots if s.state not in REUSED or s.id in force)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    # redrawn 4 times a second on a terminal; into a file or a pipe only once, at the end (rich would
    # otherwise rebuild the bars 10 times a second for nobody: 0.2 CPU-s of a one-line edit's render)
    with Progress(TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False, auto_refresh=console.is_terminal,
                  refresh_per_second=4) as bars:
        console.print(f"[bold]{esc(lp.project.title)}[/]: rendering episode(s) {ranges([e.number for e in todo])} "
                      f"({totals['shots']} shots, {to_make} to make; {totals['lines']} lines); starting Prefect…")
        ids = {k: bars.add_task(k, total=v) for k, v in totals.items()}

        class _Bars:
            def advance(self, kind: str, n: int = 1) -> None:
                if kind in ids:
                    bars.advance(ids[kind], n)

            def note(self, message: str) -> None:
                console.print(esc(message))

        outcomes = run.render(lp, checked, dask=dask, reporter=_Bars(), requested_at=asked, via=via,
                              languages=languages)
    failed = _report_outputs(console, sorted(outcomes + kept, key=lambda o: o["episode"]))
    console.print(f"  review: {esc(str(run.review_index(lp)))}")
    if any(o.get("blocked") for o in outcomes):
        console.print("[red]fix the voices, lines or references above[/] (project.yaml cast, backends), "
                      f"then `dramaforge render {esc(str(lp.root))}` again")
        raise typer.Exit(1)
    if any(d.get("failed") or d.get("blocked") for o in outcomes for d in o.get("dubs", ())):
        console.print("[red]a dub was not made[/] (above): fix it, then render again (`--language` makes one)")
        raise typer.Exit(1)
    if failed:
        console.print(f"[red]{len(failed)} shot(s) failed[/]; see `dramaforge status {esc(str(lp.root))}`, "
                      f"then `dramaforge rerun {esc(str(lp.root))} --failed`")
        raise typer.Exit(1)
    console.print(f"[green]done[/] in {time.monotonic() - started:.1f}s")


def _resumed(console, recovered: tuple[int, int]) -> None:
    interrupted, swept = recovered
    if interrupted or swept:
        console.print(f"resuming: {interrupted} interrupted unit(s), {swept} partial file(s) removed")


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

    up = f"; episode(s) {ranges(est.up_to_date)} up to date" if est.up_to_date else ""
    if not est.episodes:
        print(f"{lp.project.title}: nothing to render{up}")
        return
    print(f"{lp.project.title}: would render episode(s) {ranges(est.episodes)}{up}")
    verbs = {"video": ("to make", "reused"), "speech": ("to speak", "reused"), "image": ("to make", "reused"),
             "assembly": ("to assemble", "up to date"), "planning": ("to make (LLM)", "cached"),
             "translation": ("to make", "cached"), "lipsync": ("to sync", "synced")}
    for w in est.work:
        if not (w.todo or w.cached):
            continue
        noun, (verb, kept) = UNIT[w.kind], verbs[w.kind]
        asked = " asked for" if est.hosted else ""
        sent = f", {w.images} image(s) sent" + (f", {w.uploads} to upload first" if w.uploads else "") \
            if w.kind == "video" and w.todo and w.images else ""
        sent += f", {w.takes} of them further takes" if w.kind == "video" and w.takes else ""
        size = f" ({w.todo_s:.1f} s of video{asked}{sent})" if w.kind == "video" and w.todo else \
            f" ({w.chars} chars{f', {w.voices} voice(s) to enroll' if w.voices else ''})" \
            if w.kind == "speech" and (w.todo or w.voices) else \
            f" ({w.todo_s:.1f} s of video sent)" if w.kind == "lipsync" and w.todo else ""
        amount = f"{w.todo} {noun}(s) {verb}{size}, {w.cached} {kept}"
        timing = hms(w.time_s) + (f" ({w.basis})" if w.basis else "") if w.todo else ""
        if w.kind == "video" and w.todo and w.time_s is not None:
            timing += f", {est.concurrency} at once"
        who = f"{w.backend} ({w.who})" if w.who else w.backend
        print(f"  {w.kind:<8} {who:<13} {amount:<52} {money(w.cost) if w.todo or w.voices else '':>12}  {timing}")
    print(f"  total: {money(est.cost)}, {hms(est.time_s)} of rendering")
    video = next((w for w in est.work if w.kind == "video" and w.todo), None)
    if video is not None and est.hosted:
        if est.recreate:
            print(f"  worst case: {money(est.worst_cost)} if every shot's paid job fails at the provider and is "
                  f"re-created {est.recreate} time(s) (limits.recreate_failed_jobs)")
        else:
            print(f"  worst case: {money(est.worst_cost)}: one paid job per shot; a poll or download that fails is "
                  "retried free, a job the provider fails is not re-created (limits.recreate_failed_jobs = 0)")
    if est.retakes:
        print(f"  identity retakes: up to {est.retakes} more take(s) if no take of those shots is the character "
              f"(identity.on_drift: retake); worst case {money(est.worst_cost)}")
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
    failed = []
    for o in outcomes:
        if o["mp4"]:
            if "shape" in o:  # an up-to-date cut: checked to be the project's size and the cut's length
                seconds, width, height, fps = o["shape"]
            else:
                from stages.core.media import probe

                info = probe(Path(o["mp4"]))
                seconds, width, height, fps = info.duration_s, info.width, info.height, info.fps
            note = " (up to date)" if o["reused"] else ""
            console.print(f"  {esc(o['mp4'])}  {seconds:.2f}s {width}x{height} {fps:g}fps{note}")
            for d in o.get("dubs", ()):  # each dub language's cut, or why it is not made
                if d.get("mp4") and not (d.get("failed") or d.get("blocked")):
                    console.print(f"  {esc(d['mp4'])}{' (up to date)' if d['reused'] else ''}")
                for h in d.get("held", ()):
                    console.print(f"    [yellow]held[/] {h['line']}: {h['overrun_s']:.2f} s longer than its place "
                                  f"at {h['tempo']:g}x; {h['shot']} holds its last frame for it")
                for reason in d.get("failed", []) + d.get("blocked", []):
                    console.print(f"  [red]ep{o['episode']:02d} {d['language']} not made[/]: {esc(reason)}")
        elif o.get("blocked"):
            failed.extend(o["blocked"])
            console.print(f"  [red]ep{o['episode']:02d} not rendered[/]: {len(o['blocked'])} problem(s) before "
                          "any shot was made:")
            for reason in o["blocked"]:
                console.print(f"    {esc(reason)}")
        else:
            failed.extend(o["failed"])
            console.print(f"  [red]ep{o['episode']:02d} not assembled[/]: {len(o['failed'])} shot(s) failed")
            if o["stopped"]:
                console.print(f"    [red]stopped[/]: {len(o['stopped'])} shot(s) not attempted after "
                              f"{len(o['failed'])} failures (limits.failed_shots_per_episode)")
    return failed
