"""The /v1/videos backend against the local fake service (`fake_openai.py`), on the job protocol:
jobs created once, recorded before polling, resumed after a kill, failures mapped to the retry
classes and never re-created unless the project allows it, clips conformed."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from fake_openai import KEY_ENV, PROVIDER_SIZE, FakeService, Plan, error, fake, png_bytes, provider_mp4  # noqa: F401
from stages.backends._jobs import JobFailed, ShotJobs, UnknownJob
from stages.backends.base import ImageOptions, PermanentError, RejectedError, ShotRequest, TransientError, VideoBackend
from stages.backends.openai_image import OpenAIImageBackend
from stages.backends.openai_videos import OpenAIVideosBackend, OpenAIVideosOptions, pick_seconds
from stages.core.jobs import JobState, Journal
from stages.core.ledger import Ledger
from stages.core.media import probe, video_validator

REPO = Path(__file__).resolve().parents[1]
FPS = 24


def shot_jobs(tmp_path: Path, *, recreate: int = 0, since: float | None = None, unit: str = "e1s1") -> ShotJobs:
    """The job journal of one shot on a real ledger."""
    ledger = Ledger(tmp_path / "ledger.sqlite")
    return ShotJobs(Journal(ledger), unit, "k1", since=time.time() if since is None else since, recreate=recreate)


def states(jobs: ShotJobs) -> list[tuple[str, str | None]]:
    return [(str(j.state), j.job_id) for j in jobs.journal.of(jobs.unit_id)]


def backend(fake: FakeService, **kw) -> OpenAIVideosBackend:
    args = dict(base_url=fake.base_url, api_key_env=KEY_ENV, model="video-test", size=PROVIDER_SIZE,
                seconds=[1, 2], poll_s=0.001, timeout_s=120)
    return OpenAIVideosBackend(OpenAIVideosOptions(**{**args, **kw}))


def shot(duration_s: float = 0.75, **kw) -> ShotRequest:
    args = dict(shot_id="e1s1", prompt="A kettle steams in a small kitchen.", size="medium", camera="static",
                location="KITCHEN", time="DAY", action="Steam rises.", caption="", figures=(),
                duration_s=duration_s, width=100, height=150, fps=FPS, seed=1)
    return ShotRequest(**{**args, **kw})


def check_clip(path: Path, request: ShotRequest) -> None:
    """Exactly the request: size, fps, frame count (duration within a frame), H.264 yuv420p, no audio."""
    video_validator(width=request.width, height=request.height,
                    min_duration_s=request.duration_s - 1.0 / request.fps)(path)
    info = probe(path)
    assert (info.video_codec, info.pix_fmt, info.audio_codec) == ("h264", "yuv420p", None)
    assert info.fps == pytest.approx(request.fps)
    assert info.frames == round(request.duration_s * request.fps)
    assert abs(info.duration_s - request.duration_s) <= 1.0 / request.fps + 1e-6


# --- videos -------------------------------------------------------------------------------------------

def test_identity_needs_no_key_and_names_what_shapes_the_clip(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    b = OpenAIVideosBackend(OpenAIVideosOptions())
    assert isinstance(b, VideoBackend)
    caps = b.capabilities
    assert (b.name, caps.resumable, set(caps.uses), caps.concurrency, caps.billed) == \
        ("openai-videos", True, {"keyframe"}, 4, True)
    assert b.billed_seconds(shot(4.5)) == 8 and b.images_sent(shot(keyframe=Path("k.png"))) == 1
    assert caps.durations_s == (4.0, 8.0, 12.0) and caps.aspect_ratios == ("9:16",) and caps.modes == {"text", "image"}
    assert b.identity() == {"engine": "openai-videos", "model": "sora-2", "base_url": "api.openai.com",
                            "size": "720x1280"}
    with pytest.raises(PermanentError, match="OPENAI_API_KEY"):  # OpenAI's own server without a key
        b.generate(shot(), Path("/nonexistent/out.mp4"), jobs=shot_jobs(tmp_path))


def test_registry_pickling_and_generate_shot_use_the_job_store(fake, tmp_path):
    import pickle

    from stages.backends.registry import make_image_backend, make_video_backend
    from stages.generate_shot import generate_shot
    from stages.plan_work import shot_key
    from stages.schema import Backends

    opts = backend(fake).options
    b = make_video_backend(Backends(video="openai-videos", openai_videos=opts))
    assert isinstance(b, OpenAIVideosBackend)
    assert isinstance(make_image_backend(ImageOptions(kind="openai")), OpenAIImageBackend)
    b = pickle.loads(pickle.dumps(b))  # Dask ships backends to workers
    assert b.identity()["base_url"] == fake.base_url
    jobs = shot_jobs(tmp_path)
    result = generate_shot(shot(), b, tmp_path / "shots" / f"{shot_key(shot(), b)}.mp4", jobs=jobs)
    check_clip(result.path, shot())
    assert states(jobs) == [("done", "video_1")] and fake.count("create") == 1
    assert [p.name for p in (tmp_path / "shots").iterdir()] == [result.path.name]  # no temp files left


def test_pick_seconds_takes_the_shortest_clip_that_covers_the_shot():
    assert pick_seconds([4, 8, 12], 3.2) == 4
    assert pick_seconds([12, 4, 8], 4.0) == 4
    assert pick_seconds([4, 8, 12], 4.01, fps=24) == 4  # within a frame: the last frame is held
    assert pick_seconds([4, 8, 12], 4.5) == 8
    assert pick_seconds([4, 8, 12], 30) == 12


def test_happy_path_creates_once_stores_the_job_before_polling_and_conforms(fake, tmp_path):
    jobs = shot_jobs(tmp_path)
    fake.probe = lambda: jobs.latest().job_id
    request = shot(0.75, negative_prompt="text, watermark")
    out = tmp_path / "shot.mp4"
    backend(fake).generate(request, out, jobs=jobs)
    check_clip(out, request)  # 1 s of 144x256 at 30 fps -> 0.75 s of 100x150 at 24 fps
    assert fake.count("create") == 1
    (form,) = fake.creates
    assert form == {"prompt": "A kettle steams in a small kitchen.\nAvoid: text, watermark", "model": "video-test",
                    "seconds": "1", "size": PROVIDER_SIZE}
    # the server saw the create, and the store held its id when the first poll arrived
    assert fake.events[0] == ("create", "video_1") and fake.events[1] == ("get", "video_1")
    assert fake.seen_on_get[0] == "video_1"
    assert fake.count("content") == 1
    (job,) = jobs.journal.of("e1s1")
    assert (job.state, job.billed_s, job.images, job.why) == ("done", 1.0, 0, "first")
    sent = {k.lower(): v for k, v in fake.create_headers[0].items()}
    assert sent["idempotency-key"] == job.client_key  # our key, committed before the create


def test_a_short_clip_is_padded_with_its_last_frame(fake, tmp_path):
    request = shot(1.5)  # the model was asked for 2 s but made 1 s
    out = tmp_path / "shot.mp4"
    backend(fake).generate(request, out, jobs=shot_jobs(tmp_path))
    assert fake.creates[0]["seconds"] == "2"
    check_clip(out, request)


def test_keyframe_is_uploaded_as_a_png_of_the_provider_size_with_the_motion_prompt(fake, tmp_path):
    from PIL import Image

    key = tmp_path / "key.png"
    key.write_bytes(png_bytes(300, 200))  # landscape: must be fitted to the portrait job size
    request = shot(keyframe=key, motion_prompt="Slow push-in; steam curls.")
    backend(fake).generate(request, tmp_path / "shot.mp4", jobs=shot_jobs(tmp_path))
    (form,) = fake.creates
    assert form["prompt"] == "Slow push-in; steam curls."
    filename, data = form["input_reference"]
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as im:
        assert (f"{im.width}x{im.height}", im.mode) == (PROVIDER_SIZE, "RGB")
        assert im.getpixel((im.width // 2, im.height // 2)) == (200, 40, 40)
    check_clip(tmp_path / "shot.mp4", request)


def test_a_missing_keyframe_is_permanent_and_creates_nothing(fake, tmp_path):
    with pytest.raises(PermanentError, match="keyframe"):
        backend(fake).generate(shot(keyframe=tmp_path / "gone.png"), tmp_path / "shot.mp4", jobs=shot_jobs(tmp_path))
    assert fake.count("create") == 0


def test_failed_job_is_permanent_and_recorded(fake, tmp_path):
    fake.plans.append(Plan(polls=["in_progress", "failed"],
                           error={"code": "invalid_input", "message": "The size 144x256 is not supported."}))
    jobs = shot_jobs(tmp_path)
    with pytest.raises(PermanentError, match="not supported"):
        backend(fake).generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    assert states(jobs) == [("failed", "video_1")]
    assert fake.count("content") == 0


def test_a_server_failed_job_is_not_re_created_unless_the_project_allows_it(fake, tmp_path):
    fake.plans += [Plan(polls=["failed"], error={"code": "server_error", "message": "Internal error."})] * 2
    jobs = shot_jobs(tmp_path)
    b = backend(fake)
    for _ in range(2):  # the shot's retries (Prefect's) do not pay again either
        with pytest.raises(JobFailed, match="Internal error.*recreate_failed_jobs = 0"):
            b.generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    assert fake.count("create") == 1
    allowed = shot_jobs(tmp_path / "allowed", recreate=1)
    b.generate(shot(), tmp_path / "shot.mp4", jobs=allowed)
    assert fake.count("create") == 3  # the second failed, the third made the clip
    assert [(j.state, j.why) for j in allowed.journal.of("e1s1")] == [("failed", "first"), ("done", "recreate")]
    check_clip(tmp_path / "shot.mp4", shot())


@pytest.mark.parametrize("err", [
    {"code": "moderation_blocked", "message": "Your request was blocked by our moderation system."},
    {"code": "generation_failed", "message": "The output violates our content policy."},
], ids=["code", "message"])
def test_moderation_is_rejected_and_cleared(fake, tmp_path, err):
    fake.plans.append(Plan(polls=["in_progress", "failed"], error=err))
    jobs = shot_jobs(tmp_path, recreate=2)
    with pytest.raises(RejectedError) as info:
        backend(fake).generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    assert err["message"] in str(info.value)
    assert states(jobs) == [("failed", "video_1")] and fake.count("create") == 1  # a refusal is never re-made


def test_a_prompt_refused_at_create_is_rejected_and_no_job_is_billed(fake, tmp_path):
    fake.create_errors.append((400, error("moderation_blocked", "Your prompt was flagged."), {}))
    jobs = shot_jobs(tmp_path)
    with pytest.raises(RejectedError, match="flagged"):
        backend(fake).generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    (job,) = jobs.journal.of("e1s1")
    assert job.state == "refused" and not job.created


def test_a_create_whose_answer_is_lost_stops_as_unknown_and_is_never_re_sent(fake, tmp_path):
    fake.lost_creates = 1  # the gateway made the job, then answered 500
    jobs = shot_jobs(tmp_path)
    b = backend(fake)
    for _ in range(2):
        with pytest.raises(UnknownJob, match=r"got no answer.*rerun PROJECT --shot e1s1 --new-job"):
            b.generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    assert fake.count("create") == 1 and states(jobs) == [("unknown", None)]
    jobs.journal.abandon("e1s1", "test: the user chose --new-job")
    b.generate(shot(), tmp_path / "shot.mp4", jobs=jobs)  # the explicit way to pay again
    assert fake.count("create") == 2 and [j.why for j in jobs.journal.of("e1s1")] == ["first", "new-job"]


@pytest.mark.parametrize("how", ["status", "expires_at", "download_410"])
def test_an_expired_job_is_re_created_only_as_the_project_allows(fake, tmp_path, how):
    def first() -> Plan:
        return {"status": Plan(polls=["in_progress", "expired"]), "expires_at": Plan(expires_at=int(time.time()) - 60),
                "download_410": Plan(content=[410] * 3)}[how]

    fake.plans += [first()]
    with pytest.raises(JobFailed, match="recreate_failed_jobs = 0"):
        backend(fake).generate(shot(), tmp_path / "a.mp4", jobs=shot_jobs(tmp_path / "a"))
    assert fake.count("create") == 1
    fake.plans += [first(), Plan()]
    jobs = shot_jobs(tmp_path / "b", recreate=1)
    backend(fake).generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    assert fake.count("create") == 3
    assert [j.state for j in jobs.journal.of("e1s1")] == ["gone" if how != "download_410" else "failed", "done"]
    check_clip(tmp_path / "shot.mp4", shot())


def test_a_job_that_expires_twice_stops_at_the_allowance_not_a_loop(fake, tmp_path):
    fake.plans += [Plan(polls=["expired"]), Plan(polls=["expired"]), Plan()]
    jobs = shot_jobs(tmp_path, recreate=1)
    with pytest.raises(JobFailed, match="recreate_failed_jobs = 1"):
        backend(fake).generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    assert fake.count("create") == 2


def test_a_download_500_is_retried_in_place_and_never_re_creates(fake, tmp_path):
    fake.plans.append(Plan(content=[500]))
    jobs = shot_jobs(tmp_path)
    backend(fake).generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    assert fake.count("create") == 1 and fake.jobs["video_1"]["downloads"] == 2
    check_clip(tmp_path / "shot.mp4", shot())
    assert list(tmp_path.glob(".*download*")) == []  # the temp download is gone


def test_a_clip_that_never_decodes_fails_the_job_without_paying_again(fake, tmp_path):
    fake.mp4 = b"<html>proxy error</html>"
    jobs = shot_jobs(tmp_path)
    with pytest.raises(JobFailed, match="cannot be used"):
        backend(fake).generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    assert states(jobs) == [("failed", "video_1")] and fake.jobs["video_1"]["downloads"] == 3
    assert list(tmp_path.glob(".*download*")) == []


def test_429_on_create_is_transient_with_the_retry_after_hint(fake, tmp_path):
    fake.create_errors.append((429, error("rate_limit_exceeded", "Slow down."), {"Retry-After": "7"}))
    jobs = shot_jobs(tmp_path)
    with pytest.raises(TransientError, match="429") as info:
        backend(fake).generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    assert info.value.retry_after_s == 7
    assert states(jobs) == [("refused", None)] and fake.count("create") == 0
    backend(fake).generate(shot(), tmp_path / "shot.mp4", jobs=jobs)  # the retry: the same intent, asked again
    assert [(j.state, j.why) for j in jobs.journal.of("e1s1")] == [("refused", "first"), ("done", "first")]


def test_a_submitted_job_is_resumed_without_a_create(fake, tmp_path):
    jobs = shot_jobs(tmp_path)
    job = jobs.journal.intend("e1s1", spec_hash="k1", backend="openai-videos", provider="p", why="first",
                              billed_s=1, images=0)
    fake.create({"model": "video-test", "seconds": "1", "size": PROVIDER_SIZE})  # video_1, made by a killed render
    jobs.journal.update(job.client_key, JobState.SUBMITTED, job_id="video_1")
    backend(fake).generate(shot(), tmp_path / "b.mp4", jobs=jobs)
    assert fake.count("create") == 1 and len(fake.create_headers) == 0  # nothing was sent to create
    check_clip(tmp_path / "b.mp4", shot())


def test_a_job_the_provider_no_longer_knows_is_gone_not_re_made_silently(fake, tmp_path):
    jobs = shot_jobs(tmp_path)
    job = jobs.journal.intend("e1s1", spec_hash="k1", backend="openai-videos", provider="p", why="first",
                              billed_s=1, images=0)
    jobs.journal.update(job.client_key, JobState.SUBMITTED, job_id="video_404")
    with pytest.raises(JobFailed, match="no longer knows it"):
        backend(fake).generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    assert fake.count("create") == 0 and states(jobs) == [("gone", "video_404")]
    later = ShotJobs(jobs.journal, "e1s1", "k1", since=time.time() + 1)  # a later run asks again: a new job
    backend(fake).generate(shot(), tmp_path / "shot.mp4", jobs=later)
    assert fake.count("create") == 1 and jobs.latest().why == "new-run"


def test_still_running_at_timeout_is_transient_and_a_rerun_resumes(fake, tmp_path):
    hold = threading.Event()
    fake.plans.append(Plan(hold=hold))
    jobs = shot_jobs(tmp_path)
    with pytest.raises(TransientError, match="still running after .* a retry resumes it"):
        backend(fake, timeout_s=0.05).generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    assert states(jobs) == [("submitted", "video_1")]
    hold.set()
    backend(fake).generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    assert fake.count("create") == 1
    check_clip(tmp_path / "shot.mp4", shot())


@pytest.mark.parametrize("answer", [(503, error("server_error", "busy")), (429, error("rate_limit", "slow")),
                                    (200, b"<html>502 Bad Gateway</html>")], ids=["503", "429", "html"])
def test_poll_errors_are_retried_in_the_poll_loop(fake, tmp_path, answer):
    jobs = shot_jobs(tmp_path)
    real, calls = fake.get, []

    def flaky(job_id):
        calls.append(job_id)
        return answer if len(calls) <= 2 else real(job_id)

    fake.get = flaky
    backend(fake).generate(shot(), tmp_path / "shot.mp4", jobs=jobs)  # one attempt: no shot retry used
    assert fake.count("create") == 1 and len(calls) >= 3
    check_clip(tmp_path / "shot.mp4", shot())


CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from stages.backends.base import ShotRequest
    from stages.backends.openai_videos import OpenAIVideosBackend, OpenAIVideosOptions
    from stages.backends._jobs import ShotJobs
    from stages.core.jobs import Journal
    from stages.core.ledger import Ledger

    base_url, ledger_path, out, key_env = sys.argv[1:5]
    ledger = Ledger(Path(ledger_path))
    backend = OpenAIVideosBackend(OpenAIVideosOptions(base_url=base_url, api_key_env=key_env, model="video-test",
                                                      size="144x256", seconds=[1, 2], poll_s=0.01))
    request = ShotRequest(shot_id="e1s1", prompt="A kettle.", size="medium", camera="static", location="K",
                          time="DAY", action="", caption="", figures=(), duration_s=0.75, width=100, height=150,
                          fps=24, seed=1)
    backend.generate(request, Path(out), jobs=ShotJobs(Journal(ledger), "e1s1", "h1", since=0))
    print("finished")
""")


