"""Seedance on Volcengine Ark against its local server (tests/fakes/seedance.py): the exact create body
(content[] items and roles, the prompt's "Image N" names, saved face assets, ratio, duration, resolution,
seed, watermark, generate_audio), the task states, the download, cancel (queued only), options checked
at the edge, and one paid job per shot with no lookup."""

from __future__ import annotations

import fake_openai
import fakes
import pytest
from fake_hosted import FakeHosted
from fake_openai import png_bytes
from fakes import seedance as proto
from test_hosted_video import make, shot, shot_jobs

from stages.backends._jobs import HostedVideoBackend, JobFailed, UnknownJob
from stages.backends.base import Figure, PermanentError, RejectedError, TransientError
from stages.backends.seedance import SeedanceOptions

HEX = "0123456789abcdef0123"
provider_mp4 = fake_openai.provider_mp4  # a fixture


@pytest.fixture
def server(provider_mp4, monkeypatch):
    """test_hosted_video's server, every direct provider's key set."""
    for fake in fakes.PROTOCOLS.values():
        for env, value in fake.ENV.items():
            monkeypatch.setenv(env, value)
    s = FakeHosted(provider_mp4, hang_s=0.5)
    yield s
    s.close()


@pytest.fixture
def sheets(tmp_path):
    out = {}
    for who, colour in (("ann", (200, 0, 0)), ("bo", (0, 0, 200))):
        for view in ("front", "three-quarter"):
            p = tmp_path / who / f"{view}-{HEX}.png"
            p.parent.mkdir(exist_ok=True)
            p.write_bytes(png_bytes(64, 96, colour))
            out[who, view] = p
    return out


def two(sheets, *, bo_asset: str | None = "asset://asset-20260101-bo") -> tuple[Figure, ...]:
    """BO framed first, ANN speaking: ANN's references go first."""
    bo = Figure("bo", "BO", "bald", references=(sheets["bo", "front"],),
                assets=((("seedance", bo_asset),) if bo_asset else ()) + (("kling", "9001"),))
    ann = Figure("ann", "ANN", "red hair", speaking=True,
                 references=(sheets["ann", "front"], sheets["ann", "three-quarter"]))
    return bo, ann


def test_a_two_character_shot_sends_both_with_roles_names_and_the_documented_fields(server, tmp_path, sheets):
    b = make(server, "seedance")
    request = shot(3.2, figures=two(sheets))
    b.generate(request, tmp_path / "shot.mp4", shot_jobs(tmp_path))
    (job,) = server.created()
    assert job.headers["Authorization"] == f"Bearer {proto.KEY}" and job.headers["Content-Type"] == "application/json"
    body = dict(job.body)
    content = body.pop("content")
    assert body == {"model": "doubao-seedance-2-0-260128", "ratio": "9:16", "duration": 5,  # 3.2 s: the 5 s clip
                    "resolution": "720p", "seed": request.seed, "watermark": False, "generate_audio": False}
    assert content[0] == {"type": "text", "text": "Image 1 is ANN (front view); Image 2 is BO (saved portrait); "
                                                  "Image 3 is ANN (three-quarter view); Image 4 is BO (front view). "
                                                  + request.prompt}
    images = content[1:]
    assert [i["role"] for i in images] == ["reference_image"] * 4 and all(set(i) == {"type", "image_url", "role"}
                                                                          for i in images)
    urls = [i["image_url"]["url"] for i in images]
    assert urls[1] == "asset://asset-20260101-bo"  # the saved face asset, in its slot; kling's id is not sent
    assert all(u.startswith("data:image/jpeg;base64,") for u in urls[:1] + urls[2:])
    assert server.count("download") == 1 and job.downloads == 1
    assert [c for c, _ in server.calls if c in ("submit", "status", "download")] == \
        ["submit", "status", "status", "download"]  # queued, then succeeded at its video_url


def test_an_asset_written_without_its_scheme_gets_it(server, tmp_path, sheets):
    b = make(server, "seedance")
    b.generate(shot(figures=two(sheets, bo_asset="asset-bo-02")), tmp_path / "s.mp4", shot_jobs(tmp_path))
    assert server.created()[0].body["content"][2]["image_url"]["url"] == "asset://asset-bo-02"


def test_image_mode_sends_the_keyframe_as_first_frame_and_only_the_motion(server, tmp_path, sheets):
    key = tmp_path / "key.png"
    key.write_bytes(png_bytes(90, 160))
    b = make(server, "seedance", mode="image", durations=[4, 6, 8], resolution="1080p", audio=True)
    request = shot(4.5, keyframe=key, motion_prompt="She turns to the window.", figures=two(sheets))
    b.generate(request, tmp_path / "shot.mp4", shot_jobs(tmp_path))
    body = server.created()[0].body
    assert body["content"][0] == {"type": "text", "text": "She turns to the window."}
    assert [i.get("role") for i in body["content"][1:]] == ["first_frame"]  # no character references
    assert (body["duration"], body["resolution"], body["generate_audio"]) == (6, "1080p", True)


def test_text_mode_sends_the_prompt_alone(server, tmp_path, sheets):
    b = make(server, "seedance", mode="text", aspect_ratio="16:9")
    request = shot(12.0, figures=two(sheets))
    b.generate(request, tmp_path / "shot.mp4", shot_jobs(tmp_path))
    body = server.created()[0].body
    assert body["content"] == [{"type": "text", "text": request.prompt}]
    assert (body["ratio"], body["duration"]) == ("16:9", 10)  # past the longest default: the longest


