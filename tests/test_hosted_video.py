"""The fal and Replicate backends against a local server speaking each protocol (`fake_hosted.py`): the
request each model gets, faults on submit, poll, result and download, jobs that fail, are cancelled,
vanish or expire, and the figure that matters: paid jobs created per shot = exactly 1 over seeded
fault schedules, 0 shots lost, every lost answer surfaced as `unknown-job`."""

from __future__ import annotations

import io
import random
import time
from pathlib import Path

import pytest

from fake_hosted import FAL_KEY, FAL_KEY_ENV, REPLICATE_KEY_ENV, REPLICATE_TOKEN, FakeHosted
from fake_openai import png_bytes, provider_mp4  # noqa: F401 (a fixture)
from stages.backends._jobs import JobFailed, ShotJobs, UnknownJob
from stages.backends.base import Figure, PermanentError, RejectedError, ShotRequest, TransientError, VideoBackend
from stages.backends.fal import FalBackend, FalOptions
from stages.backends.replicate import ReplicateBackend, ReplicateOptions
from stages.core.jobs import Journal
from stages.core.ledger import Ledger
from stages.core.media import probe

FAL_MODEL = "fal-ai/kling-video/v2.1/standard/image-to-video"
REPLICATE_MODEL = "kwaivgi/kling-v2.1"
import fakes

BACKENDS = ["fal", "replicate", *fakes.DIRECT]
SCHEDULES = 5  # seeded fault schedules per backend in `make test` (its time budget); the slow matrix runs 200


def spread(faults: list, backends: list[str] = BACKENDS, per_fault: int = 3) -> list:
    """(backend, fault) for every pair. `make test` runs each fault on `per_fault` backends, rotating
    so that every backend meets some of them (its time budget); `make test-slow` runs every pair."""
    out = []
    for i, fault in enumerate(faults):
        name = fault[0] if isinstance(fault, tuple) else fault
        for j, which in enumerate(backends):
            now = (j - i * per_fault) % len(backends) < per_fault
            out.append(pytest.param(which, fault, id=f"{which}-{name}", marks=() if now else pytest.mark.slow))
    return out


@pytest.fixture
def server(provider_mp4, monkeypatch):
    monkeypatch.setenv(FAL_KEY_ENV, FAL_KEY)
    monkeypatch.setenv(REPLICATE_KEY_ENV, REPLICATE_TOKEN)
    for proto in fakes.PROTOCOLS.values():
        for env, value in proto.ENV.items():
            monkeypatch.setenv(env, value)
    s = FakeHosted(provider_mp4, hang_s=0.5)
    yield s
    s.close()


def make(server: FakeHosted, which: str, **kw):
    if which in fakes.PROTOCOLS:  # a direct provider: its own clip lengths; short waits
        return fakes.backend(server, which, **{**dict(poll_s=0.005, request_timeout_s=0.2, timeout_s=60), **kw})
    common = dict(poll_s=0.005, durations=[1, 2], request_timeout_s=0.2, timeout_s=60)
    if which == "fal":
        return FalBackend(FalOptions(**{"model": FAL_MODEL, "queue_url": server.fal_queue, "api_url": server.fal_api,
                                        "api_key_env": FAL_KEY_ENV, **common, **kw}))
    return ReplicateBackend(ReplicateOptions(**{"model": REPLICATE_MODEL, "base_url": server.replicate_url,
                                                "api_key_env": REPLICATE_KEY_ENV, **common, **kw}))


def looks_up(b) -> bool:
    """Whether the backend can find a job its lost request made (its provider lists or names jobs)."""
    from stages.backends._jobs import HostedVideoBackend

    return type(b).lookup is not HostedVideoBackend.lookup


def shot(duration_s: float = 0.75, shot_id: str = "e1s1", **kw) -> ShotRequest:
    args = dict(shot_id=shot_id, prompt=f"{shot_id}: a kettle steams in a small kitchen.", size="medium",
                camera="static", location="KITCHEN", time="DAY", action="Steam rises.", caption="", figures=(),
                duration_s=duration_s, width=100, height=150, fps=24, seed=hash(shot_id) % 1000)
    return ShotRequest(**{**args, **kw})