def test_a_killed_render_resumes_the_same_job_from_the_ledger(fake, tmp_path):
    hold = threading.Event()
    fake.plans.append(Plan(hold=hold))
    ledger_path, out = tmp_path / "ledger.sqlite", tmp_path / "shot.mp4"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    child_log = tmp_path / "child.log"
    with open(child_log, "wb") as logf:
        child = subprocess.Popen([sys.executable, "-c", CHILD, fake.base_url, str(ledger_path), str(out), KEY_ENV],
                                 cwd=tmp_path, env=env, stdout=logf, stderr=subprocess.STDOUT)
    try:
        for _ in range(6000):  # until the child has polled its job at least once (or died)
            if fake.count("get") >= 1 or child.poll() is not None:
                break
            time.sleep(0.01)
        assert child.poll() is None, child_log.read_text()
        assert fake.count("get") >= 1
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not out.exists()
    journal = Journal(Ledger(ledger_path))
    assert [(j.state, j.job_id) for j in journal.of("e1s1")] == [("submitted", "video_1")]  # survived the kill
    hold.set()
    backend(fake).generate(shot(0.75, prompt="A kettle."), out, jobs=ShotJobs(journal, "e1s1", "h1", since=0))
    assert fake.count("create") == 1
    check_clip(out, shot(0.75))
    assert [j.state for j in journal.of("e1s1")] == ["done"]
