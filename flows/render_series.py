"""A series: every requested episode, one `render_episode` subflow each, then a run report."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.render_episode import render_episode
from flows.tasks import dask_runner, image_backend, speech_backend, video_backend
from stages.core.paths import BuildPaths
from stages.core.ledger import Ledger
from stages.load_project import load_project
from stages.run_report import made_work, report_json, shot_table, summary_markdown, write_report


@flow(name="render_series", log_prints=False)
def render_series(project_dir: str, episodes: list[int], skipped: list[int] | None = None,
                  dask_address: str | None = None) -> list[dict]:
    """Render the episodes in order; one outcome per episode (see `render_episode`).

    `skipped` lists episodes the caller found up to date; the report mentions them.
    `dask_address` sends each episode's tasks to that Dask scheduler instead of local threads.
    """
    started = time.monotonic()
    # 1. each episode, in order (its speech and shots run in parallel, here or on the cluster)
    episode_flow = render_episode if not dask_address else render_episode.with_options(
        task_runner=dask_runner(dask_address))
    outcomes = [episode_flow(project_dir, number) for number in episodes]

    # 2. the run report: in Prefect (markdown + a table of shots) and in build/reports/ (.md and .json)
    lp = load_project(Path(project_dir))
    project, paths, wall_s = lp.project, BuildPaths(lp.build), time.monotonic() - started
    table = shot_table(outcomes, Ledger(paths.ledger))
    config = project.backends.model_dump_json()
    work = made_work(outcomes, project, video=video_backend(config),
                     image=image_backend(project.backends.image.model_dump_json()),
                     speech=lambda engine: speech_backend(engine, config))
    report = (lp.project.title, project_dir, outcomes, table, wall_s, skipped or [], work, project.rates.currency)
    markdown = summary_markdown(*report)
    create_markdown_artifact(markdown, key="render-summary",
                             description="what this render made, reused and failed, and what it cost")
    create_table_artifact(table, key="render-shots", description="every shot of the rendered episodes")
    write_report(paths.root / "reports", markdown, report_json(*report))
    return outcomes
