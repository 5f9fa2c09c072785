"""A series run's episodes as runs of the project's episode deployment (`flows/farm.py` makes it), and
the outcomes they leave in the shared build folder for the run that waits on them."""

from __future__ import annotations

import json
from pathlib import Path

from stages.core.errors import RenderError

CRASH_RETRIES = 2  # an episode run whose worker died is started again this many times
RUNS = "runs"  # build/runs/<farm>/: each episode run's outcome, read by its series run


def run_episodes(name: str, calls: list[tuple], farm: str, build: Path, done) -> list[dict]:
    """Each episode as a run of the deployment `name` (on its pool's workers), all submitted at once (the
    workers' limits pace them); their outcomes in order. A run that crashed is started again."""
    import concurrent.futures
    import contextvars

    from prefect.deployments import run_deployment

    def one(args) -> dict:
        project_dir, episode, remake, command_root, requested_at = args[:5]
        for attempt in range(CRASH_RETRIES + 1):
            run = run_deployment(name, parameters={
                "project_dir": project_dir, "episode": episode, "remake": remake, "command_root": command_root,
                "requested_at": requested_at, "farm": farm}, timeout=None, poll_interval=1, as_subflow=True)
            if not run.state.is_crashed() or attempt == CRASH_RETRIES:
                break
        outcome = build / RUNS / farm / f"ep{episode:02d}.json"
        if not run.state.is_completed() or not outcome.exists():
            raise RenderError(f"episode {episode}: its run {run.name} ended {run.state.name}: "
                              f"{run.state.message or 'no outcome written'}")
        return json.loads(outcome.read_text(encoding="utf-8"))

    with concurrent.futures.ThreadPoolExecutor(min(32, max(1, len(calls))), thread_name_prefix="episode-run") as pool:
        # each in a copy of this flow run's context: Prefect records the episode runs as its children
        futures = [pool.submit(contextvars.copy_context().run, one, args) for args in calls]
        outcomes = []
        for future in futures:
            outcomes.append(future.result())
            done(outcomes[-1])
    return outcomes


def write_outcome(build: Path, farm: str, outcome: dict) -> None:
    """An episode run's outcome where its series run reads it (the shared build folder)."""
    from stages.core.artifacts import write_text_atomic

    folder = build / RUNS / farm
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / f"ep{outcome['episode']:02d}.json", json.dumps(outcome))


def write_outcomes(build: Path, run_id: str, outcomes: list[dict]) -> None:
    """A series run's outcomes, for the `render --via deployment` that follows it."""
    from stages.core.artifacts import write_text_atomic

    (build / RUNS).mkdir(parents=True, exist_ok=True)
    write_text_atomic(build / RUNS / f"series-{run_id}.json", json.dumps(outcomes))
