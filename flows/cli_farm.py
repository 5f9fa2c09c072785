"""The commands of a render farm (`flows/farm.py`): `dramaforge deploy`, `dramaforge worker` (`flows/cli.py`
adds them to the command line)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from flows.console import err_console, esc
from stages.core.errors import InputError


def deploy(project: Annotated[Path, typer.Argument(help="project folder (holds project.yaml)",
                                                   show_default=False)]) -> None:
    """Register PROJECT with the Prefect server (PREFECT_API_URL) for its workers: the work pools
    dramaforge-api and dramaforge-gpu (made once), and its deployments: the series and its episodes
    (speech, the cut) on dramaforge-api, their pictures (sheets, shots, lip sync) on dramaforge-gpu where
    a backend making them runs a local model, and an automation that marks a run Crashed when its machine
    dies (its heartbeats stop), so that it is run again elsewhere. Then start workers
    (`dramaforge worker --pool gpu|api`) and `dramaforge render PROJECT --via deployment`."""
    from flows.farm import deploy as register
    from flows.run import prefect_environment
    from stages.load_project import load_project

    lp = load_project(project)
    prefect_environment()
    console = err_console()
    for name, pool in register(lp, warn=lambda m: console.print(f"[yellow]warning[/] {esc(m)}")).items():
        console.print(f"deployment {esc(name)} on work pool {pool}")
    console.print(f"next: `dramaforge worker --pool api` (and `--pool gpu` per GPU) on each machine, then "
                  f"`dramaforge render {esc(str(project))} --via deployment`")


def worker(pool: Annotated[str, typer.Option("--pool", metavar="api|gpu", help="dramaforge-api (speech, hosted "
                                             "models, the cuts: many runs at once) or dramaforge-gpu (local models' "
                                             "pictures)")],
           gpu: Annotated[Optional[str], typer.Option("--gpu", metavar="N", help="the GPU this worker uses "
                                                      "(sets CUDA_VISIBLE_DEVICES): start one worker per GPU")] = None,
           limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="runs at once (default: 1 on the "
                                                        "gpu pool, 8 on the api pool, which needs 2 or more)")]
           = None) -> None:
    """Start a Prefect worker for a dramaforge work pool on this machine (PREFECT_API_URL names the server;
    the project folders must be mounted here at the same paths). Runs until stopped (Ctrl-C)."""
    from flows.farm import worker_command

    if pool not in ("api", "gpu"):
        raise InputError(f"--pool {pool}: unknown", hint="--pool api or --pool gpu")
    cmd, env = worker_command(pool, gpu, limit)
    err_console().print(f"starting: {esc(' '.join(cmd))}" + (f" (CUDA_VISIBLE_DEVICES={gpu})" if gpu else ""))
    os.execvpe(cmd[0], cmd, env)  # the worker itself, in this process's place
