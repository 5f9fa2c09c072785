"""An episode's pictures (reference sheets, shots, lip sync) as a flow of their own: the run a GPU
worker makes for an episode whose speech and cut run on the API pool (`flows/farm.py`). Not imported by
a render on one machine, whose episode flow makes its pictures itself."""

from __future__ import annotations

import time
from pathlib import Path

from flows.plain_flow import flow
from flows.render_episode import pictures
from stages.backends.registry import backends_for
from stages.core.ledger import Ledger
from stages.core.paths import BuildPaths
from stages.load_project import load_project
from stages.plan_work import plan_work


@flow(name="render_pictures", flow_run_name="{project_dir}:ep{episode}:pictures", log_prints=False)
def render_pictures(project_dir: str, episode: int, remake: list[str] | None = None,
                    command_root: str | None = None, requested_at: float | None = None,
                    farm: str | None = None, respoken: list[str] | None = None) -> dict:
    """An episode's reference sheets, shots and lip sync, for its episode run on another pool's worker
    (`render_episode`'s `pictures_via`): its speech is made, its plan timed from it. `respoken`: lines
    spoken anew (`rerun --line`), whose synced pieces are synced again."""
    started = time.time()
    lp = load_project(Path(project_dir))
    paths, backends = BuildPaths(lp.build), backends_for(lp.project, lp.root)
    ledger = Ledger(paths.ledger)
    work = plan_work(lp, episode, backends, placeholders=ledger.placeholders())
    made = pictures(lp, work, backends, ledger, paths, frozenset(remake or ()), respoken or [], started,
                    command_root or project_dir, requested_at or started, farm)
    if farm:
        from flows.farm_runs import write_outcome

        write_outcome(paths.root, farm, {"episode": episode, **made}, part="pictures")
    return made
