"""Stages as Prefect tasks: the ONLY place that knows retries, caching, concurrency and timeouts.

Prefect's own result cache is off (`NONE`): a re-run is a new flow run, and the content-addressed
artifact, checked by `artifacts.is_done`, is the cache. That keys on what determines a unit (its
key in the work plan), never on the run id or the task's source, and it validates the file on
every hit. Every shot, line and cut is recorded in the ledger by one wrapper, `_recorded` (sheets and
accepted placeholder cards have no row of their own).

No `timeout_seconds`: these tasks run in worker threads, where Prefect cannot interrupt them.
Waits are bounded where they happen instead (ffmpeg calls, locks, Retry-After, provider polling).
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import threading
import time
from pathlib import Path
from typing import Callable, TypeVar

from filelock import FileLock, Timeout
from prefect import task
from prefect.cache_policies import NONE
from prefect.tasks import exponential_backoff

from flows import progress
from flows.limits import Slots, api_turn, turn
from stages.assemble_episode import assemble_episode, episode_clips
from stages.backends._jobs import ShotJobs, UnknownJob
from stages.backends._voices import read_voice
from stages.backends.base import BackendError, RejectedError, TransientError
from stages.backends.registry import BackendSet, make_video_backend
from stages.core.errors import EnvironmentFailure, environment_failure
from stages.core.jobs import Journal
from stages.core.ledger import Kind, Ledger, State
from stages.core.paths import BuildPaths
from stages.generate_shot import ShotResult, generate_shot
from stages.make_keyframe import make_keyframe
from stages.make_references import make_references
from stages.make_subtitles import Cue, make_subtitles
from stages.mix_audio import mix_cut
from stages.plan_dub import make_fitted
from stages.reuse import kept_clip, kept_take
from stages.schema import Limits, Project
from stages.enroll_voice import VoiceResult, enroll_voice
from stages.synthesize_speech import SpeechResult, measure_voice, synthesize_speech
from stages.translate_subtitles import translate_subtitles
from stages.sync_lips import SyncResult, native_report, sync_lips
from stages.units import EpisodeWork, LineUnit, LipSyncUnit, SheetUnit, ShotUnit, TranslationUnit, VoiceUnit

SHOT_RETRIES, SHOT_BACKOFF_S = 3, 5
SPEECH_RETRIES, SPEECH_BACKOFF_S = 2, 2
JITTER = 0.5  # up to +50% of each backoff, so resumed shots do not retry in lockstep
MAX_RETRY_AFTER_S = 300  # a provider asking for longer leaves the shot failed: `rerun --failed` later
LOCK_WAIT_S = 6 * 3600  # another process making the same unit: wait for it, but not forever
R = TypeVar("R")


def as_is(value):
    """A task argument Prefect passes on without walking through it looking for futures (none are in
    our units, backends or plans): walking them cost 2.4 s for 20 shots with large inputs, 0.06 s quoted.
    Only for tasks run in this process's threads: Prefect unwraps a quoted argument there, and hands
    it to a Dask worker still wrapped."""
    from prefect.context import FlowRunContext
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect.utilities.annotations import quote

    context = FlowRunContext.get()
    if context is not None and not isinstance(context.task_runner, ThreadPoolTaskRunner):
        return value
    return quote(value)


def each(items) -> list:
    """`.map` over `items`, each passed as it is."""
    return [as_is(i) for i in items]


def same(value):
    """One argument for every task of a `.map`, passed as it is."""
    from prefect import unmapped

    return unmapped(as_is(value))


def map_new(task, units: list, kept: Callable, kind: str, *args) -> list:
    """`task.map(each(units), *args)` for the units not `kept` (`stages.reuse`: as the ledger recorded
    them); in order, each one's future or its kept result. A task run costs ~20 ms of this process's
    and the Prefect server's CPU: in an edited episode nearly every unit is kept."""
    results = [kept(u) for u in units]
    todo = [u for u, r in zip(units, results) if r is None]
    made = task.map(each(todo), *args) if todo else []
    if len(todo) < len(units):
        progress.advance(kind, len(units) - len(todo))
    if made and _elsewhere():  # its hooks advance a worker's progress, not this one's: each as it ends
        threading.Thread(target=_advance_as_done, args=(list(made), kind), daemon=True).start()
    futures = iter(made)
    return [_Kept(r) if r is not None else next(futures) for r in results]