def shot_jobs(tmp_path: Path, unit: str = "e1s1", *, recreate: int = 0) -> ShotJobs:
    return ShotJobs(Journal(Ledger(tmp_path / "ledger.sqlite")), unit, "k1", since=time.time(), recreate=recreate)


def states(jobs: ShotJobs) -> list[str]:
    return [str(j.state) for j in jobs.journal.of(jobs.unit_id)]


def check_clip(path: Path, request: ShotRequest) -> None:
    info = probe(path)
    assert (info.width, info.height, info.video_codec, info.audio_codec) == (request.width, request.height, "h264",
                                                                             None)
    assert info.frames == round(request.duration_s * request.fps)


# --- the request each model gets ------------------------------------------------------------

@pytest.mark.parametrize("which", ["fal", "replicate"])  # a direct provider's body: its own test file
def test_happy_path_one_job_the_documented_body_billed_as_asked(server, tmp_path, which):
    key = tmp_path / "key.png"
    key.write_bytes(png_bytes(300, 200))
    fields = {"image": "image_url" if which == "fal" else "start_image"}
    b = make(server, which, fields=fields, inputs={"cfg_scale": 0.5})
    assert isinstance(b, VideoBackend) and b.capabilities.uses == {"keyframe"} and b.capabilities.billed
    request = shot(1.4, keyframe=key, motion_prompt="Slow push-in.", negative_prompt="blur")
    jobs = shot_jobs(tmp_path)
    b.generate(request, tmp_path / "shot.mp4", jobs)
    check_clip(tmp_path / "shot.mp4", request)
    (job,) = server.created()
    assert job.model == (FAL_MODEL if which == "fal" else REPLICATE_MODEL)
    body = dict(job.input)
    image = body.pop(fields["image"])
    assert image.startswith("data:image/jpeg;base64,")
    assert body == {"cfg_scale": 0.5, "prompt": "Slow push-in.", "duration": "2", "aspect_ratio": "9:16",
                    "negative_prompt": "blur", "seed": request.seed}  # 1.4 s asks the model for its 2 s clip
    (row,) = jobs.journal.of("e1s1")
    assert (row.state, row.job_id, row.billed_s, row.images, row.why) == ("done", job.id, 2.0, 1, "first")
    assert server.count("submit") == 1 and server.billed() == pytest.approx(2 * server.price_per_second)


def test_references_go_as_a_list_up_to_the_limit(server, tmp_path):
    sheets = []
    for i, colour in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200)]):
        p = tmp_path / f"ref{i}.png"
        p.write_bytes(png_bytes(64, 96, colour))
        sheets.append(p)
    b = make(server, "fal", fields={"image": None, "references": "input_image_urls", "aspect_ratio": "aspect_ratio"},
             max_references=2)
    assert b.capabilities.uses == {"references"} and b.capabilities.max_references == 2
    figures = (Figure("ann", "ANN", "red hair", references=tuple(sheets[:2])),
               Figure("bo", "BO", "bald", references=(sheets[2],)))
    request = shot(figures=figures)
    assert b.images_sent(request) == 2
    b.generate(request, tmp_path / "shot.mp4", shot_jobs(tmp_path))
    (job,) = server.created()
    assert len(job.input["input_image_urls"]) == 2 and "image_url" not in job.input


def test_replicate_sends_a_large_image_through_its_files_api(server, tmp_path):
    from PIL import Image

    noise = tmp_path / "noise.png"
    Image.frombytes("RGB", (1280, 1280), random.Random(1).randbytes(1280 * 1280 * 3)).save(noise)
    b = make(server, "replicate", fields={"image": "start_image"})
    b.generate(shot(keyframe=noise), tmp_path / "shot.mp4", shot_jobs(tmp_path))
    (job,) = server.created()
    assert server.count("upload") == 1 and job.input["start_image"] == f"{server.replicate_url}/files/file1"


def test_a_replicate_version_or_deployment_goes_to_its_own_endpoint(server, tmp_path):
    version = "a" * 64
    make(server, "replicate", model=None, version=version).generate(shot(), tmp_path / "a.mp4",
                                                                    shot_jobs(tmp_path / "a"))
    make(server, "replicate", model=None, deployment="acme/kling").generate(shot(), tmp_path / "b.mp4",
                                                                            shot_jobs(tmp_path / "b"))
    assert [j.model for j in server.created()] == [version, "acme/kling"]
    with pytest.raises(ValueError, match="one of model, version or deployment"):
        ReplicateOptions(model="a/b", deployment="c/d")


