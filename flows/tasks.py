"""Stages as Prefect tasks: the ONLY place that knows retries, caching, concurrency and timeouts.

Prefect's own result cache is off (`NONE`): a re-run is a new flow run, and the content-addressed
artifact, checked by `artifacts.is_done`, is the cache. That keys on what determines a unit, never on
the run id or the task's source, and it validates the file on every hit.

No `timeout_seconds`: these tasks run in worker threads, where Prefect cannot interrupt them.
Waits are bounded where they happen instead (ffmpeg calls, locks, Retry-After, provider polling).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import random
import threading
import time
from pathlib import Path

from filelock import FileLock, Timeout
from prefect import task
from prefect.cache_policies import NONE
from prefect.tasks import exponential_backoff

from flows import progress
from stages.core.artifacts import is_done
from stages.assemble_episode import Cut, assemble_episode, episode_clips
from stages.backends.base import BackendError, RejectedError, TransientError
from stages.backends.registry import make_speech_backend, make_video_backend
from stages.generate_shot import generate_shot, make_placeholder, shot_key
from stages.core.ledger import Ledger, LedgerJobs
from stages.make_subtitles import Cue, make_subtitles
from stages.core.media import video_validator
from stages.mix_audio import Dialogue, mix_audio, voice_treatment
from stages.schema import Backends, Limits
from stages.synthesize_speech import speech_key, synthesize_speech
from stages.translate_subtitles import translate_lines

SHOT_RETRIES, SHOT_BACKOFF_S = 3, 5
SPEECH_RETRIES, SPEECH_BACKOFF_S = 2, 2
JITTER = 0.5  # up to +50% of each backoff, so resumed shots do not retry in lockstep
MAX_RETRY_AFTER_S = 300  # a provider asking for longer leaves the shot failed: `rerun --failed` later
LOCK_WAIT_S = 6 * 3600  # another process making the same shot: wait for it, but not forever


def dask_runner(address: str):
    """A task runner on an existing Dask scheduler (`tcp://host:8786`); needs the `dask` extra.

    Each worker process loads its own backend once (see `video_backend`) and applies the
    concurrency limits within itself: give a GPU worker one thread.
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


@functools.cache
def video_backend(config_json: str):
    """One backend instance per worker process and config: a model is loaded once, reused across shots."""
    return make_video_backend(Backends.model_validate_json(config_json))


@functools.cache
def image_backend(options_json: str):
    """One image backend per worker process and config (a local model loads once)."""
    from stages.backends.registry import make_image_backend
    from stages.schema import ImageSettings

    return make_image_backend(ImageSettings.model_validate_json(options_json))


@functools.cache
def speech_backend(name: str, config_json: str):
    return make_speech_backend(name, Backends.model_validate_json(config_json))


class _Gate:
    """A backend's concurrency and start-rate limits within this process (threads share it)."""

    def __init__(self, concurrency: int, per_minute: float | None):
        self.slots = threading.BoundedSemaphore(concurrency)
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self.lock = threading.Lock()
        self.next_start = 0.0

    @contextlib.contextmanager
    def hold(self):
        with self.slots:
            if self.interval:
                with self.lock:  # reserve the next start time, then sleep outside the lock
                    now = time.monotonic()
                    start = max(now, self.next_start)
                    self.next_start = start + self.interval
                time.sleep(start - now)
            yield


_gates: dict[tuple, _Gate] = {}
_gates_lock = threading.Lock()


def _gate(backend, limits: Limits) -> _Gate:
    concurrency = limits.video_concurrency or backend.capabilities.concurrency
    key = (backend.name, concurrency, limits.video_per_minute)
    with _gates_lock:
        if key not in _gates:
            _gates[key] = _Gate(concurrency, limits.video_per_minute)
        return _gates[key]


@task(name="synthesize_speech", retries=SPEECH_RETRIES,
      retry_delay_seconds=exponential_backoff(backoff_factor=SPEECH_BACKOFF_S)(SPEECH_RETRIES),
      retry_condition_fn=_transient_only, on_completion=[_advance("lines")], on_failure=[_advance("lines")],
      **_common)
