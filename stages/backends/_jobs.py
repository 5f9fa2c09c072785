"""One job protocol for every hosted video backend, and the driver that pays for each shot once.

A provider file implements five calls (`submit`, `poll`, `fetch`, `cancel`, `lookup`) and says how
it bills (`billed_seconds`, `images_sent`); `HostedVideoBackend.generate` runs them through
`run_job`, which owns every rule about money:

1. Before a paid request, a row with a new client key is committed to the job journal
   (`core/jobs.py`); the key goes to the provider where its protocol carries one.
2. A request the provider answered with an error made no job: the row says `refused`. A request
   whose answer was lost (a timeout after sending, a 5xx, a body that is not JSON, a killed render)
   is never sent again blindly: it is looked up where the provider allows. A provider whose list is
   complete (Replicate's predictions) that shows no such job once the request must have ended made
   none, and is asked again; otherwise the shot stops as `unknown-job`, and only `rerun --shot ID
   --new-job` pays for another.
3. Poll errors (429, 5xx, timeouts, bodies that are not JSON) are retried inside the poll loop with
   backoff and Retry-After; they never use up the shot's retries, and never make a new job.
4. A job that failed at the provider with a server error, was cancelled, expired or vanished is
   re-created only as often as `limits.recreate_failed_jobs` allows in one run; each one is billed.
5. The result is downloaded at once (its URL expires) to a temp name the sweep knows, checked
   (it decodes, has a picture, a length and a size) and conformed to the request before it counts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from stages.backends._http import AnswerLost, NotFound
from stages.backends.base import (BackendError, PermanentError, RejectedError, ShotRequest, TransientError,
                                  VideoCapabilities, images_sent, requested_seconds)
from stages.core.jobs import Job, JobState, Journal

log = logging.getLogger(__name__)

MAX_WAIT_S = 120  # the longest one Retry-After (or backoff) may hold the poll loop
LOOKUP_TRIES = 3  # a job just made may take a moment to show in the provider's listing
FETCH_TRIES = 3


class UnknownJob(PermanentError):
    """A paid request's answer was lost and no lookup found the job: it may exist and be billed.
    Never retried: the shot stops as `unknown-job` until the user checks and chooses."""


class JobFailed(PermanentError):
    """The provider's job failed, expired or vanished, and the project allows no more re-creations."""


class LookupUnsupported(Exception):
    """The provider offers no way to find a job by what we sent."""


@dataclass(frozen=True)
class Poll:
    """One look at a job. `error` (for failed): the provider's reason as the class a flow acts on;
    `result`: what `fetch` needs (its output, e.g. the video URL)."""

    state: Literal["queued", "running", "done", "failed", "gone"]
    progress: float | None = None
    error: BackendError | None = None
    result: object = None
    detail: str = ""


class ShotJobs:
    """The job journal as one shot sees it: its id, key, this run's start and the project's
    re-creation allowance: what a hosted backend gets as `jobs` from `generate_shot`."""

    def __init__(self, journal: Journal, unit_id: str, spec_hash: str, *, since: float, recreate: int = 0,
                 project: str = "PROJECT"):
        self.journal, self.unit_id, self.spec_hash = journal, unit_id, spec_hash
        self.since, self.recreate, self.project = since, recreate, project

    def latest(self) -> Job | None:
        jobs = self.journal.of(self.unit_id, self.spec_hash)
        return jobs[-1] if jobs else None

    def recreated(self) -> int:
        """Jobs re-created for this shot in this run."""
        return sum(1 for j in self.journal.of(self.unit_id, self.spec_hash)
                   if j.created_at >= self.since and j.why == "recreate" and j.created)