@pytest.mark.parametrize("which", BACKENDS)
def test_a_missing_key_is_a_clear_permanent_error_and_sends_nothing(server, tmp_path, which, monkeypatch):
    env = fakes.PROTOCOLS[which].KEY_ENV if which in fakes.PROTOCOLS else \
        FAL_KEY_ENV if which == "fal" else REPLICATE_KEY_ENV
    monkeypatch.delenv(env)
    with pytest.raises(PermanentError, match=env):
        make(server, which).generate(shot(), tmp_path / "shot.mp4", shot_jobs(tmp_path))
    assert server.calls == []


def test_a_veo_job_is_priced_by_resolution_and_sound_as_fal_bills_it(server):
    from stages.estimate_render import price
    from stages.schema import Rates

    rates = Rates(video={"fal": {"cost_per_second": 0.20, "cost_per_second_at": {"4k": 0.40},
                                 "audio_cost_per_second": 0.20}})
    b = make(server, "fal", model="fal-ai/veo3.1/reference-to-video", durations=[8], duration_as="seconds",
             resolution="4k", with_audio=True, fields={"image": None, "references": "image_urls"})
    caps = b.capabilities
    assert (caps.resolution, caps.native_audio, b.billed_seconds(shot(3.0))) == ("4k", True, 8)
    body = b.model_input(shot(3.0))
    assert (body["resolution"], body["duration"]) == ("4k", "8s")
    one = dict(count=1, seconds=8)
    assert price("video", rates, "fal", True, **one, resolution="4k", audio=True) == pytest.approx(4.80)  # $0.60/s
    assert price("video", rates, "fal", True, **one, resolution="720p", audio=False) == pytest.approx(1.60)
    assert price("video", rates, "fal", True, **one, resolution="1080p", audio=True) == pytest.approx(3.20)


# --- submit ---------------------------------------------------------------------------------

@pytest.mark.parametrize("which", BACKENDS)
def test_429_on_submit_made_no_job_and_the_retry_makes_one(server, tmp_path, which):
    server.faults.submit = ["429"]
    jobs, b = shot_jobs(tmp_path), make(server, which)
    with pytest.raises(TransientError, match="429"):
        b.generate(shot(), tmp_path / "shot.mp4", jobs)
    assert states(jobs) == ["refused"] and server.created() == []
    b.generate(shot(), tmp_path / "shot.mp4", jobs)
    assert len(server.created()) == 1 and states(jobs) == ["refused", "done"]


@pytest.mark.parametrize("which,fault", spread(["500-after", "html-after", "drop-after", "hang-after"]))
def test_a_lost_submit_answer_is_looked_up_never_re_sent(server, tmp_path, which, fault):
    server.faults.submit = [fault]
    jobs, b = shot_jobs(tmp_path), make(server, which)
    if not looks_up(b):  # no way to find a job by what was sent: surfaced, never re-sent
        for _ in range(2):
            with pytest.raises(UnknownJob, match="--new-job"):
                b.generate(shot(), tmp_path / "shot.mp4", jobs)
        assert server.count("submit") == 1 and len(server.created()) == 1 and states(jobs) == ["unknown"]
        return
    if getattr(fakes.PROTOCOLS.get(which), "LOOKUP_SEES", "all") == "done":  # it finds only finished jobs
        with pytest.raises(UnknownJob):
            b.generate(shot(), tmp_path / "shot.mp4", jobs)
        (job,) = server.created()
        while job.state != "done":  # time passes: the job finishes at the provider
            server.advance(job)
    b.generate(shot(), tmp_path / "shot.mp4", jobs)  # (after `rerun --failed`, for the above)
    (job,) = server.created()
    assert server.count("submit") == 1 and server.count("list") >= 1
    (row,) = jobs.journal.of("e1s1")
    assert (row.state, row.job_id) == ("done", job.id)
    check_clip(tmp_path / "shot.mp4", shot())