def test_more_references_than_the_limit_names_the_dropped(server, sheets):
    b = make(server, "seedance", max_references=3)
    fitted = b.fitted(shot(figures=two(sheets)))
    assert [r.label() for r in fitted.sent] == ["ANN (front)", "BO (saved)", "ANN (three-quarter)"]
    assert [r.label() for r in fitted.dropped] == ["BO (front)"]
    nine = make(server, "seedance")
    crowd = tuple(Figure(f"f{i}", f"F{i}", "x", references=(sheets["ann", "front"].with_name(f"f{i}.png"),))
                  for i in range(10))
    fitted = nine.fitted(shot(figures=crowd))
    assert len(fitted.sent) == 9 and [f.name for f in fitted.unseen()] == ["F9"]


def test_the_lite_i2v_model_takes_four_references(server):
    assert make(server, "seedance", model="doubao-seedance-1-0-lite-i2v-250428").capabilities.max_references == 4


@pytest.mark.parametrize("bad,message", [
    ({"durations": [3]}, "durations \\[3.0\\] are not offered"), ({"durations": [16]}, "not offered"),
    ({"aspect_ratio": "2:1"}, "aspect_ratio '2:1' is not offered"), ({"resolution": "4k"}, "resolution '4k'"),
    ({"max_references": 10}, "over the provider's 9"),
    ({"model": "doubao-seedance-1-0-pro-250528", "audio": True, "mode": "image"}, "makes no sound"),
    ({"model": "doubao-seedance-1-5-pro-251215"}, "takes no reference images"),
    ({"model": "doubao-seedance-1-0-lite-t2v-250428", "mode": "image"}, "text-to-video only"),
    ({"model": "doubao-seedance-1-0-lite-i2v-250428", "max_references": 5}, "over .*'s 4")])
def test_options_outside_the_documented_limits_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        SeedanceOptions(**bad)


def test_states_map_as_ark_names_them(server):
    b = make(server, "seedance")
    assert b.read("t", {"status": "queued"}).state == "queued"
    assert b.read("t", {"status": "running"}).state == "running"
    assert b.read("t", {"status": "cancelled"}).state == "gone" and b.read("t", {"status": "expired"}).state == "gone"
    done = b.read("t", {"status": "succeeded", "content": {"video_url": "https://tos/x.mp4"}})
    assert (done.state, done.result) == ("done", "https://tos/x.mp4")
    fails = {"OutputVideoSensitiveContentDetected": RejectedError, "InvalidParameter": PermanentError,
             "InvalidParameter.Duration": PermanentError, "InternalServiceError": TransientError}
    for code, cls in fails.items():
        poll = b.read("t", {"status": "failed", "error": {"code": code, "message": "m"}})
        assert poll.state == "failed" and type(poll.error) is cls and code in str(poll.error)
    with pytest.raises(TransientError, match="does not know"):
        b.read("t", {"status": "paused"})


def test_a_wrong_key_makes_no_job(server, tmp_path, monkeypatch):
    monkeypatch.setenv(proto.KEY_ENV, "wrong")
    jobs = shot_jobs(tmp_path)
    with pytest.raises(PermanentError, match=f"401.*{proto.KEY_ENV}"):
        make(server, "seedance").generate(shot(), tmp_path / "shot.mp4", jobs)
    assert server.created() == [] and [str(j.state) for j in jobs.journal.of("e1s1")] == ["refused"]


def test_cancel_stops_a_queued_task_refuses_a_running_one_and_leaves_a_finished_one(server, tmp_path):
    b = make(server, "seedance")
    queued = b.submit(shot(), "k1")
    b.cancel(queued)
    assert server.jobs[queued].cancelled and server.count("cancel") == 1
    assert b.poll(queued).state == "gone"

    server.outcomes = ["hold"]
    b2 = make(server, "seedance", timeout_s=0.2)
    with pytest.raises(TransientError, match="still running"):
        b2.generate(shot(shot_id="e1s2"), tmp_path / "s2.mp4", shot_jobs(tmp_path, "e1s2"))
    running = server.created()[-1].id
    with pytest.raises(PermanentError, match="no way to cancel .* once it is running"):
        b2.cancel(running)
    assert server.count("cancel") == 1 and not server.jobs[running].cancelled  # no DELETE sent

    b.generate(shot(shot_id="e1s3"), tmp_path / "s3.mp4", shot_jobs(tmp_path, "e1s3"))
    b.cancel(server.created()[-1].id)  # succeeded: DELETE would erase its record; nothing is sent
    assert server.count("cancel") == 1


def test_no_lookup_a_lost_create_stops_as_unknown_and_is_never_re_sent(server, tmp_path):
    b = make(server, "seedance")
    assert type(b).lookup is HostedVideoBackend.lookup  # the task list echoes nothing of the request
    server.faults.submit = ["drop-after"]
    jobs = shot_jobs(tmp_path)
    for _ in range(2):
        with pytest.raises(UnknownJob, match="Ark console"):
            b.generate(shot(), tmp_path / "shot.mp4", jobs)
    assert server.count("submit") == 1 and len(server.created()) == 1


def test_a_failed_task_is_not_paid_for_again(server, tmp_path):
    server.outcomes = ["fail-infra"]
    with pytest.raises(JobFailed, match="InternalServiceError"):
        make(server, "seedance").generate(shot(), tmp_path / "shot.mp4", shot_jobs(tmp_path))
    assert len(server.created()) == 1




assert "seedance" in fakes.DIRECT
