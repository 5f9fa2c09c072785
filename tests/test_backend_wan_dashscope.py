"""Wan on DashScope against its local server (tests/fakes/wan_dashscope.py): the exact requests (headers,
the temporary upload, reference order and naming, size / resolution, duration), the host options,
limits, cancel of a PENDING task and the lookup by the prompt a finished task echoes."""

from __future__ import annotations

import time

import fakes
import pytest
from fake_hosted import FakeHosted
from fake_openai import png_bytes, provider_mp4  # noqa: F401 (a fixture)
from fakes import wan_dashscope as proto

from stages.backends._jobs import ShotJobs
from stages.backends.base import Figure, PermanentError, ShotRequest
from stages.backends.wan_dashscope import WanDashscopeBackend, WanDashscopeOptions
from stages.core.jobs import Journal
from stages.core.ledger import Ledger


@pytest.fixture
def server(provider_mp4, monkeypatch):
    monkeypatch.setenv(proto.KEY_ENV, proto.KEY)
    s = FakeHosted(provider_mp4, hang_s=0.5)
    yield s
    s.close()


def make(server, **kw) -> WanDashscopeBackend:
    return fakes.backend(server, "wan-dashscope", **{**dict(poll_s=0.005, request_timeout_s=0.2, timeout_s=30), **kw})


def shot(duration_s: float = 3.2, shot_id: str = "e1s1", **kw) -> ShotRequest:
    args = dict(shot_id=shot_id, prompt=f"{shot_id}: they argue by the window.", size="medium", camera="static",
                location="KITCHEN", time="DAY", action="", caption="", figures=(), duration_s=duration_s,
                width=100, height=150, fps=24, seed=77)
    return ShotRequest(**{**args, **kw})


def jobs_at(tmp_path, unit: str = "e1s1") -> ShotJobs:
    return ShotJobs(Journal(Ledger(tmp_path / "ledger.sqlite")), unit, "k1", since=time.time())


def sheets(tmp_path, *names: str):
    out = []
    for i, n in enumerate(names):
        p = tmp_path / f"{n}-{i:020x}.png"
        p.write_bytes(png_bytes(64, 96, (40 * i, 100, 200 - 40 * i)))
        out.append(p)
    return out


def two_characters(tmp_path):
    a_front, a_side, b_front = sheets(tmp_path, "front", "three-quarter", "front")
    return (Figure("ann", "ANN", "red hair", references=(a_front, a_side)),
            Figure("bo", "BO", "bald", speaking=True, references=(b_front,)))


def test_a_two_character_shot_sends_both_uploaded_speaker_first_named_character_n(server, tmp_path):
    b = make(server)
    figures = two_characters(tmp_path)
    b.generate(shot(figures=figures), tmp_path / "a.mp4", jobs_at(tmp_path))
    (job,) = server.created()
    body, headers = job.body, job.headers
    assert headers["Authorization"] == f"Bearer {proto.KEY}" and headers["X-DashScope-Async"] == "enable"
    assert headers["X-DashScope-OssResourceResolve"] == "enable" and "X-DashScope-WorkSpace" not in headers
    assert body["model"] == "wan2.6-r2v"
    refs = body["input"]["reference_urls"]
    assert len(refs) == 3 and all(u.startswith("oss://dashscope-instant/") for u in refs)
    # the speaker (BO) first, then everyone's first image before anyone's second
    assert [u.rsplit("/", 1)[1].split("-")[0] for u in refs] == ["front", "front", "three"]
    assert refs[0].endswith(figures[1].references[0].name) and refs[1].endswith(figures[0].references[0].name)
    assert body["input"]["prompt"] == ("character1 is BO (front view); character2 is ANN (front view); character3 is "
                                       "ANN (three-quarter view). e1s1: they argue by the window.")
    # 3.2 s asks for the next offered length (5); 9:16 at 720p is 720*1280; no sound unless asked for
    assert body["parameters"] == {"duration": 5, "audio": False, "seed": 77, "size": "720*1280"}
    assert server.count("upload") == 3 and server.count("policy") == 3