def _elsewhere() -> bool:
    """This flow's tasks run in other processes (a Dask cluster), not in its threads."""
    from prefect.context import FlowRunContext
    from prefect.task_runners import ThreadPoolTaskRunner

    context = FlowRunContext.get()
    return context is not None and not isinstance(context.task_runner, ThreadPoolTaskRunner)


def _advance_as_done(futures: list, kind: str) -> None:
    from prefect.futures import as_completed

    for _ in as_completed(futures):
        progress.advance(kind)


@dataclasses.dataclass(frozen=True)
class _Kept:  # a kept unit's result, read as a future's
    value: object
    result = lambda self, raise_on_failure=True: self.value  # noqa: E731


EPISODES_AT_ONCE = 2  # episodes voiced and shot at once; one more each may be cutting (ffmpeg) meanwhile


def episodes_at_once(episode_flow: Callable[..., dict], calls: list[tuple], done: Callable[[dict], None]) -> list[dict]:
    """`episode_flow(*args)` for each of `calls` (args[:2] = project, episode), EPISODES_AT_ONCE at a time,
    each a child of the calling flow run; their outcomes in order (`done` is told of each, in order).

    An episode starts once the one before it has spoken its lines (`spoken`): lines are spoken in script
    order, as one episode after another would speak them (eSpeak NG's output depends on what it spoke
    before, so the order is part of a render's result). An episode gives its place to the next one as
    it starts its cut (`cutting`): the cut is one ffmpeg pass, and the next episode's start (Prefect's
    flow run, the plan, its speech) runs beside it instead of after it. The backends' concurrency and
    rate limits hold across the episodes in flight (`limits.turn`). An episode that
    raises (a full disk) stops those not yet started; the ones in flight end on their own."""
    import concurrent.futures
    import contextvars

    outcomes, futures, turn = [], [], None
    places = threading.Semaphore(EPISODES_AT_ONCE)

    def collect(wait: bool) -> None:  # outcomes in order, each as soon as it and those before it are in
        while len(outcomes) < len(futures) and (wait or futures[len(outcomes)].done()):
            outcomes.append(futures[len(outcomes)].result())
            done(outcomes[-1])

    with concurrent.futures.ThreadPoolExecutor(2 * EPISODES_AT_ONCE, thread_name_prefix="episode") as pool:
        try:
            for args in calls:
                while (turn is not None and not turn.spoken.wait(0.5)) or not places.acquire(timeout=0.5):
                    collect(wait=False)
                turn = _turns[(str(args[0]), int(args[1]))] = _Turn(places)
                # a copy of this flow run's context: Prefect records the episode as its child
                futures.append(pool.submit(turn.run, contextvars.copy_context().run, episode_flow, *args))
            collect(wait=True)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        finally:
            for args in calls:
                _turns.pop((str(args[0]), int(args[1])), None)
    return outcomes


class _Turn:
    """An episode's turn in `episodes_at_once`: whether it has spoken its lines, and its place, held
    until it cuts or ends."""

    def __init__(self, places: threading.Semaphore):
        self.spoken, self._places, self._lock, self._held = threading.Event(), places, threading.Lock(), True

    def leave(self) -> None:
        with self._lock:
            if self._held:
                self._held = False
                self._places.release()

    def run(self, run: Callable, *args):
        try:
            return run(*args)
        finally:  # an episode that ended early (failed, stopped) lets the next one start
            self.spoken.set()
            self.leave()


_turns: dict[tuple[str, int], _Turn] = {}  # (project, episode) -> its turn, while `episodes_at_once` runs it


def spoken(project_dir: str, episode: int) -> None:
    """Called by an episode when its lines are spoken (or it stopped before): the next may start."""
    turn = _turns.get((str(project_dir), int(episode)))
    if turn is not None:
        turn.spoken.set()


def cutting(project_dir: str, episode: int) -> None:
    """Called by an episode as its shots are all made: its place goes to the next episode."""
    turn = _turns.get((str(project_dir), int(episode)))
    if turn is not None:
        turn.leave()