def test_a_lost_answer_replicate_does_not_list_once_settled_made_nothing_and_is_asked_again(server, tmp_path):
    server.faults.submit = ["500"]  # the provider may or may not have made it: here it did not
    jobs, b = shot_jobs(tmp_path), make(server, "replicate")
    assert b.lookup_complete and b.settle_s == pytest.approx(0.6)
    with pytest.raises(TransientError, match="made no job, so a retry asks again"):
        b.generate(shot(), tmp_path / "shot.mp4", jobs)  # looked up, waited until settled, looked again
    assert server.count("list") >= 2 and states(jobs) == ["refused"]
    b.generate(shot(), tmp_path / "shot.mp4", jobs)  # the shot's retry
    assert server.count("submit") == 2 and len(server.created()) == 1 and states(jobs) == ["refused", "done"]


@pytest.mark.parametrize("which", ["fal"])
def test_a_lost_answer_that_no_lookup_finds_stops_as_unknown_until_the_user_pays_again(server, tmp_path, which):
    server.faults.submit = ["500"]  # the provider may or may not have made it: here it did not
    jobs, b = shot_jobs(tmp_path), make(server, which)
    assert not b.lookup_complete  # fal's request list is not documented as complete: never trusted for "none"
    for _ in range(2):  # a retry (or `rerun --failed`) looks again; it never re-sends
        with pytest.raises(UnknownJob) as info:
            b.generate(shot(), tmp_path / "shot.mp4", jobs)
    text = str(info.value)
    assert "got no answer" in text and b.lookup_hint in text and "--shot e1s1 --new-job" in text
    assert server.count("submit") == 1 and states(jobs) == ["unknown"]
    jobs.journal.abandon("e1s1", "the user checked the dashboard: no job")
    b.generate(shot(), tmp_path / "shot.mp4", jobs)
    assert server.count("submit") == 2 and len(server.created()) == 1
    assert [(j.state, j.why) for j in jobs.journal.of("e1s1")] == [("abandoned", "first"), ("done", "new-job")]


def test_fal_without_its_request_list_surfaces_the_unknown_job(server, tmp_path):
    server.list_has_payloads = False  # a key without payload storage: the list cannot be matched
    server.faults.submit = ["drop-after"]
    jobs, b = shot_jobs(tmp_path), make(server, "fal")
    for _ in range(2):
        with pytest.raises(UnknownJob, match="fal.ai/dashboard/requests"):
            b.generate(shot(), tmp_path / "shot.mp4", jobs)
    assert len(server.created()) == 1 and server.count("submit") == 1  # made once, never again
    row = jobs.journal.of("e1s1")[0]
    assert row.state == "unknown" and row.created  # billed in the report as maybe-made


def test_a_request_list_the_key_may_not_read_leaves_the_job_unknown(server, tmp_path):
    server.faults.submit = ["drop-after"]
    server.faults.listing = ["403"]
    jobs = shot_jobs(tmp_path)
    with pytest.raises(UnknownJob, match="cannot use the Platform API"):
        make(server, "fal").generate(shot(), tmp_path / "shot.mp4", jobs)
    assert len(server.created()) == 1 and states(jobs) == ["unknown"]
    make(server, "fal").generate(shot(), tmp_path / "shot.mp4", jobs)  # `rerun --failed`: found this time
    assert len(server.created()) == 1 and states(jobs) == ["done"]


# --- poll, result, download -----------------------------------------------------------------

@pytest.mark.parametrize("which,fault", spread(["429", "500", "html", "drop", "hang"]))
def test_poll_errors_are_retried_in_the_loop_without_a_new_job(server, tmp_path, which, fault):
    server.faults.status = [fault, fault]
    if which == "fal":
        server.faults.result = [fault]
    jobs = shot_jobs(tmp_path)
    make(server, which).generate(shot(), tmp_path / "shot.mp4", jobs)  # one call: no shot retry used
    assert len(server.created()) == 1 and states(jobs) == ["done"]