def test_each_sheet_is_uploaded_once_per_account_and_model_across_shots(server, tmp_path):
    figures = two_characters(tmp_path)
    jobs = jobs_at(tmp_path, "e1s1")
    make(server).generate(shot(figures=figures), tmp_path / "a.mp4", jobs)
    second = ShotJobs(jobs.journal, "e1s2", "k2", since=time.time())
    make(server).generate(shot(shot_id="e1s2", figures=figures), tmp_path / "b.mp4", second)
    assert server.count("upload") == 3 and len(server.created()) == 2
    assert server.created()[0].body["input"]["reference_urls"] == server.created()[1].body["input"]["reference_urls"]
    # a temporary file is bound to its model: another model uploads its own
    third = ShotJobs(jobs.journal, "e1s3", "k3", since=time.time())
    make(server, model="wan2.7-r2v").generate(shot(shot_id="e1s3", figures=figures), tmp_path / "c.mp4", third)
    assert server.count("upload") == 6


def test_wan27_takes_media_named_image_n_with_resolution_and_ratio(server, tmp_path):
    figures = two_characters(tmp_path)
    b = make(server, model="wan2.7-r2v", resolution="1080p", aspect_ratio="16:9")
    assert b.capabilities.max_references == 5
    b.generate(shot(6.0, figures=figures), tmp_path / "a.mp4", jobs_at(tmp_path))
    (job,) = server.created()
    media = job.body["input"]["media"]
    assert [m["type"] for m in media] == ["reference_image"] * 3 and all(m["url"].startswith("oss://") for m in media)
    assert job.body["input"]["prompt"].startswith("Image 1 is BO (front view); Image 2 is ANN (front view); Image 3 ")
    assert job.body["parameters"] == {"duration": 10, "audio": False, "seed": 77, "resolution": "1080P",
                                      "ratio": "16:9"}


def test_a_saved_reference_video_goes_by_its_url(server, tmp_path):
    (front,) = sheets(tmp_path, "front")
    ann = Figure("ann", "ANN", "red hair", references=(front,),
                 assets=(("wan-dashscope", "https://cdn.example.com/ann.mp4"),))
    b = make(server, model="wan2.7-r2v")
    b.generate(shot(figures=(ann,)), tmp_path / "a.mp4", jobs_at(tmp_path))
    (job,) = server.created()
    assert [m["type"] for m in job.body["input"]["media"]] == ["reference_video", "reference_image"]
    assert job.body["input"]["media"][0]["url"] == "https://cdn.example.com/ann.mp4"
    assert job.body["input"]["prompt"].startswith("Video 1 is ANN; Image 1 is ANN (front view). ")


def test_text_and_image_modes_send_their_documented_fields(server, tmp_path):
    (key,) = sheets(tmp_path, "keyframe")
    make(server, mode="text", model="wan2.6-t2v", aspect_ratio="16:9").generate(
        shot(negative_prompt="blur"), tmp_path / "t.mp4", jobs_at(tmp_path / "t"))
    make(server, mode="image", model="wan2.6-i2v").generate(
        shot(keyframe=key, motion_prompt="Slow push-in."), tmp_path / "i.mp4", jobs_at(tmp_path / "i"))
    text, image = server.created()
    assert text.body == {"model": "wan2.6-t2v", "input": {"prompt": "e1s1: they argue by the window.",
                                                         "negative_prompt": "blur"},
                         "parameters": {"duration": 5, "audio": False, "seed": 77, "size": "1280*720"}}
    assert "X-DashScope-OssResourceResolve" not in text.headers
    assert image.body["input"]["prompt"] == "Slow push-in." and image.body["input"]["img_url"].startswith("oss://")
    assert image.body["parameters"] == {"duration": 5, "audio": False, "seed": 77, "resolution": "720P"}


def test_a_reference_shot_with_no_one_in_it_goes_to_the_text_model(server, tmp_path):
    make(server, text_model="wan2.6-t2v").generate(shot(), tmp_path / "a.mp4", jobs_at(tmp_path))
    (job,) = server.created()
    assert job.model == "wan2.6-t2v" and "reference_urls" not in job.body["input"] and server.count("upload") == 0


def test_more_references_than_wan26_takes_names_the_dropped_one(server, tmp_path):
    a1, a2, b1, b2 = sheets(tmp_path, "front", "three-quarter", "front", "three-quarter")
    figures = (Figure("ann", "ANN", "", references=(a1, a2)), Figure("bo", "BO", "", references=(b1, b2)))
    b = make(server)
    fitted = b.fitted(shot(figures=figures))
    assert b.capabilities.max_references == 3 and len(fitted.sent) == 3
    assert [r.label() for r in fitted.dropped] == ["BO (three-quarter)"]


