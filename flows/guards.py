"""What every render checks and does around its episodes, wherever it runs (`dramaforge render`, or
a Prefect deployment of `render_series`): refuse what cannot work or costs too much before anything
is made, skip what is up to date, recover from a killed render, and deliver the series files after.

No Prefect here: the CLI runs these checks before Prefect starts (a refused or no-op render costs
about as much as `status`), and `render_series` runs the same ones itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from stages.backends.registry import BackendSet, backends_for
from stages.check_project import blockers
from stages.core.artifacts import sweep_partials
from stages.core.errors import InputError
from stages.core.ledger import Ledger, State
from stages.core.paths import BuildPaths
from stages.estimate_render import UNIT, Estimate, estimate_render, rate_hint
from stages.load_project import LoadedProject
from stages.project_status import EpisodeStatus, project_status


@dataclass
class Checked:
    """A render that may start: the episodes asked for, as they stand, and what making them costs."""

    statuses: list[EpisodeStatus]
    estimate: Estimate
    force: set[str] = field(default_factory=set)  # shots and lines to make anew (`rerun --shot`, `--line`)

    @property
    def todo(self) -> list[EpisodeStatus]:
        return [e for e in self.statuses if e.number in self.estimate.episodes]

    @property
    def current(self) -> list[EpisodeStatus]:
        """Cut exactly as they would be now: skipped."""
        return [e for e in self.statuses if e.number in self.estimate.up_to_date]


def check_render(lp: LoadedProject, numbers: list[int], *, max_cost: float | None = None,
                 force: set[str] = frozenset(), backends: BackendSet | None = None, dry_run: bool = False) -> Checked:
    """Refuse (InputError; nothing made, no folder, no call) a render that lacks what it needs or is
    over `max_cost`; else what it would make. An LLM planner is asked only after the spend guard,
    for the episodes it has not planned yet, and never for a `dry_run`."""
    missing = blockers(lp, keys=not dry_run)
    if missing:
        first, *more = missing
        raise InputError(first.message, file=first.file, line=first.line, text=first.text, hint=first.hint,
                         more=more)
    checked = estimate(lp, numbers, force=force, backends=backends)
    if max_cost is not None:
        check_cost(checked.estimate, max_cost)
    if not dry_run and any(e.provisional for e in checked.statuses):  # the LLM plans those now, as the render would
        checked = estimate(lp, numbers, force=force, backends=backends, cached_only=False)
    return checked


def estimate(lp: LoadedProject, numbers: list[int], *, force: set[str] = frozenset(),
             backends: BackendSet | None = None, cached_only: bool = True) -> Checked:
    """The episodes as they stand and what rendering them would make and cost (never asking an LLM
    planner unless `cached_only` is off)."""
    backends = backends or backends_for(lp.project, lp.root)
    statuses = project_status(lp, numbers, backends=backends, verify=True, cached_only=cached_only)
    known = {s.id for e in statuses for s in (*e.shots, *e.speech, *e.voices)}
    if set(force) - known:
        raise InputError(f"no shot {', '.join(sorted(set(force) - known))} in episode(s) {numbers} of this project",
                         hint=f"see the ids with `dramaforge status {lp.root}`")
    return Checked(statuses, estimate_render(statuses, lp.project, backends, ledger=_ledger(lp), force=set(force)),
                   set(force))


def check_cost(est: Estimate, max_cost: float) -> None:
    """Refuse a render over budget, or one that cannot be priced."""
    if est.unpriced:
        w = est.unpriced[0]
        raise InputError(f"--max-cost {max_cost:g}: cannot price {w.todo} {UNIT[w.kind]}(s) on {w.backend}: it may "
                         "charge and project.yaml has no rate for it (nothing was started)",
                         hint=f"set {rate_hint(w)} in project.yaml (0 for a free local server), then "
                              "`dramaforge estimate` shows the cost")
    if est.cost + est.retake_cost > max_cost:  # retakes the identity check may order count: paid for unasked
        retakes = f" with up to {est.retakes} identity retake(s)" if est.retakes else ""
        raise InputError(f"this render would cost about {est.currency} {est.cost + est.retake_cost:,.2f}{retakes}, "
                         f"over --max-cost {max_cost:,.2f} (nothing was started)",
                         hint="render fewer episodes (--episodes 1-2), raise --max-cost, or see "
                              "`dramaforge estimate` for what would be made")


def start_render(lp: LoadedProject, checked: Checked) -> tuple[int, int]:
    """Make the build folders; sweep a killed render's partial files and mark its units interrupted;
    drop the files of shots to make anew. Returns (units interrupted, partial files removed)."""
    paths = BuildPaths(lp.build)
    paths.make_dirs()
    swept = sweep_partials(paths.root)
    ledger = Ledger(paths.ledger)
    interrupted = ledger.reconcile()
    shots = {s.id: s for e in checked.statuses for s in e.shots}
    for shot_id in sorted(checked.force):  # made anew: its clip is dropped under the shot's lock (make_shot)
        if shot_id in shots and shots[shot_id].state == State.PLACEHOLDER:
            ledger.set_state(shot_id, State.PENDING)
    return interrupted, swept


def deliver(lp: LoadedProject, command_root: str | None = None) -> Path:
    """build/series.json and the review site, from one look at the project (an episode an LLM has not
    planned yet shows the rules planner's shots: delivering never pays for planning); returns
    review/index.html. The pages' commands name the project as `command_root` (as the user typed it)."""
    from stages.write_review import write_review
    from stages.write_series import write_series

    paths = BuildPaths(lp.build)
    statuses = project_status(lp, cached_only=True)
    write_series(lp, statuses, paths)
    return write_review(lp, statuses, paths, command_root=command_root or str(lp.root))


def delivered(lp: LoadedProject) -> bool:
    paths = BuildPaths(lp.build)
    return paths.series_json.exists() and paths.review_page("index.html").exists()


def _ledger(lp: LoadedProject) -> Ledger | None:
    path = BuildPaths(lp.build).ledger
    return Ledger(path) if path.exists() else None