@pytest.mark.parametrize("which", BACKENDS)
def test_a_download_that_fails_is_fetched_again_and_a_broken_file_fails_the_job(server, tmp_path, which):
    server.faults.download = ["500"]
    make(server, which).generate(shot(), tmp_path / "a.mp4", shot_jobs(tmp_path / "a"))
    assert len(server.created()) == 1 and server.created()[0].downloads == 1
    server.faults.download = ["garbage"] * 3
    jobs = shot_jobs(tmp_path / "b")
    with pytest.raises(JobFailed, match="cannot be used"):
        make(server, which).generate(shot(), tmp_path / "b.mp4", jobs)
    assert states(jobs) == ["failed"] and len(server.created()) == 2
    assert list(tmp_path.rglob(".*.part*")) == []  # no temp download left behind


@pytest.mark.parametrize("which,ending", spread([("fail-infra", JobFailed), ("fail-model", PermanentError),
                                                 ("refuse", RejectedError), ("cancel", JobFailed),
                                                 ("vanish", JobFailed), ("expire", JobFailed)]))
def test_a_job_that_ends_without_a_clip_is_not_paid_for_again(server, tmp_path, which, ending):
    outcome, error = ending
    if which == "replicate" and outcome == "fail-model":
        outcome, error = "fail-model", JobFailed  # Replicate's `error` is free text: counted as the provider's
    if which in fakes.PROTOCOLS:  # what the provider's failure says decides the class
        error = {"JobFailed": JobFailed, "PermanentError": PermanentError}.get(
            getattr(fakes.PROTOCOLS[which], "ERRORS", {}).get(outcome), error)
    server.outcomes = [outcome]
    jobs, b = shot_jobs(tmp_path), make(server, which)
    with pytest.raises(error):
        b.generate(shot(), tmp_path / "shot.mp4", jobs)
    with pytest.raises((error, JobFailed)):  # the shot's retry in the same run: still one job
        b.generate(shot(), tmp_path / "shot.mp4", jobs)
    assert len(server.created()) == 1 and not (tmp_path / "shot.mp4").exists()


@pytest.mark.parametrize("outcome,error", [("fail-model", PermanentError), ("fail-infra", JobFailed)])
def test_a_fal_error_found_only_in_the_result_fails_the_job(server, tmp_path, outcome, error):
    server.status_hides_errors = True  # the status says COMPLETED; the result answers 422, or 500 marked by fal
    server.outcomes = [outcome]
    jobs = shot_jobs(tmp_path)
    with pytest.raises(error, match="duration must be one of" if outcome == "fail-model" else "runner_disconnected"):
        make(server, "fal").generate(shot(), tmp_path / "shot.mp4", jobs)
    assert states(jobs) == ["failed"] and len(server.created()) == 1


@pytest.mark.parametrize("which", BACKENDS)
def test_recreate_failed_jobs_allows_exactly_that_many_new_bills(server, tmp_path, which):
    server.outcomes = ["fail-infra", "vanish", "fail-infra"]
    jobs = shot_jobs(tmp_path, recreate=2)
    with pytest.raises(JobFailed, match="recreate_failed_jobs = 2"):
        make(server, which).generate(shot(), tmp_path / "shot.mp4", jobs)
    assert len(server.created()) == 3
    assert [j.why for j in jobs.journal.of("e1s1")] == ["first", "recreate", "recreate"]
    server.outcomes = ["fail-infra"]
    again = shot_jobs(tmp_path / "again", recreate=1)
    make(server, which).generate(shot(), tmp_path / "shot.mp4", again)
    assert len(server.created()) == 5 and states(again) == ["failed", "done"]


@pytest.mark.parametrize("which", BACKENDS)
def test_cancel_reaches_the_provider(server, tmp_path, which):
    if which in fakes.PROTOCOLS and not fakes.PROTOCOLS[which].CANCELS:
        with pytest.raises(PermanentError, match="no way to cancel"):
            make(server, which).cancel("any")
        return
    server.outcomes = ["hold"]
    b = make(server, which, timeout_s=0.2)
    jobs = shot_jobs(tmp_path)
    with pytest.raises(TransientError, match="still"):
        b.generate(shot(), tmp_path / "shot.mp4", jobs)
    (job,) = server.created()
    b.cancel(job.id)
    assert server.jobs[job.id].cancelled and server.count("cancel") == 1


# --- the figure: paid jobs per shot over seeded fault schedules -----------------------------

SUBMIT_FAULTS = ["429", "500", "500-after", "html-after", "drop-after", "hang-after"]
POLL_FAULTS = ["429", "500", "html", "drop", "hang"]