def synthesize_speech_task(request, engine: str, backend_config: str, speech_dir, ledger_path, unit_id: str,
                           episode: int, where: str):
    """One line's audio; `where` (episode, scene, script file:line) goes into every failure message."""
    backend = speech_backend(engine, backend_config)
    ledger = Ledger(ledger_path)
    key = speech_key(request, backend)
    ledger.start(unit_id, kind="speech", episode=episode, spec_hash=key, backend=engine)
    try:
        result = synthesize_speech(request, backend, speech_dir)
    except Exception as exc:
        state = "rejected" if isinstance(exc, RejectedError) else "failed"
        message = f"{where}: {engine} could not speak {request.text[:60]!r}: {exc}"
        ledger.fail(unit_id, state=state, error_class=type(exc).__name__, message=message)
        if isinstance(exc, BackendError):
            raise type(exc)(message, retry_after_s=exc.retry_after_s) from exc
        raise
    ledger.done(unit_id, spec_hash=key, kind="speech", episode=episode, artifact=result.path, sha256=None,
                reused=result.reused)
    return result


@task(name="make_references", retries=SHOT_RETRIES,
      retry_delay_seconds=exponential_backoff(backoff_factor=SHOT_BACKOFF_S)(SHOT_RETRIES),
      retry_condition_fn=_transient_only, **_common)
def make_references_task(character_id: str, episode: int, project, project_dir, image_json: str, characters_dir):
    """One character's reference sheet for this episode's look (made once, then reused by every shot):
    (its paths, images made now)."""
    from stages.make_references import make_references

    lock_dir = Path(characters_dir) / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_dir / f"{character_id}.lock"), timeout=LOCK_WAIT_S):
        return make_references(project.character(character_id), episode, project, Path(project_dir),
                               image_backend(image_json), Path(characters_dir))


@task(name="generate_shot", retries=SHOT_RETRIES,
      retry_delay_seconds=exponential_backoff(backoff_factor=SHOT_BACKOFF_S)(SHOT_RETRIES),
      retry_condition_fn=_transient_only,
      on_completion=[_advance("shots")], on_failure=[_advance("shots")], **_common)
def generate_shot_task(request, backend_config: str, limits: Limits, shots_dir, ledger_path, episode: int,
                       since: float, image_json: str | None = None):
    """One shot: a placeholder if accepted, else reuse or generate it, one process at a time per shot.

    `since` is when this episode's render started: failures after it count against the limit.
    """
    backend = video_backend(backend_config)
    ledger = Ledger(ledger_path)
    key = shot_key(request, backend)
    row = ledger.get(request.shot_id)
    if row is not None and row.state == "placeholder":  # accepted by the user: a card, not a generation
        return make_placeholder(request, shots_dir, row.message)
    locks = Path(shots_dir) / ".locks"
    locks.mkdir(exist_ok=True)
    lock = FileLock(str(locks / f"{key}.lock"), timeout=LOCK_WAIT_S)
    try:
        # Two renders of one shot (two terminals, two workers): one generates, the other reuses.
        with lock, _gate(backend, limits).hold():
            # Checked and recorded while a slot is held, so the limit sees every finished attempt.
            failed = ledger.failures_since(episode, since)
            if len(failed) >= limits.failed_shots_per_episode:
                reason = (f"not attempted: episode {episode} stopped after {len(failed)} failed shots "
                          f"(limits.failed_shots_per_episode = {limits.failed_shots_per_episode})")
                ledger.mark(request.shot_id, kind="shot", episode=episode, spec_hash=key, state="pending",
                            message=reason)
                raise EpisodeStopped(reason)
            ledger.start(request.shot_id, kind="shot", episode=episode, spec_hash=key, backend=backend.name)
            try:
                keyframe_made = False
                if request.keyframe is not None and image_json is not None:  # first frame, then motion
                    from stages.make_keyframe import make_keyframe

                    _, keyframe_made = make_keyframe(request, image_backend(image_json), request.keyframe.parent)
                result = generate_shot(request, backend, shots_dir, jobs=LedgerJobs(ledger, request.shot_id))
                result = dataclasses.replace(result, images_made=int(keyframe_made))
            except Exception as exc:  # backend, ffmpeg or validation: recorded, then Prefect fails the task
                state = "rejected" if isinstance(exc, RejectedError) else "failed"
                ledger.fail(request.shot_id, state=state, error_class=type(exc).__name__, message=str(exc))
                raise
            ledger.done(request.shot_id, spec_hash=key, kind="shot", episode=episode, artifact=result.path,
                        sha256=None, reused=result.reused)
    except Timeout as exc:
        ledger.fail(request.shot_id, state="failed", error_class="Timeout",
                    message=f"another render held this shot's lock for over {LOCK_WAIT_S} s")
        raise TransientError("shot locked by another render") from exc
    return result