def dask_runner(address: str):
    """A task runner on an existing Dask scheduler (`tcp://host:8786`); needs the `dask` extra.

    Each worker process keeps one set of backends per project config (see `_shared`) and applies
    the concurrency limits within itself: give a GPU worker one thread.
    """
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:
        from stages.core.errors import InputError

        raise InputError("--dask needs the dask extra", hint="pip install 'dramaforge[dask]'") from exc
    return DaskTaskRunner(address=address)


class EpisodeStopped(Exception):
    """Not attempted: the episode reached its failed-shot limit (`limits.failed_shots_per_episode`)."""


def _transient_only(task, task_run, state) -> bool:
    """Retry timeouts, 429 and 5xx, never content rejections or bad requests; honour Retry-After.

    Prefect waits its fixed backoff after this returns; the extra wait here adds jitter and tops
    it up to the provider's Retry-After. Both are bounded.
    """
    try:
        state.result()
    except TransientError as exc:
        hint = exc.retry_after_s or 0.0
        if hint > MAX_RETRY_AFTER_S:
            return False
        delays = task.retry_delay_seconds or 0
        if isinstance(delays, (list, tuple)):
            delays = delays[min(max(task_run.run_count - 1, 0), len(delays) - 1)]
        extra = max(hint - delays, random.uniform(0, JITTER * delays))
        time.sleep(extra)
        return True
    except Exception:
        return False
    return False


def _advance(kind: str):
    def hook(task, task_run, state) -> None:
        progress.advance(kind)

    return hook


_common = dict(cache_policy=NONE, persist_result=False, log_prints=False)
_retried = dict(retry_condition_fn=_transient_only, **_common)


# --- one set of backends per worker process ---------------------------------------------------

_sets: dict[str, BackendSet] = {}
_sets_lock = threading.Lock()


def _shared(backends: BackendSet) -> BackendSet:
    """The process's set for this config: a model loads once and serves every shot (a Dask worker
    gets a fresh copy of `backends` with each task; threads share the flow's)."""
    with _sets_lock:
        return _sets.setdefault(backends.key, backends)