class HostedVideoBackend:
    """Base of the hosted video backends: `generate` is the job driver over the provider's calls."""

    name: str
    what: str
    options: object
    capabilities: VideoCapabilities
    lookup_hint = "the provider's dashboard"  # where a user checks for a job whose answer was lost
    # Its `lookup` sees every job the account made (a complete list, not a best effort): a request
    # that it does not find once the request must have ended (`settle_s` after it was sent) made none.
    lookup_complete = False

    def provider(self) -> str:
        """Where the jobs go (for the journal and messages), e.g. `fal-ai/kling-video/... on fal`."""
        raise NotImplementedError

    def billed_seconds(self, request: ShotRequest) -> float:
        """Seconds of video the request asks for, after the provider's rounding (what it bills)."""
        return requested_seconds(self.capabilities, request.duration_s, request.fps)

    def images_sent(self, request: ShotRequest) -> int:
        """Reference images and keyframes one request carries."""
        return images_sent(self.capabilities, request, self.name)

    def missing(self, *, keys: bool = True) -> list[tuple[str, str]]:
        """What project.yaml or the environment lacks for this backend to make a job: (problem, how to
        fix it) each; `keys`: the API key too (a dry run needs none)."""
        return []

    def submit(self, request: ShotRequest, client_key: str) -> str:
        """Send the paid request; the provider's job id. `AnswerLost`: it may have been made."""
        raise NotImplementedError

    def poll(self, job_id: str) -> Poll:
        raise NotImplementedError

    def fetch(self, job_id: str, poll: Poll, out: Path) -> None:
        """Download the finished job's clip into `out`."""
        raise NotImplementedError

    def cancel(self, job_id: str) -> None:
        raise NotImplementedError

    def lookup(self, client_key: str, request: ShotRequest, sent_at: float) -> str | None:
        """The job a lost request made, found by what was sent; None if none; `LookupUnsupported`."""
        raise LookupUnsupported

    @property
    def timeout_s(self) -> float:
        return self.options.timeout_s

    @property
    def poll_s(self) -> float:
        return self.options.poll_s

    @property
    def settle_s(self) -> float:
        """How long after sending a request its job, if any, is surely in the provider's list."""
        return 3 * self.options.request_timeout_s  # the longest a request is out, and as long again twice

    def generate(self, request: ShotRequest, out_mp4: Path, jobs: ShotJobs) -> None:
        run_job(self, request, out_mp4, jobs)


def run_job(backend: HostedVideoBackend, request: ShotRequest, out_mp4: Path, jobs: ShotJobs) -> None:
    """Make `out_mp4` from exactly one paid job per intent (see the module's rules)."""
    deadline = time.monotonic() + backend.timeout_s
    while True:
        job = _job_for(backend, request, jobs)
        try:
            poll = _wait(backend, job, deadline)
            if poll.state == "done":
                finish = getattr(backend, "finish", None)  # a job whose result is no clip (a voice's id)
                if finish is not None:
                    finish(job, poll, out_mp4)
                else:
                    _fetch_and_conform(backend, job, poll, request, out_mp4)
                jobs.journal.update(job.client_key, JobState.DONE)
                return
            err = poll.error
            state = JobState.FAILED if poll.state == "failed" else JobState.GONE
            jobs.journal.update(job.client_key, state, message=str(err) if err else poll.detail)
        except _Unusable as exc:  # finished, but its clip cannot be had or used
            jobs.journal.update(job.client_key, JobState.FAILED, message=str(exc))
            err = None
        if isinstance(err, (RejectedError, PermanentError)):  # the request's fault: a new job would fail too
            raise type(err)(str(err))
        # else the next turn re-creates it, if the project allows one more (`_job_for` checks)


def backoff_s(backend: HostedVideoBackend, errors: int) -> float:
    """The wait after the `errors`-th failed look in a row: the poll interval, doubling, at most 2 min."""
    return min(backend.poll_s * 2 ** (errors - 1), MAX_WAIT_S)


_ENDED = {JobState.FAILED: "failed at the provider", JobState.GONE: "was cancelled, expired or vanished",
          JobState.DONE: "was made, but its clip is missing"}


def _job_for(backend: HostedVideoBackend, request: ShotRequest, jobs: ShotJobs) -> Job:
    """The shot's job to wait on: the open one (resumed or looked up), else a new one when the
    journal allows it."""
    journal, last = jobs.journal, jobs.latest()
    if last is not None and last.state == JobState.SUBMITTED:
        log.info("%s: resuming job %s of shot %s", backend.what, last.job_id, jobs.unit_id)
        return last
    if last is not None and last.state in (JobState.INTENT, JobState.UNKNOWN):
        found = _find_lost(backend, request, jobs, last)
        if found is not None:
            return found
        last = journal.get(last.client_key)  # refused: the provider's complete list shows it made nothing
    if last is None:
        why = "first"
    elif last.state == JobState.ABANDONED:
        why = "new-job"
    elif last.state == JobState.REFUSED:
        why = last.why  # the provider made nothing: the same intent, asked again
    elif last.created_at < jobs.since:
        why = "new-run"  # a later command (render, rerun) asks for the shot again
    else:  # this run's job ended without a clip
        why = "recreate"
        if jobs.recreated() >= jobs.recreate:
            raise JobFailed(
                f"{backend.what}: job {last.job_id} for shot {jobs.unit_id} {_ENDED.get(last.state, last.state)}: "
                f"{last.message or 'no reason given'}. Not re-created: limits.recreate_failed_jobs = {jobs.recreate} "
                f"in one run (each re-creation is a new bill); `dramaforge rerun {jobs.project} --shot "
                f"{jobs.unit_id}` pays for a new job")
        log.warning("%s: job %s %s (%s); re-creating it (limits.recreate_failed_jobs = %d)", backend.what,
                    last.job_id, _ENDED.get(last.state, last.state), last.message, jobs.recreate)
    job = journal.intend(jobs.unit_id, spec_hash=jobs.spec_hash, backend=backend.name, provider=backend.provider(),
                         why=why, billed_s=backend.billed_seconds(request), images=backend.images_sent(request))
    try:
        job_id = backend.submit(request, job.client_key)
    except AnswerLost as exc:
        journal.update(job.client_key, JobState.INTENT, message=str(exc))
        found = _find_lost(backend, request, jobs, journal.get(job.client_key))
        if found is None:  # checked against the provider's complete list: nothing was made
            raise TransientError(f"{exc}; the provider made no job, so a retry asks again") from None
        return found
    except BackendError as exc:  # answered with an error, or never reached it: no job was made
        journal.update(job.client_key, JobState.REFUSED, message=str(exc))
        raise
    except BaseException as exc:  # anything unforeseen while the request was out: it may have been made
        journal.update(job.client_key, JobState.INTENT, message=f"{type(exc).__name__}: {exc}")
        raise
    return journal.update(job.client_key, JobState.SUBMITTED, job_id=job_id)