@task(name="assemble_episode", on_completion=[_advance("episodes")], **_common)
def assemble_episode_task(cut: Cut, unit_id: str, episode: int, project, paths, series: str,
                          project_dir: Path, shotlist=None, episode_title: str = "") -> tuple[Path, bool]:
    """Subtitles (translated if asked), the sound mix and one ffmpeg pass; skipped when this exact
    cut already exists. Returns (mp4, reused)."""
    ledger = Ledger(paths.ledger)
    out = paths.episode_mp4(unit_id)
    row = ledger.get(unit_id)
    check = video_validator(width=project.width, height=project.height,
                            min_duration_s=cut.duration_s - 1.0 / project.fps, audio=True)
    if row is not None and row.state == "done" and row.spec_hash == cut.key and is_done(out, check):
        return out, True
    ledger.start(unit_id, kind="episode", episode=episode, spec_hash=cut.key)
    try:
        translated = None
        if project.subtitles.translation is not None:
            translated = translate_lines([ln.text for ln in cut.lines], project.language,
                                         project.subtitles.translation, f"{series}, episode {episode}",
                                         paths.root / "translations", project_dir=project_dir)
        make_subtitles([Cue(ln.start_s, ln.end_s, ln.text, ln.character) for ln in cut.lines], project.subtitles,
                       width=project.width, height=project.height, out_srt=paths.episode_srt(unit_id),
                       out_ass=paths.episode_ass(unit_id), cards=cut.cards, translated=translated)
        mix_audio([Dialogue(ln.start_s, wav, voice_treatment(ln.extension, project))
                   for ln, wav in zip(cut.lines, cut.speech)], cut.duration_s, paths.episode_audio(unit_id),
                  loudness=project.audio.target, music=cut.music, effects=cut.effects, options=project.audio.music)
        clips = episode_clips(cut, project, paths.shots)
        assemble_episode(clips, paths.episode_ass(unit_id), paths.episode_audio(unit_id), cut.duration_s, project, out)
        if shotlist is not None:  # the editor's timeline and the poster, beside the episode
            from stages.export_otio import write_otio
            from stages.make_poster import make_poster, poster_time

            cards = (clips[0] if cut.opening else None, clips[-1] if cut.ending else None)
            write_otio(cut, shotlist, project.fps, paths.episodes / f"{unit_id}.otio", title=series,
                       card_clips=cards)
            # the chosen shot's own clip: the picture without subtitles or cards
            at, i = poster_time(shotlist), 0
            while i < len(cut.durations) - 1 and at >= cut.durations[i]:
                at -= cut.durations[i]
                i += 1
            make_poster(cut.clips[i], at, series,
                        " · ".join(t for t in (f"{unit_id.upper()}", episode_title) if t),
                        paths.episodes / f"{unit_id}.jpg", font_name=project.subtitles.font)
    except Exception as exc:
        ledger.fail(unit_id, state="failed", error_class=type(exc).__name__, message=str(exc))
        raise
    ledger.done(unit_id, spec_hash=cut.key, kind="episode", episode=episode, artifact=out, sha256=None)
    return out, False