@contextlib.contextmanager
def _locked(lock: Path):
    """One process at a time makes a given artifact: the others wait, then find it made."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock), timeout=LOCK_WAIT_S):
        yield


# --- the one ledger wrapper -------------------------------------------------------------------

def _recorded(ledger_path: Path, unit_id: str, make: Callable[[], R], *, kind: Kind, episode: int, key: str,
              artifact: Path, backend: str | None = None, begins: bool = True, ends: bool = True,
              explain: Callable[[Exception], str] | None = None) -> R:
    """Run `make` as (a step of) one unit: running before it begins, done with its artifact after
    its last step, or failed/rejected with the reason. `explain` words the reason, and a backend
    error is raised again in those words (same class, same Retry-After).

    A full disk or an unwritable folder is not the unit's failure: it is raised as one
    EnvironmentFailure, the unit is left 'interrupted', and no unit of this render starts after it."""
    run = (str(ledger_path), _flow_run())
    stopped = _stopped.get(run)
    if stopped is not None:
        raise stopped
    try:
        return _record(Ledger(ledger_path), unit_id, make, kind=kind, episode=episode, key=key, artifact=artifact,
                       backend=backend, begins=begins, ends=ends, explain=explain)
    except Exception as exc:
        failure = _machine_failure(exc, ledger_path, artifact)
        if failure is None:
            raise
        _stopped[run] = failure
        with contextlib.suppress(Exception):  # the ledger may be on the same full or read-only disk
            Ledger(ledger_path).set_state(unit_id, State.INTERRUPTED, failure.message)
        raise failure from exc


_stopped: dict[tuple, EnvironmentFailure] = {}  # (ledger, flow run) -> what stopped that run


def _machine_failure(exc: Exception, ledger_path: Path, artifact: Path) -> EnvironmentFailure | None:
    """The full disk or unwritable build folder behind `exc`, if that is what it is (an unreadable
    input file, EACCES outside build/, is the unit's own failure)."""
    return environment_failure(exc, str(artifact), database=str(ledger_path), inside=str(ledger_path.parent))


def _flow_run() -> str | None:
    """The flow run this task belongs to (a stop holds for it only: a Dask worker serves many renders)."""
    try:
        from prefect.runtime import flow_run

        return flow_run.id
    except Exception:  # outside a flow run (a stage called directly)
        return None


def _record(ledger: Ledger, unit_id: str, make: Callable[[], R], *, kind, episode, key, artifact, backend, begins,
            ends, explain) -> R:
    if begins:
        ledger.start(unit_id, kind=kind, episode=episode, spec_hash=key, backend=backend)
    try:
        result = make()
    except Exception as exc:  # backend, ffmpeg or validation: recorded, then Prefect fails the task
        if _machine_failure(exc, ledger.path, artifact) is not None:  # `_recorded` says it
            raise
        message = explain(exc) if explain else str(exc)
        state = State.REJECTED if isinstance(exc, RejectedError) else \
            State.UNKNOWN_JOB if isinstance(exc, UnknownJob) else State.FAILED
        ledger.fail(unit_id, state=state,
                    error_class=type(exc).__name__, message=message)
        if explain and isinstance(exc, BackendError):
            raise type(exc)(message, retry_after_s=exc.retry_after_s) from exc
        raise
    if ends:
        ledger.done(unit_id, spec_hash=key, kind=kind, episode=episode, artifact=artifact, sha256=None,
                    reused=bool(getattr(result, "reused", False)))
    return result


# --- the tasks --------------------------------------------------------------------------------

@task(name="synthesize_speech", retries=SPEECH_RETRIES,
      retry_delay_seconds=exponential_backoff(backoff_factor=SPEECH_BACKOFF_S)(SPEECH_RETRIES),
      on_completion=[_advance("lines")], on_failure=[_advance("lines")], **_retried)
def speak_line(line: LineUnit, backends: BackendSet, paths: BuildPaths, remake: frozenset[str] = frozenset(),
               requested_at: float = 0.0, slots: dict[str, Slots] | None = None) -> SpeechResult:
    """One line's audio (in its character's enrolled voice, where it has one) and its voice figure
    against their reference clip; its `where` (episode, scene, script file:line) is in every failure.
    A line in `remake` (`rerun --line`) is spoken again, unless its take is newer than `requested_at`.
    A hosted voice speaks within its provider's `concurrency`: this process's, or the render's global
    limit where `slots` has its engine's (a render spread over machines)."""
    kept = kept_take(line, Ledger(paths.ledger), paths, remake)
    if kept is not None:  # as the ledger recorded it
        return kept
    engine = _shared(backends).speech(line.engine)

    def make() -> SpeechResult:
        if line.id in remake and line.path.exists() and line.path.stat().st_mtime < requested_at:
            line.path.unlink()  # a new take under the same key (the old one was asked to be replaced)
            paths.voice_figure(line.key).unlink(missing_ok=True)
        request = line.request
        if line.voice is not None:  # enrolled before any line is spoken (render_episode, step 2)
            request = dataclasses.replace(request, voice_id=read_voice(line.voice.path))
        with api_turn(engine, (slots or {}).get(line.engine)):
            spoken = synthesize_speech(request, engine, line.path)
        if line.reference is not None:
            measure_voice(line.path, line.reference, paths.voice_figure(line.key))
        return spoken

    return _recorded(paths.ledger, line.id, make, kind=Kind.SPEECH, episode=line.episode, key=line.key,
                     artifact=line.path, backend=line.engine,
                     explain=lambda exc: f"{line.where}: {line.engine} could not speak {line.request.text[:60]!r}: {exc}")


@task(name="enroll_voice", retries=SPEECH_RETRIES,
      retry_delay_seconds=exponential_backoff(backoff_factor=SPEECH_BACKOFF_S)(SPEECH_RETRIES), **_retried)
def enroll(voice: VoiceUnit, episode: int, backends: BackendSet, paths: BuildPaths, since: float,
           project: str = "PROJECT") -> VoiceResult:
    """A character's voice at a cloning provider: one paid enrollment per clip and account, one process
    at a time per voice (a second render waits, then reuses it)."""
    backend = _shared(backends).speech(voice.engine)
    jobs = ShotJobs(Journal(Ledger(paths.ledger)), voice.id, voice.key, since=since, project=project)
    try:
        with _locked(paths.lock(paths.voices, voice.key)):
            return _recorded(paths.ledger, voice.id, lambda: enroll_voice(voice, backend, jobs), kind=Kind.VOICE,
                             episode=episode, key=voice.key, artifact=voice.path, backend=voice.engine,
                             explain=lambda exc: f"{voice.character}'s voice ({voice.clip.path.name}) on "
                                                 f"{voice.engine}: {exc}")
    except Timeout as exc:
        Ledger(paths.ledger).fail(voice.id, state=State.FAILED, error_class="Timeout",
                                  message=f"another render held this voice's lock for over {LOCK_WAIT_S} s")
        raise TransientError("voice locked by another render") from exc


@task(name="make_references", retries=SHOT_RETRIES,
      retry_delay_seconds=exponential_backoff(backoff_factor=SHOT_BACKOFF_S)(SHOT_RETRIES), **_retried)
def make_sheets(sheets: list[SheetUnit], backends: BackendSet, paths: BuildPaths) -> int:
    """The reference sheets of everyone on screen in an episode, each made once (one process at a time
    per character), then reused by every shot: the images made now. One task for the episode's sheets:
    after the first episode they are all made, and a task run per sheet was most of the cost of finding so."""
    made, image = 0, _shared(backends).image
    for sheet in sheets:
        with _locked(paths.lock(paths.characters, sheet.character)):
            made += make_references(sheet, image)[1]
    return made


@task(name="generate_shot", retries=SHOT_RETRIES,
      retry_delay_seconds=exponential_backoff(backoff_factor=SHOT_BACKOFF_S)(SHOT_RETRIES),
      on_completion=[_advance("shots")], on_failure=[_advance("shots")], **_retried)
def make_shot(shot: ShotUnit, backends: BackendSet, limits: Limits, paths: BuildPaths, since: float,
              remake: frozenset[str] = frozenset(), project: str = "PROJECT",
              requested_at: float | None = None, slots: Slots | None = None) -> ShotResult:
    """One shot: the accepted placeholder card, or its keyframe then its clip (reused when made),
    one process at a time per shot, within the backend's concurrency, rate and failure limits.

    `since` is when this episode's render started: failures after it count against the limit, and
    paid jobs made after it against `limits.recreate_failed_jobs`. A shot in `remake` (`rerun
    --shot`) drops its clip, unless another render made it after the user asked (`requested_at`);
    `project` is the folder as the user names it, for the commands in messages; `slots`: the render's
    global limits for the video backend (units in other processes too), else this process's gate.
    """
    backends = _shared(backends)
    if shot.placeholder is not None:  # accepted by the user: a card, not a generation
        card = shot.placeholder
        made = generate_shot(card.request, make_video_backend(None, "animatic"), card.path)
        return dataclasses.replace(made, placeholder=True)
    ledger, video = Ledger(paths.ledger), backends.video
    kept = kept_clip(shot, ledger, paths, remake)
    if kept is not None:  # as the ledger recorded it: no lock, no slot, no decode
        return kept
    report = paths.lipsync_file(shot.key, ".native.json")  # where the model spoke: how well (made with the clip)
    unreported = bool(shot.request.extra.get("dialogue")) and not report.exists()
    try:
        # Two renders of one shot (two terminals, two workers): one generates, the other reuses.
        with _locked(paths.lock(paths.shots, shot.key)), \
                turn(video, slots, limits.video_concurrency, limits.video_per_minute):
            # Checked and recorded while a slot is held, so the limit sees every finished attempt.
            failed = ledger.failures_since(shot.episode, since)
            if len(failed) >= limits.failed_shots_per_episode:
                reason = (f"not attempted: episode {shot.episode} stopped after {len(failed)} failed shots "
                          f"(limits.failed_shots_per_episode = {limits.failed_shots_per_episode})")
                ledger.mark(shot.id, kind=Kind.SHOT, episode=shot.episode, spec_hash=shot.key, state=State.PENDING,
                            message=reason)
                raise EpisodeStopped(reason)

            if shot.id in remake and shot.path.exists() and shot.path.stat().st_mtime < (requested_at or since):
                shot.path.unlink()  # made anew; a clip newer than this run is a concurrent rerun's: reused
            jobs = ShotJobs(Journal(ledger), shot.id, shot.key, since=since, recreate=limits.recreate_failed_jobs,
                            project=project)

            def make() -> ShotResult:  # the keyframe first (image-to-video), then the motion
                drawn = shot.keyframe is not None and make_keyframe(shot.keyframe, backends.image)
                made = generate_shot(shot.request, video, shot.path, jobs=jobs)
                if unreported and not report.exists():  # (another render may have written it meanwhile)
                    paths.lipsync.mkdir(parents=True, exist_ok=True)
                    native_report(shot.path, shot.request.fps, report)
                return dataclasses.replace(made, images_made=int(drawn))

            return _recorded(paths.ledger, shot.id, make, kind=Kind.SHOT, episode=shot.episode, key=shot.key,
                             artifact=shot.path, backend=video.name)
    except Timeout as exc:
        ledger.fail(shot.id, state=State.FAILED, error_class="Timeout",
                    message=f"another render held this shot's lock for over {LOCK_WAIT_S} s")
        raise TransientError("shot locked by another render") from exc


@task(name="sync_lips", retries=SHOT_RETRIES,
      retry_delay_seconds=exponential_backoff(backoff_factor=SHOT_BACKOFF_S)(SHOT_RETRIES),
      on_completion=[_advance("lip sync")], on_failure=[_advance("lip sync")], **_retried)
def sync_shot(unit: LipSyncUnit, backends: BackendSet, limits: Limits, paths: BuildPaths, since: float,
              project: str = "PROJECT", slots: Slots | None = None) -> SyncResult:
    """One shot's lips synced to its speech (each piece a paid job at most once), one process at a time
    per shot, within the lip-sync backend's concurrency."""
    backend = _shared(backends).lipsync
    ledger = Ledger(paths.ledger)

    def jobs_for(piece) -> ShotJobs:  # each piece is its own paid job, journaled under its own id
        return ShotJobs(Journal(ledger), f"{unit.id}-{piece.id_suffix}", piece.key, since=since,
                        recreate=limits.recreate_failed_jobs, project=project)

    with _locked(paths.lock(paths.lipsync, unit.key)), turn(backend, slots):
        return _recorded(paths.ledger, unit.id, lambda: sync_lips(unit, backend, jobs_for), kind=Kind.LIPSYNC,
                         episode=unit.episode, key=unit.key, artifact=unit.path, backend=backend.name)


@task(name="check_identity", **_common)
def identify(shot: ShotUnit, paths: BuildPaths):
    """The faces in one take against its characters' reference faces; cached under the check's own key
    (a take checked once is never decoded again), so no ledger row: the verdict is read from it."""
    from stages.check_identity import check_take, face_references

    return check_take(shot.path, shot.key, face_references(shot.request), paths.identity)


# The cut: the translation (retried) is a task, the other steps run in `cut_episode`; recorded as one unit
# (the episode) from its first step to its last.

@task(name="translate_subtitles", retries=SPEECH_RETRIES,
      retry_delay_seconds=exponential_backoff(backoff_factor=SPEECH_BACKOFF_S)(SPEECH_RETRIES), **_retried)
def translate_episode(work: EpisodeWork, backends: BackendSet, paths: BuildPaths, series: str,
                      slots: Slots | None = None) -> list[str]:
    """The episode's subtitle lines in the second language (cached per exact lines): the cut's first step.
    The server is asked within its `concurrency`: this process's, or the render's global limit (`slots`)."""
    translator = _shared(backends).translation
    return _cut_step(work, paths, lambda: translate_subtitles(work.translation, translator,
                                                              f"{series}, episode {work.number}",
                                                              lambda: api_turn(translator, slots)), begins=True)


@task(name="translate_dub", retries=SPEECH_RETRIES,
      retry_delay_seconds=exponential_backoff(backoff_factor=SPEECH_BACKOFF_S)(SPEECH_RETRIES), **_retried)
def translate_dub(unit: TranslationUnit, backends: BackendSet, context: str, slots: Slots | None = None) -> list[str]:
    """An episode's lines in a dub language (cached per exact lines, language and glossary)."""
    translator = _shared(backends).translation
    return translate_subtitles(unit, translator, context, lambda: api_turn(translator, slots))


def _cut_step(work: EpisodeWork, paths: BuildPaths, make: Callable[[], R], *, begins=False, ends=False) -> R:
    return _recorded(paths.ledger, work.id, make, kind=Kind.EPISODE, episode=work.number, key=work.cut.key,
                     artifact=work.mp4, begins=begins, ends=ends)


@task(name="cut_episode", **_common)
def cut_episode(work: EpisodeWork, project: Project, paths: BuildPaths, translated: list[str] | None,
                series: str) -> Path:
    """The cut, after its translation (if any): subtitles, the shots conformed where needed, one encode
    of the pictures with the sound mix made meanwhile, then the editor's timeline and the poster. One
    task: its steps are quick next to the encode and are never retried, and a task run each cost more
    than most of them."""
    if work.fits:  # a dub's lines sped up to fit their places (`stages.plan_dub`)
        _cut_step(work, paths, lambda: [make_fitted(*fit) for fit in work.fits], begins=True)
    subtitle_episode(work, project, paths, translated)
    pictures = conform_episode(work, project, paths)
    assemble(work, project, paths, pictures)
    finish_episode(work, project, paths, pictures, series)
    return work.mp4


def subtitle_episode(work: EpisodeWork, project: Project, paths: BuildPaths, translated: list[str] | None) -> None:
    """SRT, WebVTT and ASS from the cut's lines and cards (a second language with them if asked: the
    translation's, or on a bilingual dub the script's own)."""
    cut, lang = work.cut, work.translation.target if work.translation else None
    if cut.second:
        lang, translated = cut.second
    _cut_step(work, paths, lambda: make_subtitles(
        [Cue(ln.start_s, ln.end_s, ln.text, ln.character) for ln in cut.lines], project.subtitles,
        width=project.width, height=project.height, out_srt=paths.episode_srt(work.id),
        out_vtt=paths.episode_vtt(work.id), out_ass=paths.episode_ass(work.id), cards=cut.cards,
        translated=translated, out_translated=(paths.episode_subtitles(work.id, lang, ".srt"),
                                               paths.episode_subtitles(work.id, lang, ".vtt")) if lang else None,
        faces=cut.faces, names=sorted({*(n for c in project.cast for n in (c.name, *c.aliases)),
                                       *(ln.character for ln in cut.lines)}),
        languages=(work.language or project.language, lang) if lang else None),
        begins=work.translation is None and not work.fits)  # else the translation or the fitting began it


def conform_episode(work: EpisodeWork, project: Project, paths: BuildPaths) -> list[Path]:
    """The card backgrounds and every shot, conformed where its format or length needs it (transitions
    are drawn in the assemble pass)."""
    return _cut_step(work, paths, lambda: episode_clips(work.cut, project, paths))


def assemble(work: EpisodeWork, project: Project, paths: BuildPaths, clips: list[Path]) -> Path:
    """One encode: the clips and the burned subtitles, the sound mix made meanwhile and joined to them."""
    _cut_step(work, paths, lambda: assemble_episode(clips, paths.episode_ass(work.id), paths.episode_audio(work.id),
                                                     work.cut.duration_s, project, work.mp4,
                                                     mix=lambda: mix_cut(work.cut, project, paths.episode_audio(
                                                         work.id), paths.meters)))
    return work.mp4


def finish_episode(work: EpisodeWork, project: Project, paths: BuildPaths, clips: list[Path], series: str) -> None:
    """The editor's timeline and the poster beside the episode; then the cut is done."""
    from stages.export_otio import write_otio
    from stages.make_poster import make_poster, poster_frame

    cut = work.cut

    def make() -> None:
        cards = (clips[0] if cut.opening else None, clips[-1] if cut.ending else None)
        write_otio(cut, work.plan, project.fps, paths.otio(work.id), title=series, card_clips=cards)
        clip, at = poster_frame(cut, work.plan)
        make_poster(clip, at, series, " · ".join(t for t in (work.id.upper(), work.title) if t),
                    paths.poster(work.id), font_name=project.subtitles.font)

    _cut_step(work, paths, make, ends=True)

