"""A series run's episodes as runs of the project's episode deployment, an episode's pictures as a run of
its pictures deployment (`flows/farm.py` makes them), and the outcomes they leave in the shared build
folder for the run that waits on them."""

from __future__ import annotations

import json
from pathlib import Path

from stages.core.errors import RenderError

CRASH_RETRIES = 2  # an episode run whose worker died is started again this many times
RUNS = "runs"  # build/runs/<farm>/: each episode run's outcome, read by its series run


def run_episodes(name: str, calls: list[tuple], farm: str, build: Path, done) -> list[dict]:
    """Each episode as a run of the deployment `name` (on its pool's workers), all submitted at once (the
    workers' limits pace them); their outcomes in order."""
    import concurrent.futures
    import contextvars

    def one(args) -> dict:
        project_dir, episode, remake, command_root, requested_at = args[:5]
        return _run_and_read(name, {"project_dir": project_dir, "episode": episode, "remake": remake,
                                    "command_root": command_root, "requested_at": requested_at, "farm": farm,
                                    **({"languages": args[7]} if len(args) > 7 and args[7] is not None else {})},
                             outcome_path(build, farm, episode), f"episode {episode}")

    with concurrent.futures.ThreadPoolExecutor(min(32, max(1, len(calls))), thread_name_prefix="episode-run") as pool:
        # each in a copy of this flow run's context: Prefect records the episode runs as its children
        futures = [pool.submit(contextvars.copy_context().run, one, args) for args in calls]
        outcomes = []
        for future in futures:
            outcomes.append(future.result())
            done(outcomes[-1])
    return outcomes


def run_pictures(name: str, project_dir: str, episode: int, remake: list[str] | None, command_root: str | None,
                 requested_at: float, farm: str, respoken: list[str]) -> dict:
    """An episode's reference sheets, shots and lip sync as a run of the deployment `name` (on the pool
    their backends declare), waited for; what it made (`render_episode.pictures`)."""
    from stages.core.paths import BuildPaths

    made = _run_and_read(name, {"project_dir": project_dir, "episode": episode, "remake": remake,
                                "command_root": command_root, "requested_at": requested_at, "farm": farm,
                                "respoken": respoken},
                         outcome_path(BuildPaths.of(Path(project_dir)).root, farm, episode, "pictures"),
                         f"episode {episode}'s pictures")
    made.pop("episode", None)
    return made


def _run_and_read(name: str, parameters: dict, outcome: Path, what: str) -> dict:
    """A run of deployment `name`, as a child of this flow run, waited for; the outcome it wrote. A run
    that crashed (its worker died or was killed) is started again, on any worker of the pool."""
    from prefect.deployments import run_deployment

    outcome.unlink(missing_ok=True)  # an earlier render's: only this run's may be read
    for attempt in range(CRASH_RETRIES + 1):
        run = run_deployment(name, parameters=parameters, timeout=None, poll_interval=1, as_subflow=True)
        if not run.state.is_crashed() or attempt == CRASH_RETRIES:
            break
    if not run.state.is_completed() or not outcome.exists():
        raise RenderError(f"{what}: its run {run.name} ended {run.state.name}: "
                          f"{run.state.message or 'no outcome written'}")
    return json.loads(outcome.read_text(encoding="utf-8"))


def write_outcome(build: Path, farm: str, outcome: dict, part: str | None = None) -> None:
    """An episode run's outcome (or its `part`'s: pictures) where the run waiting on it reads it (the
    shared build folder)."""
    from stages.core.artifacts import write_text_atomic

    path = outcome_path(build, farm, outcome["episode"], part)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(outcome))


def outcome_path(build: Path, farm: str, episode: int, part: str | None = None) -> Path:
    """Where a run of episode `episode` (or of its `part`) leaves its outcome: its writer and its reader."""
    return build / RUNS / farm / (f"ep{episode:02d}" + (f"-{part}" if part else "") + ".json")


def write_outcomes(build: Path, run_id: str, outcomes: list[dict]) -> None:
    """A series run's outcomes, for the `render --via deployment` that follows it."""
    from stages.core.artifacts import write_text_atomic

    (build / RUNS).mkdir(parents=True, exist_ok=True)
    write_text_atomic(build / RUNS / f"series-{run_id}.json", json.dumps(outcomes))
