"""A series rendered by Prefect workers on other machines: `dramaforge deploy`, `dramaforge worker`,
`render --via deployment`.

`deploy PROJECT` makes two process work pools, `dramaforge-api` (hosted backends, TTS, LLM, the cut:
many slots, little memory) and `dramaforge-gpu` (local models: a worker per GPU, one run at a time), and
the project's deployments: `render_series/<name>` (it plans, waits and writes the series files) and
`render_episode/<name>` (speech and the cut) on the API pool and, where a backend making the pictures
declares a GPU (`capabilities.pool`), `render_pictures/<name>` (reference sheets, shots, lip sync) on the
GPU pool. The series run starts each episode as a run of the episode deployment, which starts its
pictures as a run of the pictures deployment, so each unit runs on the pool its backend needs and the
episodes spread over the pools' workers; their units take the backends' limits from the Prefect server
(`flows/limits.py`). A crashed run (its worker died) is started again, on any worker of its pool: what
it made is kept, a paid job is resumed by id; a run whose machine died outright is marked Crashed when
its heartbeats stop (`_zombie_automation`). Deployments name their flows by
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
TAG = "dramaforge"  # on every run of the deployments: what the zombie automation watches
HEARTBEAT_S = 30  # a worker's flow runs beat this often (Prefect's least)...
ZOMBIE_S = 3 * HEARTBEAT_S  # ...and one silent this long is marked Crashed, so it is started again
ZOMBIE = "dramaforge: a run whose machine died is Crashed"


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


def deploy(lp, warn=lambda message: None) -> dict[str, str]:
    """The work pools and the zombie automation (made once) and the project's deployments (made or
    updated): name -> pool. `warn` hears what works without being as it should."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.types.entrypoint import EntrypointType
    from prefect.workers.process import ProcessWorker

    from flows.render_episode import render_episode
    from flows.render_pictures import render_pictures
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
    try:
        _zombie_automation()
    except Exception as exc:  # a server without automations: the rest works, a dead machine's run waits
        warn(f"could not make the automation {ZOMBIE!r} on {need_server('deploy')}: {exc}; a run whose "
             "worker machine dies will stay Running until you cancel it (`prefect flow-run cancel ID`)")
    name, root = deployment_name(lp.root), str(lp.root.resolve())
    base = {"project_dir": root, "command_root": str(lp.root)}
    on_gpu = pictures_pool(backends_for(lp.project, lp.root)) == "gpu"  # the pictures on the GPU pool's workers
    plan = [(render_series, POOLS["api"], {**base, "shared_limits": True, "via_deployment": f"render_episode/{name}"}),
            (render_episode, POOLS["api"], {**base, "pictures_via": f"render_pictures/{name}"} if on_gpu else base)]
    plan += [(render_pictures, POOLS["gpu"], base)] if on_gpu else []
    made = {}
    for flow, pool, parameters in plan:
        with contextlib.redirect_stdout(io.StringIO()):  # Prefect prints its own table of what it applied
            flow.deploy(name=name, work_pool_name=pool, entrypoint_type=EntrypointType.MODULE_PATH,
                        parameters=parameters, build=False, push=False, print_next_steps=False, tags=[TAG],
                        ignore_warnings=True, description=f"dramaforge: {lp.project.title} ({root})")
        made[f"{flow.name}/{name}"] = pool
    return made


def _zombie_automation() -> None:
    """The server's automation (made once) that marks a run of these deployments Crashed when its
    heartbeats stop: its worker machine died outright, and nothing else would say so. The run waiting
    on it then starts it again on another worker (`farm_runs`). As Prefect's own guide builds it
    (docs.prefect.io/v3/advanced/detect-zombie-flows), limited to runs tagged `dramaforge`."""
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    try:
        Automation.read(name=ZOMBIE)
        return
    except ValueError:  # none by that name yet
        pass
    Automation(name=ZOMBIE, description="made by `dramaforge deploy`", trigger=EventTrigger(
        after={"prefect.flow-run.heartbeat"},
        expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
        match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
        match_related=ResourceSpecification({"prefect.resource.id": f"prefect.tag.{TAG}"}),
        for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
        within=timedelta(seconds=ZOMBIE_S)),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"no heartbeat for {ZOMBIE_S} s: its worker machine is gone")]).create()


def pictures_pool(backends) -> str:
    """Where an episode's pictures are made: on the GPU pool if a backend making them (the video, the
    reference sheets' images, lip sync) runs a local model, else with the rest of the episode."""
    return "gpu" if any(b.capabilities.pool == "gpu" for b in (backends.video, backends.image, backends.lipsync)) \
        else "api"


def worker_command(pool: str, gpu: str | None, limit: int | None) -> tuple[list[str], dict[str, str]]:
    """`prefect worker start` for one of the pools, and its environment (a GPU worker sees one GPU)."""
    import shutil
    import sys

    if pool == "api" and limit is not None and limit < 2:  # its one slot held by a series run that waits on episodes
        raise InputError(f"--pool api --limit {limit}: a series run and its episode runs run on the API pool at once",
                         hint="give it --limit 2 or more (default 8)")
    need_server("dramaforge worker")
    env = {**os.environ, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S)}  # see _zombie_automation
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
