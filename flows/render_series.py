"""A series: the guards, every episode not up to date (one `render_episode` subflow each, two shot at once),
the series files and a run report.

Self-sufficient: run on its own (as a Prefect deployment runs it) it refuses what lacks an extra, a
voice or a sound file or is over `max_cost`, skips what is up to date, recovers from a killed render
and delivers the series files, as `dramaforge render` does: both run the same guards (`flows/guards.py`).
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from flows import progress
from flows.guards import check_render, deliver, start_render
from flows.farm_runs import run_episodes, write_outcomes
from flows.plain_flow import flow
from flows.render_episode import render_episode
from flows.tasks import dask_runner, episodes_at_once
from stages.backends.registry import backends_for
from stages.core.jobs import Journal
from stages.core.ledger import Ledger
from stages.core.paths import BuildPaths
from stages.core.shared_fs import mark_farm, refuse_unshared
from stages.load_project import load_project
from stages.run_report import made_work, report_json, shot_table, summary_markdown, write_report


@flow(name="render_series", log_prints=False)
def render_series(project_dir: str, episodes: list[int] | None = None, max_cost: float | None = None,
                  force: list[str] | None = None, skipped: list[int] | None = None,
                  dask_address: str | None = None, command_root: str | None = None,
                  requested_at: float | None = None, shared_limits: bool | None = None,
                  via_deployment: str | None = None, languages: list[str] | None = None) -> list[dict]:
    """Render the episodes (default: all) whose cut is not up to date; one outcome per episode
    rendered (see `render_episode`).

    `max_cost` refuses the whole render when its estimate is over it or cannot be priced (the CLI
    checks before it starts the flow, and passes none); `force` names shots to make anew (`rerun
    --shot`); `skipped` lists episodes the caller already found up to date (the report mentions
    them); `dask_address` sends each episode's tasks to that Dask scheduler instead of local threads;
    `command_root` is the project as the user typed it, for the commands on the review pages;
    `requested_at` is when the user asked (default: now): a forced shot whose clip was made after it
    (by a `rerun --shot` of the same shot running beside this one) is kept, not paid for twice;
    `shared_limits`: its units run on other machines too (default: with `dask_address`; a deployment's
    runs set it): the build folder must be one they can share, and they take the backends' limits
    from the Prefect server; `via_deployment` runs each episode as a run of that deployment (its pool's
    workers, `flows/farm.py`) instead of a subflow here; `languages`: the dubs to make (default: every one
    `languages:` lists).
    """
    started = time.monotonic()
    requested_at = requested_at or time.time()
    # 1. refuse what cannot work or costs too much, before anything is made; find what is up to date
    lp = load_project(Path(project_dir)).dubbing(languages)
    numbers = episodes if episodes is not None else [e.number for e in lp.script.episodes]
    checked = check_render(lp, numbers, max_cost=max_cost, force=set(force or ()))
    skipped = sorted({*(skipped or ()), *checked.estimate.up_to_date})

    # 2. recover from a killed render: its partial files swept, its running units marked interrupted
    interrupted, swept = start_render(lp, checked)
    if interrupted or swept:
        progress.note(f"resuming: {interrupted} interrupted unit(s), {swept} partial file(s) removed")

    # 3. the episodes, two voiced and shot at a time while earlier ones are cut (their shots run in
    #    parallel, here or on the cluster)
    episode_flow = render_episode if not dask_address else render_episode.with_options(
        task_runner=dask_runner(dask_address))
    farm, spread = None, bool(dask_address) if shared_limits is None else shared_limits
    if spread:  # its units run on other machines too: a folder they can share, a token they check
        refuse_unshared(lp.build)
        farm = mark_farm(lp.build)
    calls = [(project_dir, e.number, sorted(checked.force & {s.id for s in (*e.shots, *e.speech)}), command_root,
              requested_at, farm, None, languages) for e in checked.todo]
    def done(outcome: dict) -> None:
        if outcome["mp4"]:
            progress.advance("episodes")

    outcomes = episodes_at_once(episode_flow, calls, done) if not via_deployment else \
        run_episodes(via_deployment, calls, farm or mark_farm(lp.build), lp.build, done)

    # 4. the series files: build/series.json and the review site
    deliver(lp, command_root)

    # 5. the run report: in Prefect (markdown + a table of shots) and in build/reports/ (.md and .json)
    project, paths = lp.project, BuildPaths(lp.build)
    table = shot_table(outcomes, Ledger(paths.ledger))
    backends = backends_for(project, lp.root)
    journal = Journal(Ledger(paths.ledger))
    jobs = journal.unreported(backends.video.name)  # every paid job, billed once
    synced = any(o.get("synced") for o in outcomes)
    lipsync_jobs = journal.unreported(backends.lipsync.name) if synced and backends.lipsync.capabilities.resumable \
        else None
    engines = dict.fromkeys(c.voice.backend or project.backends.speech for c in project.cast)  # even unspoken
    enrolled = {e: journal.unreported(e) for e in engines if getattr(backends.speech(e).capabilities, "enrolls", False)}
    work = made_work(outcomes, project, backends, jobs, lipsync_jobs, enrolled)
    report = (project.title, project_dir, outcomes, table, time.monotonic() - started, skipped, work,
              project.rates.currency)
    markdown = summary_markdown(*report)
    create_markdown_artifact(markdown, key="render-summary",
                             description="what this render made, reused and failed, and what it cost")
    create_table_artifact(table, key="render-shots", description="every shot of the rendered episodes")
    write_report(paths.reports, markdown, report_json(*report))
    if via_deployment:  # for the `render --via deployment` following this run, maybe on another machine
        write_outcomes(lp.build, flow_run.get_id(), outcomes)
    return outcomes
