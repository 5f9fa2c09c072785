"""A series rendered by Prefect workers on other machines: `dramaforge deploy`, `dramaforge worker`,
`render --via deployment`.

`deploy PROJECT` makes two process work pools, `dramaforge-api` (hosted backends, TTS, LLM: many
slots, little memory) and `dramaforge-gpu` (local models: a worker per GPU, one run at a time), and two
deployments of the project: `render_series/<name>` on the API pool (it only plans, waits and writes the
series files) and `render_episode/<name>` on the pool its video backend declares (`capabilities.pool`:
gpu for a local model, api otherwise). The series run starts each episode as a run of the episode
deployment, so episodes spread over that pool's workers; their units take the backends' limits from the
Prefect server (`flows/limits.py`). A crashed episode run (its worker died) is started again, on any
worker of the pool: what it made is kept, a paid job is resumed by id. Deployments name their flows by
module (`flows.render_series.render_series`): every worker needs dramaforge installed, and the project
folder at the same path (`stages/core/shared_fs.py` says which filesystems hold its locks).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import time
from pathlib import Path

from flows.farm_runs import RUNS
from stages.core.errors import InputError, RenderError

POOLS = {"api": "dramaforge-api", "gpu": "dramaforge-gpu"}


def deployment_name(root: Path) -> str:
    """The project's deployments' name: its folder's name and a hash of its path (two `drama` folders
    on one server stay apart)."""
    real = str(Path(root).resolve())
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', Path(real).name)[:40]}-{hashlib.sha256(real.encode()).hexdigest()[:8]}"


def need_server(what: str) -> str:
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        raise InputError(f"{what} needs a Prefect server that this machine and every worker can reach",
                         hint="run `prefect server start --host 0.0.0.0`, then set "
                              "PREFECT_API_URL=http://HOST:4200/api here and on each worker")
    return url


def deploy(lp) -> dict[str, str]:
    """The work pools (made once) and the project's two deployments (made or updated): name -> pool."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.types.entrypoint import EntrypointType
    from prefect.workers.process import ProcessWorker

    from flows.render_episode import render_episode
    from flows.render_series import render_series
    from stages.backends.registry import backends_for
    from stages.core.shared_fs import refuse_unshared

    need_server("deploy")
    refuse_unshared(lp.build)
    with get_client(sync_client=True) as client:
        for pool in POOLS.values():
            try:
                client.create_work_pool(WorkPoolCreate(
                    name=pool, type="process", base_job_template=ProcessWorker.get_default_base_job_template()))
            except ObjectAlreadyExists:
                pass
    name, root = deployment_name(lp.root), str(lp.root.resolve())
    episode_pool = POOLS["gpu" if backends_for(lp.project, lp.root).video.capabilities.pool == "gpu" else "api"]
    made = {}
    for flow, pool, parameters in (
            (render_series, POOLS["api"], {"project_dir": root, "command_root": str(lp.root), "shared_limits": True,
                                           "via_deployment": f"render_episode/{name}"}),
            (render_episode, episode_pool, {"project_dir": root, "command_root": str(lp.root)})):
        with contextlib.redirect_stdout(io.StringIO()):  # Prefect prints its own table of what it applied
            flow.deploy(name=name, work_pool_name=pool, entrypoint_type=EntrypointType.MODULE_PATH,
                        parameters=parameters, build=False, push=False, print_next_steps=False,
                        ignore_warnings=True, description=f"dramaforge: {lp.project.title} ({root})")
        made[f"{flow.name}/{name}"] = pool
    return made


def worker_command(pool: str, gpu: str | None, limit: int | None) -> tuple[list[str], dict[str, str]]:
    """`prefect worker start` for one of the pools, and its environment (a GPU worker sees one GPU)."""
    import shutil
    import sys

    need_server("dramaforge worker")
    env = dict(os.environ)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    prefect = shutil.which("prefect", path=str(Path(sys.executable).parent)) or shutil.which("prefect") or "prefect"
    slots = limit if limit is not None else (1 if pool == "gpu" else 8)
    return [prefect, "worker", "start", "--pool", POOLS[pool], "--type", "process", "--limit", str(slots)], env


def follow(lp, checked, requested_at: float) -> list[dict]:
    """`render --via deployment`: a run of the project's series deployment, followed here until it ends,
    its progress read from the ledger (what the workers made); the outcomes its series run wrote."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from flows import progress
    from stages.core.ledger import REUSED, Ledger
    from stages.core.paths import BuildPaths

    need_server("render --via deployment")
    name = f"render_series/{deployment_name(lp.root)}"
    try:
        run = run_deployment(name, parameters={
            "episodes": [e.number for e in checked.todo], "force": sorted(checked.force),
            "skipped": [e.number for e in checked.current], "requested_at": requested_at}, timeout=0,
            as_subflow=False)
    except Exception as exc:  # no such deployment (404) or no server: say what to run
        raise InputError(f"cannot start {name}: {exc}", hint=f"run `dramaforge deploy {lp.root}` first") from exc
    progress.note(f"submitted {name} as flow run {run.name}; following it (Ctrl-C leaves it running)")
    ledger, episodes, seen = Ledger(BuildPaths(lp.build).ledger), {e.number for e in checked.todo}, {}
    progress.advance("shots", sum(1 for e in checked.todo for s in e.shots if s.state in REUSED and s.id not in
                                  checked.force))  # kept as made: counted now, as a local render does
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(run.id).state
            for kind, bar in (("shot", "shots"), ("speech", "lines"), ("episode", "episodes")):
                count = sum(1 for e in episodes for r in ledger.rows(episode=e, kind=kind)
                            if r.state in ("done", "failed", "rejected") and (r.finished_at or 0) >= requested_at)
                if count > seen.get(bar, 0):
                    progress.advance(bar, count - seen.get(bar, 0))
                    seen[bar] = count
            if state is not None and state.is_final():
                break
            time.sleep(1)
    outcomes = BuildPaths(lp.build).root / RUNS / f"series-{run.id}.json"
    if not state.is_completed() or not outcomes.exists():
        raise RenderError(f"{name}: flow run {run.name} ended {state.name}: {state.message or ''}".rstrip(": "))
    return json.loads(outcomes.read_text(encoding="utf-8"))
