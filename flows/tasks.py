"""Stages as Prefect tasks: the ONLY place that knows retries, caching, concurrency and timeouts.

Prefect's own result cache is off (`NONE`): a re-run is a new flow run, and the content-addressed
artifact, checked by `artifacts.is_done`, is the cache. That keys on what determines a shot, never on
the run id or the task's source, and it validates the file on every hit.

No `timeout_seconds`: these tasks run in worker threads, where Prefect cannot interrupt them.
Waits are bounded where they happen instead (ffmpeg calls, provider polling deadlines).
"""

from __future__ import annotations

import functools

from prefect import task
from prefect.cache_policies import NONE
from prefect.tasks import exponential_backoff

from flows import progress
from stages.assemble_episode import assemble_episode
from stages.backends.base import BackendError, RejectedError, TransientError
from stages.backends.registry import make_speech_backend, make_video_backend
from stages.generate_shot import generate_shot, make_placeholder, shot_key
from stages.ledger import Ledger
from stages.schema import Backends
from stages.synthesize_speech import synthesize_speech


def _transient_only(task, task_run, state) -> bool:
    """Retry timeouts, 429 and 5xx; never content rejections or bad requests."""
    try:
        state.result()
    except TransientError:
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
def speech_backend(name: str):
    return make_speech_backend(name)


@task(name="synthesize_speech", retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=2),
      retry_jitter_factor=0.5, retry_condition_fn=_transient_only,
      on_completion=[_advance("lines")], **_common)
def synthesize_speech_task(request, backend_name: str, speech_dir):
    return synthesize_speech(request, speech_backend(backend_name), speech_dir)


@task(name="generate_shot", retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=5),
      retry_jitter_factor=0.5, retry_condition_fn=_transient_only,
      on_completion=[_advance("shots")], on_failure=[_advance("shots")], **_common)
def generate_shot_task(request, backend_config: str, shots_dir, ledger_path, episode: int):
    backend = video_backend(backend_config)
    ledger = Ledger(ledger_path)
    key = shot_key(request, backend)
    row = ledger.get(request.shot_id)
    if row is not None and row.state == "placeholder":  # accepted by the user: a card, not a generation
        return make_placeholder(request, shots_dir, row.message or "accepted as a placeholder")
    ledger.start(request.shot_id, kind="shot", episode=episode, spec_hash=key)
    try:
        result = generate_shot(request, backend, shots_dir)
    except BackendError as exc:
        state = "rejected" if isinstance(exc, RejectedError) else "failed"
        ledger.fail(request.shot_id, state=state, error_class=type(exc).__name__, message=str(exc))
        raise
    except Exception as exc:  # ffmpeg or validation failures: recorded, then Prefect marks the task failed
        ledger.fail(request.shot_id, state="failed", error_class=type(exc).__name__, message=str(exc))
        raise
    ledger.done(request.shot_id, spec_hash=key, kind="shot", episode=episode, artifact=result.path,
                sha256=None, reused=result.reused)
    return result


@task(name="assemble_episode", on_completion=[_advance("episodes")], **_common)
def assemble_episode_task(clips, subtitles_ass, audio_wav, duration_s, project, out_mp4):
    return assemble_episode(clips, subtitles_ass, audio_wav, duration_s, project, out_mp4)
