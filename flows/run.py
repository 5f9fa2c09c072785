"""The command line's way into a render: the guards first, without Prefect (a refused, dry or no-op
render answers in about the time of `status`), then the `render_series` flow for what is left.
Also which episodes and shots a `rerun` means, and accepting placeholders."""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path

from flows import progress
from flows.guards import Checked, check_render
from stages.core.errors import InputError
from stages.core.ledger import NEEDS_RERUN, Ledger, State
from stages.core.paths import BuildPaths
from stages.load_project import LoadedProject
from stages.project_status import project_status


def prefect_environment() -> None:
    """Quiet, offline-friendly Prefect settings, unless the user set their own."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_LOG_PRINTS", "false")
    os.environ.setdefault("PREFECT_CLI_PROMPT", "false")
    os.environ.setdefault("PREFECT_UI_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


class _EnvironmentQuiet:
    """Drops Prefect's log lines (and tracebacks) about a full disk or an unwritable folder: the
    command says it once, in one paragraph (`cli.main`), instead of once per task and flow."""

    def filter(self, record) -> bool:
        from stages.core.errors import environment_failure

        exc = record.exc_info[1] if record.exc_info else None
        return not ((exc is not None and environment_failure(exc) is not None)
                    or "EnvironmentFailure" in record.getMessage())


def quiet_environment_failures() -> None:
    import logging

    for name in ("prefect.flow_runs", "prefect.task_runs", "prefect.flow_engine", "prefect.task_engine"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _EnvironmentQuiet) for f in logger.filters):
            logger.addFilter(_EnvironmentQuiet())


def prepare(lp: LoadedProject, numbers: list[int], *, dask: str | None = None, max_cost: float | None = None,
            force: set[str] = frozenset(), dry_run: bool = False, via: str | None = None) -> Checked:
    """Everything a render checks before it starts (see `guards.check_render`), and that a Dask
    cluster or the project's deployment (`via`) can be used at all."""
    if dask:
        from flows.tasks import dask_runner

        dask_runner(dask)  # refuse now, before any work, if the extra is missing
    if dask or via:  # units on other machines: one server everyone reaches (else each Dask worker would
        # start a private one, its runs and limits invisible here), a build folder whose locks they share
        from flows.farm import need_server
        from stages.core.shared_fs import refuse_unshared

        need_server("--dask" if dask else "render --via deployment")
        refuse_unshared(lp.build)
    return check_render(lp, numbers, max_cost=max_cost, force=force, dry_run=dry_run)