_LOOKED = "; looking it up failed: "


def _find_lost(backend: HostedVideoBackend, request: ShotRequest, jobs: ShotJobs, job: Job) -> Job | None:
    """A request whose answer never came: the job it made if the provider can find it; None (the row
    now `refused`) when the provider's complete list shows none once the request must have ended;
    else the shot stops as `unknown-job`."""
    journal = jobs.journal
    lost = (job.message or "the render stopped while the request was out").split(_LOOKED)[0]
    why = lost
    listed = False  # the last look got the provider's list (and the job was not in it)
    for attempt in range(LOOKUP_TRIES + 1):
        if attempt == LOOKUP_TRIES:  # a complete list, not yet settled: wait until it is, look once more
            wait = job.created_at + backend.settle_s - time.time()
            if not (listed and backend.lookup_complete):
                break
            if wait > 0:
                log.info("%s: shot %s: waiting %.0f s for its lost request to settle", backend.what,
                         jobs.unit_id, wait)
                time.sleep(wait)
        try:
            found, listed = backend.lookup(job.client_key, request, job.created_at), True
        except LookupUnsupported:
            break
        except TransientError as exc:
            why, found, listed = f"{lost}{_LOOKED}{exc}", None, False
        except BackendError as exc:  # the listing refused us (a key without access to it): cannot look
            why, listed = f"{lost}{_LOOKED}{exc}", False
            break
        if found and not journal.claimed(found):
            log.warning("%s: found job %s for shot %s (its create answer was lost)", backend.what, found, jobs.unit_id)
            return journal.update(job.client_key, JobState.SUBMITTED, job_id=found)
        if listed and backend.lookup_complete and time.time() >= job.created_at + backend.settle_s:
            log.warning("%s: shot %s: the provider made no job for its lost request; asking again", backend.what,
                        jobs.unit_id)
            journal.update(job.client_key, JobState.REFUSED, message=f"{lost}; not made: {backend.provider()} "
                                                                     f"lists no such job {backend.settle_s:.0f} s on")
            return None
        if attempt < LOOKUP_TRIES - 1:
            time.sleep(min(backend.poll_s, 2.0))
    journal.update(job.client_key, JobState.UNKNOWN, message=why)
    sent = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(job.created_at))
    raise UnknownJob(f"{backend.what}: the request for shot {jobs.unit_id} sent at {sent} (client key "
                     f"{job.client_key}) got no answer ({why}); the provider may have made, and will bill, a job. "
                     f"Check {backend.lookup_hint} for a job of {backend.provider()} made then; nothing is paid "
                     f"again unless you choose to: `dramaforge rerun {jobs.project} --shot {jobs.unit_id} --new-job`")


def _wait(backend: HostedVideoBackend, job: Job, deadline: float) -> Poll:
    """Poll until the job ends; errors are retried here with backoff, never by making a new job."""
    errors = 0
    while True:
        try:
            poll = backend.poll(job.job_id)
            errors = 0
        except NotFound as exc:
            return Poll("gone", detail=f"the provider no longer knows it ({exc})")
        except TransientError as exc:
            errors += 1
            wait = max(backoff_s(backend, errors), min(exc.retry_after_s or 0, MAX_WAIT_S)) * random.uniform(1, 1.25)
            if time.monotonic() + wait > deadline:
                raise TransientError(f"{backend.what}: job {job.job_id} could not be checked before the time limit "
                                     f"({backend.timeout_s:g} s): {exc}; it stays recorded and a retry resumes it",
                                     retry_after_s=backend.poll_s) from None
            log.info("%s: polling job %s failed (%s); again in %.1f s", backend.what, job.job_id, exc, wait)
            time.sleep(wait)
            continue
        if poll.state not in ("queued", "running"):
            return poll
        if time.monotonic() + backend.poll_s > deadline:
            raise TransientError(f"{backend.what}: job {job.job_id} still {poll.state} after {backend.timeout_s:g} s; "
                                 f"it stays recorded and a retry resumes it", retry_after_s=backend.poll_s)
        time.sleep(backend.poll_s)