def schedule(seed: int) -> dict:
    rnd = random.Random(seed)
    return {"submit": rnd.sample(SUBMIT_FAULTS, rnd.randint(0, 2)),
            "status": [rnd.choice(POLL_FAULTS) for _ in range(rnd.randint(0, 4))],
            "result": [rnd.choice(POLL_FAULTS) for _ in range(rnd.randint(0, 1))],
            "listing": [rnd.choice(["500", "429"]) for _ in range(rnd.randint(0, 1))],
            "download": [rnd.choice(["500", "404"]) for _ in range(rnd.randint(0, 1)) if rnd.random() < 0.5],
            "outcome": rnd.choice(["ok", "ok", "ok", "fail-infra", "cancel", "refuse"])}


def as_a_render_would(b, request: ShotRequest, out: Path, jobs: ShotJobs, server: FakeHosted) -> str:
    """The shot's task with its 3 retries, then what a user does with each ending: `rerun --failed`,
    and for an unknown job, a look at the provider's dashboard before `--new-job`. Returns the ending."""

    def task() -> str:
        for _ in range(4):
            try:
                b.generate(request, out, jobs)
                return "made"
            except UnknownJob:
                return "unknown"
            except TransientError:
                continue
            except (RejectedError, PermanentError) as exc:
                return type(exc).__name__
        return "still failing"

    ending = task()
    if ending == "unknown":
        ending = task()  # `rerun --failed`: looked up again, never re-sent
    if ending == "unknown":
        made = [j for j in server.created() if j.input.get("prompt") == request.prompt]
        proto = fakes.PROTOCOLS.get(b.name)
        partial = getattr(proto, "LOOKUP_SEES", "all") == "done" and made and made[0].state != "done"
        if made and (not looks_up(b) or partial):  # nothing can find it: the user sees it on the dashboard
            return "unknown (on the provider's dashboard)"
        assert not made, f"the provider has {made[0].id} but no lookup found it"
        jobs.journal.abandon(jobs.unit_id, "checked the dashboard: nothing was made")
        ending = task() + " after --new-job"
    return ending


@pytest.mark.parametrize("count", [SCHEDULES, pytest.param(200, marks=pytest.mark.slow)], ids=[str(SCHEDULES), "200"])
@pytest.mark.parametrize("which", BACKENDS)
def test_exactly_one_paid_job_per_shot_over_seeded_fault_schedules(server, tmp_path, which, count):
    endings = []
    for seed in range(count):
        plan = schedule(seed * 7919 + (which == "fal"))
        for k in ("submit", "status", "result", "listing", "download"):
            setattr(server.faults, k, list(plan[k]))
        server.outcomes = [plan["outcome"]]
        request = shot(shot_id=f"s{seed}")
        jobs = shot_jobs(tmp_path, request.shot_id)
        out = tmp_path / f"{request.shot_id}.mp4"
        ending = as_a_render_would(make(server, which), request, out, jobs, server)
        made = [j for j in server.created() if j.input.get("prompt") == request.prompt]
        assert len(made) == 1, (seed, plan, ending, [j.id for j in made])
        if plan["outcome"] == "ok" and not ending.startswith("unknown"):
            assert out.exists(), (seed, plan, ending)  # no shot lost
        billed = [j for j in jobs.journal.of(request.shot_id) if j.created]
        assert len(billed) == 1 and (billed[0].job_id is None or billed[0].job_id.rsplit("/", 1)[-1] == made[0].id), \
            (seed, plan, ending)  # a Gemini operation is named by its path
        endings.append(ending)
    print(f"{which}: {count} schedules, jobs created per shot = 1 in all; endings: "
          + ", ".join(f"{e} {endings.count(e)}" for e in sorted(set(endings))))
    assert "made" in endings and len(server.created()) == count


def test_noise_png_helper_is_really_large():
    from PIL import Image

    buf = io.BytesIO()
    Image.frombytes("RGB", (1280, 1280), random.Random(1).randbytes(1280 * 1280 * 3)).save(buf, format="JPEG",
                                                                                          quality=90)
    assert buf.tell() > 256 * 1024  # so the Replicate upload test does exercise the files API