def render(lp: LoadedProject, checked: Checked, *, dask: str | None = None,
           reporter: progress.Reporter | None = None, requested_at: float | None = None,
           via: str | None = None, languages: list[str] | None = None) -> list[dict]:
    """Start Prefect and run `render_series` over the episodes `checked` found not up to date (its
    spend guard passed already: checking again after the LLM planned would refuse what was paid for).
    Prefect's server and every ffmpeg end with this process, however it ends (`lifetime`). With `via`
    ("deployment"), a run of the project's deployment on the workers instead, followed here."""
    if via:
        from flows.farm import follow

        progress.install(reporter)
        try:
            return follow(lp, checked, requested_at or time.time())
        finally:
            progress.install(None)
    from flows.lifetime import tie_children

    tie_children()
    prefect_environment()
    from importlib import import_module

    from flows.prefect_server import connect

    # Importing Prefect makes a million objects that live until exit, and next to no garbage: the
    # collector is off meanwhile, then they are frozen out of its way (0.25 CPU-s of a one-line edit)
    gc.disable()
    try:
        # the user's server, or the local one renders share (started by the first: the flows' code is
        # imported meanwhile)
        _, users = connect(while_starting=lambda: import_module("flows.render_series"))
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

        from flows.render_series import render_series
    finally:
        gc.freeze()
        gc.enable()
    quiet_environment_failures()

    # Flow-run heartbeats serve a server's automations (none on ours), and each flow run waits up to
    # 1 s for its heartbeat thread to stop: measured 1.1 s of every episode's 1.2 s of Prefect cost.
    beats = {} if users else {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    progress.install(reporter)
    try:
        with temporary_settings(updates=beats):
            return render_series(str(lp.root.resolve()), [e.number for e in checked.todo],
                                 force=sorted(checked.force), skipped=[e.number for e in checked.current],
                                 dask_address=dask, command_root=str(lp.root), requested_at=requested_at,
                                 languages=languages)
    finally:
        progress.install(None)


def rerun_selection(lp: LoadedProject, *, failed: bool = False, shots: list[str] | None = None,
                    stale: bool = False, episode: int | None = None, lines: list[str] | None = None
                    ) -> tuple[list[int], set[str]]:
    """(episodes to render, shots or lines to make anew) for one `rerun` mode."""
    if sum([failed, bool(shots), stale, episode is not None, bool(lines)]) != 1:
        raise InputError("rerun needs exactly one of --failed, --shot ID, --line ID, --stale, --episode N",
                         hint="e.g. `dramaforge rerun PROJECT --failed`")
    if episode is not None:  # checked against the script by the caller
        return [episode], set()
    statuses = project_status(lp, cached_only=True)
    if lines:
        spoken = {ln.id: e.number for e in statuses for ln in e.speech}
        unknown = [i for i in lines if i not in spoken]
        if unknown:
            raise InputError(f"no line {', '.join(unknown)} in this project",
                             hint=f"line ids look like ep01-sc01-sh002-l1: see `dramaforge status {lp.root} --json`")
        return sorted({spoken[i] for i in lines}), set(lines)
    # a voice's enrollment is named like a shot for `--shot voice-<character>-<engine> --new-job`
    by_id = {s.id: (e.number, s) for e in statuses
             for s in (*e.shots, *(u for u in e.syncs if u.id.endswith("-lips")), *e.voices)}
    if shots:
        unknown = [i for i in shots if i not in by_id]
        if unknown:
            raise InputError(f"no shot {', '.join(unknown)} in this project",
                             hint=f"see the ids with `dramaforge status {lp.root}`")
        return sorted({by_id[i][0] for i in shots}), set(shots)
    wanted = NEEDS_RERUN if failed else (State.STALE,)
    return sorted({n for n, s in by_id.values() if s.state in wanted}), set()


def new_jobs(lp: LoadedProject, shots: list[str]) -> list[str]:
    """`rerun --shot ID --new-job`: each shot's open or unknown paid jobs are given up on (kept in the
    journal, billed in reports; a running one is cancelled at the provider where it can be), so the
    render pays for a new one. Returns what was done, for the user."""
    import getpass
    import time

    from stages.backends.registry import backends_for
    from stages.core.jobs import JobState, Journal

    journal = Journal(Ledger(BuildPaths(lp.build).ledger))
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    said, video = [], None
    for shot_id in shots:
        for job in journal.abandon(shot_id, f"given up by `rerun --shot {shot_id} --new-job` ({getpass.getuser()}, "
                                            f"{when})"):
            if shot_id.startswith("voice-"):  # the voice it recorded is given up: enrolled again
                BuildPaths(lp.build).voice(job.spec_hash).unlink(missing_ok=True)
            said.append(f"{shot_id}: gave up on job {job.job_id or job.client_key} ({job.state} on {job.provider})")
            if job.state == JobState.SUBMITTED and job.job_id and not shot_id.startswith("voice-"):
                video = video or backends_for(lp.project, lp.root).video
                try:
                    video.cancel(job.job_id)
                    said[-1] += "; cancelled at the provider"
                except Exception as exc:  # best effort: it stays billed in the journal either way
                    said[-1] += f"; could not cancel it ({exc})"
        said.append(f"{shot_id}: a new paid job will be made")
    return said


def accept_placeholders(lp: LoadedProject, shots: list[str], *, force: bool = False) -> None:
    """The user accepts a card in place of each of these shots (each keeps its last error as the reason).
    A shot that is made (done) is not replaced by a card unless `force`: its clip would leave the cut."""
    states = {s.id: (e.number, s.state) for e in project_status(lp) for s in e.shots}
    known = {i: n for i, (n, _) in states.items()}
    unknown = [i for i in shots if i not in known]
    if unknown:
        raise InputError(f"no shot {', '.join(unknown)} in this project", hint=f"see `dramaforge status {lp.root}`")
    done = [i for i in shots if states[i][1] == State.DONE]
    if done and not force:
        raise InputError(f"shot {', '.join(done)} is made and would be replaced by a placeholder card",
                         hint="a placeholder stands in for a shot that keeps failing; to replace a finished shot "
                              "anyway, add --force")
    ledger = Ledger(BuildPaths(lp.build).ledger)
    for i in shots:
        ledger.accept_placeholder(i, episode=known[i])


def review_index(lp: LoadedProject) -> Path:
    return BuildPaths(lp.build).review_page("index.html")