class _Unusable(Exception):
    """The job finished but its clip cannot be downloaded or decoded."""


def _fetch_and_conform(backend: HostedVideoBackend, job: Job, poll: Poll, request: ShotRequest,
                       out_mp4: Path) -> None:
    """Download at once to a temp name the sweep knows, check it, conform it into `out_mp4`."""
    from stages.core.artifacts import partial_file
    from stages.core.errors import RenderError
    from stages.core.media import probe

    problem = ""
    for attempt in range(FETCH_TRIES):
        fd, src = partial_file(out_mp4.parent, out_mp4.stem.lstrip("."), ".mp4", tag="download")
        os.close(fd)
        try:
            try:
                backend.fetch(job.job_id, poll, src)
            except NotFound as exc:  # expired, or not there yet: ask the job for its clip again
                problem = f"its clip is gone ({exc})"
                time.sleep(backoff_s(backend, attempt + 1))
                with contextlib.suppress(BackendError):
                    fresh = backend.poll(job.job_id)
                    poll = fresh if fresh.state == "done" else poll
                continue
            except TransientError as exc:
                problem = str(exc)
                time.sleep(backoff_s(backend, attempt + 1))
                continue
            size = src.stat().st_size
            try:
                info = probe(src)
                if info.video_codec is None or not info.duration_s or info.duration_s <= 0:
                    raise RenderError("no video stream with a length")
                conform(src, out_mp4, request)
            except Exception as exc:  # noqa: BLE001 -- any decoder's complaint: the file is not a usable video
                problem = f"the clip ({size} bytes) cannot be used: {getattr(exc, 'message', None) or exc}"
                continue
            return
        finally:
            with contextlib.suppress(FileNotFoundError):
                src.unlink()
    raise _Unusable(f"{backend.what}: job {job.job_id} finished but {problem} (tried {FETCH_TRIES} times)")


def conform(src: Path, out_mp4: Path, request: ShotRequest) -> None:
    """Re-encode `src` to exactly the request: size (scale to cover, centre crop), fps, frame count
    (trimmed, or the last frame held), H.264 yuv420p, no audio (dramaforge mixes the episode), except
    for a shot whose lines the model speaks (`dialogue: native`): its sound is kept, cut or padded to
    the shot, and a clip without sound is refused."""
    from stages.core.errors import RenderError
    from stages.core.media import probe, run_ffmpeg

    w, h, fps = request.width, request.height, request.fps
    frames = max(1, round(request.duration_s * fps))
    vf = (f"scale={w}:{h}:force_original_aspect_ratio=increase:flags=lanczos,crop={w}:{h},setsar=1,"
          f"fps={fps},tpad=stop_mode=clone:stop_duration={frames / fps + 1:.3f}")
    maps, sound = ["-map", "0:v:0"], ["-an"]
    if isinstance(request, ShotRequest) and request.extra.get("dialogue"):
        if probe(src).audio_codec is None:
            raise RenderError("the model made no sound, and this shot's lines are its to speak (dialogue: native)")
        maps += ["-map", "0:a:0"]
        sound = ["-af", f"apad,atrim=end={frames / fps:.6f}", "-c:a", "aac", "-b:a", "192k", "-ar", "48000"]
    run_ffmpeg(["-i", str(src), *maps, "-vf", vf, "-frames:v", str(frames), "-r", str(fps),
                "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-g", str(fps), "-pix_fmt", "yuv420p", *sound,
                "-movflags", "+faststart", "-f", "mp4", str(out_mp4)],
               what="conforming the downloaded clip", timeout_s=max(120.0, 30 * request.duration_s))


def data_url(path: Path, *, max_side: int = 1280) -> str:
    """An image as a `data:` URL (JPEG, at most `max_side` pixels a side), for providers that take one."""
    import base64
    import io

    from PIL import Image

    try:
        with Image.open(path) as im:
            img = im.convert("RGB")
    except OSError as exc:
        raise PermanentError(f"the image {path} cannot be read: {exc}") from exc
    img.thumbnail((max_side, max_side), Image.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
