"""A series: every requested episode, one `render_episode` subflow each."""

from __future__ import annotations

from prefect import flow

from flows.render_episode import render_episode


@flow(name="render_series", log_prints=False)
def render_series(project_dir: str, episodes: list[int]) -> list[dict]:
    """Render the episodes in order; one outcome per episode (see `render_episode`)."""
    return [render_episode(project_dir, number) for number in episodes]
