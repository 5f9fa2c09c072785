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
from stages.backends.base import TransientError
from stages.generate_shot import generate_shot
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
def video_backend(name: str):
    """One backend instance per worker process: a model is loaded once and reused across shots."""
    from stages.backends.animatic import AnimaticBackend

    backends = {"animatic": AnimaticBackend}
    return backends[name]()


@functools.cache
def speech_backend(name: str):
    from stages.backends.espeak import EspeakBackend

    backends = {"espeak": EspeakBackend}
    return backends[name]()


@task(name="synthesize_speech", retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=2),
      retry_jitter_factor=0.5, retry_condition_fn=_transient_only,
      on_completion=[_advance("lines")], **_common)
def synthesize_speech_task(request, backend_name: str, speech_dir):
    return synthesize_speech(request, speech_backend(backend_name), speech_dir)


@task(name="generate_shot", retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=5),
      retry_jitter_factor=0.5, retry_condition_fn=_transient_only,
      on_completion=[_advance("shots")], **_common)
def generate_shot_task(request, backend_name: str, shots_dir):
    return generate_shot(request, video_backend(backend_name), shots_dir)


@task(name="assemble_episode", on_completion=[_advance("episodes")], **_common)
def assemble_episode_task(clips, subtitles_ass, audio_wav, duration_s, project, out_mp4):
    return assemble_episode(clips, subtitles_ass, audio_wav, duration_s, project, out_mp4)