def test_hosts_by_region_and_workspace(server, tmp_path, monkeypatch):
    assert WanDashscopeOptions().base_url == "https://dashscope-intl.aliyuncs.com/api/v1"
    assert WanDashscopeOptions(region="beijing").base_url == "https://dashscope.aliyuncs.com/api/v1"
    assert WanDashscopeOptions(region="us").base_url == "https://dashscope-us.aliyuncs.com/api/v1"
    assert WanDashscopeOptions(region="frankfurt", workspace="ws-123").base_url == \
        "https://ws-123.eu-central-1.maas.aliyuncs.com/api/v1"
    assert WanDashscopeOptions(workspace="ws-123").base_url == "https://ws-123.ap-southeast-1.maas.aliyuncs.com/api/v1"
    with pytest.raises(ValueError, match="through a workspace"):
        WanDashscopeOptions(region="frankfurt")
    with pytest.raises(ValueError, match="no documented workspace host"):
        WanDashscopeOptions(region="us", workspace="ws-123")
    b = make(server, workspace="ws-123")  # base_url (the test server) wins; the header still goes
    (front,) = sheets(tmp_path, "front")
    b.generate(shot(figures=(Figure("ann", "ANN", "", references=(front,)),)), tmp_path / "a.mp4", jobs_at(tmp_path))
    (job,) = server.created()
    assert job.headers["X-DashScope-WorkSpace"] == "ws-123"
    assert server.count("workspace") >= 3  # policy, create, polls


def test_options_outside_the_limits_are_refused_clearly():
    with pytest.raises(ValueError, match="aspect_ratio '4:5' is not offered"):
        WanDashscopeOptions(aspect_ratio="4:5")
    with pytest.raises(ValueError, match=r"durations \[12.0\]: wan2.6-r2v makes 2 to 10 s"):
        WanDashscopeOptions(durations=[5, 12])
    with pytest.raises(ValueError, match="resolution '4k' is not offered"):
        WanDashscopeOptions(resolution="4k")
    with pytest.raises(ValueError, match="max_references 6 is over"):
        WanDashscopeOptions(max_references=6)
    assert WanDashscopeOptions(model="wan2.6-t2v", mode="text", durations=[12]).durations == [12]


def test_a_wrong_key_is_refused_and_makes_no_job(server, tmp_path, monkeypatch):
    monkeypatch.setenv(proto.KEY_ENV, "sk-wrong")
    jobs = jobs_at(tmp_path)
    with pytest.raises(PermanentError, match="Invalid API-key"):
        make(server).generate(shot(), tmp_path / "a.mp4", jobs)
    assert server.created() == [] and [j.state for j in jobs.journal.of("e1s1")] == ["refused"]


def test_a_pending_task_is_cancelled_a_running_one_cannot_be(server, tmp_path):
    b = make(server)
    job_id = b.submit(shot(), "df-1")
    b.cancel(job_id)
    assert server.jobs[job_id].cancelled and b.poll(job_id).state == "gone"
    other = b.submit(shot(shot_id="e1s2"), "df-2")
    assert b.poll(other).state == "queued" and b.poll(other).state == "done"
    with pytest.raises(PermanentError, match="only a PENDING task"):
        b.cancel(other)


def test_polling_states_and_an_unknown_task(server):
    b = make(server)
    server.outcomes = ["refuse"]
    job_id = b.submit(shot(), "df-1")
    assert [b.poll(job_id).state for _ in range(2)] == ["queued", "failed"]
    assert "DataInspectionFailed" in str(b.poll(job_id).error)
    assert b.poll("no-such-task").state == "gone"


def test_a_lost_answer_is_found_by_the_prompt_its_finished_task_echoes(server):
    b = make(server)
    mine, theirs = shot(), shot(shot_id="e1s9")
    other = b.submit(theirs, "df-0")
    server.faults.submit = ["500-after"]
    sent = time.time()
    with pytest.raises(Exception, match="answered 500"):
        b.submit(mine, "df-1")
    made = server.created()[-1].id
    assert b.lookup("df-1", mine, sent) is None  # still PENDING: no prompt to match yet (not even read)
    while server.jobs[made].state != "done":  # time passes: the task finishes
        server.advance(server.jobs[made])
    assert b.lookup("df-1", mine, sent) == made  # SUCCEEDED now, its orig_prompt is ours
    assert other != made and server.count("list") == 2
