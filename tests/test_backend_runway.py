"""Runway's developer API against a local server that speaks it (`fakes/runway.py`): the headers, each
endpoint's body as the reference gives it, reference mode's two paid steps (a tagged gen4_image
still, then image_to_video from it) with both characters' references and the speaker first, the
tags made from character ids, limits checked at the edge, failure codes, cancel, and the money rule
across the two steps: a lost answer or a crash between them never pays for a second still. Faults
on one-step jobs: the shared tests in test_hosted_video."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import fakes
import pytest
from fake_hosted import FakeHosted
from fake_openai import png_bytes, provider_mp4  # noqa: F401 (a fixture)
from fakes import runway as proto

from stages.backends._jobs import ShotJobs, UnknownJob
from stages.backends.base import (
    Figure,
    PermanentError,
    RejectedError,
    ShotRequest,
    TransientError,
)
from stages.backends.runway import TAG, failure, tags
from stages.core.jobs import Journal
from stages.core.ledger import Ledger


@pytest.fixture
def server(provider_mp4, monkeypatch):  # noqa: F811
    for env, value in proto.ENV.items():
        monkeypatch.setenv(env, value)
    s = FakeHosted(provider_mp4, hang_s=0.5)
    yield s
    s.close()


def make(server, **kw):
    return fakes.backend(server, "runway", **{"poll_s": 0.005, "request_timeout_s": 0.5, **kw})


def sheet(tmp_path: Path, name: str, colour) -> Path:
    p = tmp_path / f"{name}-{'0' * 20}.png"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(png_bytes(64, 96, colour))
    return p


def two_people(tmp_path: Path, *, speaker: str = "bo") -> tuple[Figure, ...]:
    ann = Figure("ann", "ANN", "red coat", speaking=speaker == "ann",
                 references=(sheet(tmp_path, "ann/front", (200, 0, 0)), sheet(tmp_path, "ann/three-quarter", (150, 0, 0))))
    bo = Figure("bo", "BO", "blue scarf", speaking=speaker == "bo",
                references=(sheet(tmp_path, "bo/front", (0, 0, 200)), sheet(tmp_path, "bo/three-quarter", (0, 0, 150))))
    return ann, bo


def shot(duration_s: float = 3.2, **kw) -> ShotRequest:
    args = {"shot_id": "ep01-sc01-sh002", "prompt": "Medium shot: ANN hands BO a letter in a rainy bus shelter.",
            "size": "medium", "camera": "static", "location": "BUS SHELTER", "time": "NIGHT", "action": "",
            "caption": "", "figures": (), "duration_s": duration_s, "width": 90, "height": 160, "fps": 24,
            "seed": 7, "motion_prompt": "ANN holds out the letter; rain streaks past."}
    return ShotRequest(**{**args, **kw})


def shot_jobs(tmp_path: Path, request: ShotRequest, *, recreate: int = 0) -> ShotJobs:
    return ShotJobs(Journal(Ledger(tmp_path / "ledger.sqlite")), request.shot_id, "k", since=time.time(),
                    recreate=recreate)


def of(server, endpoint: str) -> list:
    jobs = sorted(proto.stills(server).values(), key=lambda j: j.id) if endpoint == "text_to_image" else \
        server.created()
    return [j for j in jobs if j.model.startswith(endpoint + ":")]


def sent(server, endpoint: str) -> int:
    return sum(1 for e, m in server.calls if e == "submit" and m.startswith(endpoint + ":"))


def decoded(uri: str) -> bytes:
    assert uri.startswith("data:image/jpeg;base64,")
    return base64.b64decode(uri.split(",", 1)[1])


def test_a_two_character_shot_makes_a_tagged_still_then_the_video_from_it(server, tmp_path):
    ann, bo = two_people(tmp_path, speaker="bo")
    request = shot(figures=(ann, bo))
    b = make(server)
    assert b.capabilities.uses == {"references"} and b.capabilities.max_references == 3
    assert [r.label() for r in b.fitted(request).dropped] == ["ANN (three-quarter)"]  # past gen4_image's 3, named
    jobs = shot_jobs(tmp_path, request)
    b.generate(request, tmp_path / "out.mp4", jobs)
    (still,), (video,) = of(server, "text_to_image"), of(server, "image_to_video")
    body = still.body
    assert body["model"] == "gen4_image" and body["ratio"] == "720:1280" and body["seed"] == 7
    assert [r["tag"] for r in body["referenceImages"]] == ["char_bo", "ann", "char_bo_2"]
    import io

    from PIL import Image

    colours = [Image.open(io.BytesIO(decoded(r["uri"]))).convert("RGB").getpixel((5, 5))
               for r in body["referenceImages"]]
    assert [max(range(3), key=lambda i: c[i]) for c in colours] == [2, 0, 2]  # BO (speaks), ANN, BO's second
    assert body["promptText"] == ("@char_bo is BO (front view); @ann is ANN (front view); @char_bo_2 is BO "
                                  "(three-quarter view). " + request.prompt)
    assert video.body == {"model": "gen4.5", "promptImage": f"{server.base}/files/{still.id}.png",
                          "promptText": request.motion_prompt, "ratio": "720:1280", "duration": 5, "seed": 7}
    for job in (still, video):
        assert job.headers["Authorization"] == f"Bearer {proto.KEY}"
        assert job.headers["X-Runway-Version"] == "2024-11-06"
    (row,) = jobs.journal.of(request.shot_id)
    assert (row.state, row.job_id, row.images, row.billed_s) == ("done", f"{still.id}~{row.client_key}", 3, 5.0)
    assert proto.references(server, video) == 3 and server.created() == [video]
    assert (tmp_path / "out.mp4").exists()


def test_tags_follow_runways_rule_and_stay_unique():
    made = tags(["bo", "ann", "bo", "li-wei", "小明", "7up", "a-very-long-character-name", "ann"])
    assert made == ["char_bo", "ann", "char_bo_2", "li_wei", "char5", "char_7up", "a_very_long_char", "ann_2"]
    assert all(TAG.match(t) for t in made) and len(set(made)) == len(made)


def test_image_mode_sends_the_keyframe_as_a_data_uri_to_image_to_video(server, tmp_path):
    key = tmp_path / "key.png"
    key.write_bytes(png_bytes(90, 160, (10, 200, 10)))
    b = make(server, model="gen4_turbo", mode="image", aspect_ratio="1:1")
    request = shot(9.0, keyframe=key)
    jobs = shot_jobs(tmp_path, request)
    b.generate(request, tmp_path / "out.mp4", jobs)
    (job,) = server.created()
    image = job.body.pop("promptImage")
    assert decoded(image)[:2] == b"\xff\xd8"  # a JPEG
    assert job.body == {"model": "gen4_turbo", "promptText": request.motion_prompt, "ratio": "960:960",
                        "duration": 10, "seed": 7}
    assert of(server, "text_to_image") == []


def test_text_mode_and_a_reference_shot_without_references_go_to_text_to_video(server, tmp_path):
    b = make(server, mode="text", durations=[3, 4, 6], aspect_ratio="16:9")
    request = shot(figures=two_people(tmp_path))
    b.generate(request, tmp_path / "a.mp4", shot_jobs(tmp_path / "a", request))
    make(server).generate(shot(6.0), tmp_path / "b.mp4", shot_jobs(tmp_path / "b", request))
    first, second = of(server, "text_to_video")
    assert first.body == {"model": "gen4.5", "promptText": request.prompt, "ratio": "1280:720", "duration": 4,
                          "seed": 7}  # 3.2 s asks for the next offered length; text mode sends no references
    assert (second.body["ratio"], second.body["duration"]) == ("720:1280", 10)
    assert of(server, "text_to_image") == []


@pytest.mark.parametrize("bad,match", [({"model": "gen3a_turbo"}, "not one this backend speaks"),
                                       ({"mode": "text", "model": "gen4_turbo"}, "only from an image"),
                                       ({"mode": "text", "aspect_ratio": "1:1"}, "not offered by text_to_video"),
                                       ({"durations": [12]}, r"durations \[12.0\] are not offered"),
                                       ({"model": "gen4_turbo", "durations": [6]}, "not offered by gen4_turbo"),
                                       ({"aspect_ratio": "2:1"}, "aspect_ratio '2:1' is not offered"),
                                       ({"max_references": 4}, "over the provider's 3"),
                                       ({"resolution": "1080p"}, "Runway takes none"),
                                       ({"audio": True}, "makes no sound")])
def test_options_outside_the_api_are_refused_at_the_edge(bad, match):
    from pydantic import ValidationError

    from stages.backends.runway import RunwayOptions

    with pytest.raises(ValidationError, match=match):
        RunwayOptions(**bad)


@pytest.mark.parametrize("code,error", [("SAFETY.INPUT.TEXT", RejectedError), ("SAFETY.OUTPUT.VIDEO", RejectedError),
                                        ("INPUT_PREPROCESSING.SAFETY.TEXT", RejectedError),
                                        ("INPUT_PREPROCESSING.INTERNAL", PermanentError),
                                        ("ASSET.INVALID", PermanentError), ("INTERNAL.BAD_OUTPUT.CODE01", TransientError),
                                        ("INTERNAL", TransientError), (None, TransientError)])
def test_failure_codes_map_to_what_a_flow_does(code, error):
    assert type(failure(code, "failed")) is error


def test_the_polling_states_and_a_wrong_key(server, tmp_path, monkeypatch):
    server.steps = 3
    b = make(server, mode="text")
    job_id = b.submit(shot(), "df-x")
    looks = [b.poll(job_id) for _ in range(3)]
    assert [(p.state, p.detail, p.progress) for p in looks[:2]] == [("queued", "throttled", None), ("running", "", 0.5)]
    assert looks[2].state == "done" and looks[2].result == f"{server.base}/files/{job_id}.mp4"
    monkeypatch.setenv(proto.KEY_ENV, "key_wrong")
    with pytest.raises(PermanentError, match="401.*Invalid API key"):
        make(server).generate(shot(), tmp_path / "out.mp4", shot_jobs(tmp_path, shot()))
    assert len(server.created()) == 1


# --- two paid steps, each made once per intent ---------------------------------------------------

def test_a_lost_video_answer_is_unknown_and_the_new_job_reuses_the_still(server, tmp_path):
    request = shot(figures=two_people(tmp_path))
    server.faults.submit = [None, "500-after"]  # the still is answered; the video is made, its answer lost
    jobs, b = shot_jobs(tmp_path, request), make(server)
    for _ in range(2):  # the render, then `rerun --failed`: never re-sent
        with pytest.raises(UnknownJob, match=r"--new-job` \(the still is reused\)"):
            b.generate(request, tmp_path / "out.mp4", jobs)
    assert (sent(server, "text_to_image"), sent(server, "image_to_video")) == (1, 1)
    jobs.journal.abandon(request.shot_id, "checked the dashboard")
    b.generate(request, tmp_path / "out.mp4", jobs)
    assert (sent(server, "text_to_image"), len(of(server, "image_to_video"))) == (1, 2)  # no second still
    assert [(j.state, j.why) for j in jobs.journal.of(request.shot_id)] == [("abandoned", "first"),
                                                                           ("done", "new-job")]


def test_a_crash_while_the_still_is_made_resumes_it(server, tmp_path):
    request = shot(figures=two_people(tmp_path))
    server.outcomes = ["hold"]
    jobs = shot_jobs(tmp_path, request)
    with pytest.raises(TransientError, match="still"):
        make(server, timeout_s=0.2).generate(request, tmp_path / "out.mp4", jobs)
    (row,) = jobs.journal.of(request.shot_id)
    assert row.state == "submitted" and of(server, "image_to_video") == []
    server.release.set()
    make(server).generate(request, tmp_path / "out.mp4", jobs)  # a new process: resumes the recorded job
    assert (sent(server, "text_to_image"), sent(server, "image_to_video")) == (1, 1)
    assert [j.state for j in jobs.journal.of(request.shot_id)] == ["done"]


def test_a_crash_as_the_video_request_goes_out_is_surfaced_and_never_pays_a_second_still(server, tmp_path, monkeypatch):
    from stages.backends.runway import RunwayBackend

    request = shot(figures=two_people(tmp_path))
    jobs, b = shot_jobs(tmp_path, request), make(server)
    real = RunwayBackend.create

    def crash(self, endpoint, body, doing):
        if endpoint == "image_to_video":
            raise KeyboardInterrupt  # the process dies while the request is out
        return real(self, endpoint, body, doing)

    monkeypatch.setattr(RunwayBackend, "create", crash)
    with pytest.raises(KeyboardInterrupt):
        b.generate(request, tmp_path / "out.mp4", jobs)
    monkeypatch.setattr(RunwayBackend, "create", real)
    with pytest.raises(UnknownJob, match="the render stopped while the request was out"):
        make(server).generate(request, tmp_path / "out.mp4", jobs)  # it may have gone out: not sent again
    assert sent(server, "image_to_video") == 0
    jobs.journal.abandon(request.shot_id, "checked the dashboard: no video")
    make(server).generate(request, tmp_path / "out.mp4", jobs)
    assert (sent(server, "text_to_image"), sent(server, "image_to_video")) == (1, 1)


def test_a_lost_still_answer_is_unknown_until_the_user_pays_again(server, tmp_path):
    request = shot(figures=two_people(tmp_path))
    server.faults.submit = ["drop-after"]
    jobs, b = shot_jobs(tmp_path, request), make(server)
    for _ in range(2):
        with pytest.raises(UnknownJob, match="the still may have been made"):
            b.generate(request, tmp_path / "out.mp4", jobs)
    assert sent(server, "text_to_image") == 1 and of(server, "image_to_video") == []
    jobs.journal.abandon(request.shot_id, "checked the dashboard")
    b.generate(request, tmp_path / "out.mp4", jobs)  # the user chose: a new still, then the video
    assert (sent(server, "text_to_image"), sent(server, "image_to_video")) == (2, 1)


def test_a_failed_video_is_re_created_from_the_same_still(server, tmp_path):
    request = shot(figures=two_people(tmp_path))
    server.outcomes = ["ok", "fail-infra", "ok"]  # the still, the first video, its re-creation
    jobs = shot_jobs(tmp_path, request, recreate=1)
    make(server).generate(request, tmp_path / "out.mp4", jobs)
    assert (sent(server, "text_to_image"), sent(server, "image_to_video")) == (1, 2)
    assert [(j.state, j.why) for j in jobs.journal.of(request.shot_id)] == [("failed", "first"), ("done", "recreate")]


def test_a_refused_still_makes_no_video_and_a_deleted_still_is_made_again(server, tmp_path):
    request = shot(figures=two_people(tmp_path))
    server.outcomes = ["refuse"]
    with pytest.raises(RejectedError, match="SAFETY.INPUT.TEXT"):
        make(server).generate(request, tmp_path / "a.mp4", shot_jobs(tmp_path / "a", request))
    assert of(server, "image_to_video") == []
    make(server).generate(request, tmp_path / "b.mp4", shot_jobs(tmp_path / "b", request))  # its own ledger
    of(server, "text_to_image")[-1].cancelled = True  # deleted at Runway: 404 from now on
    again = ShotJobs(Journal(Ledger(tmp_path / "b" / "ledger.sqlite")), request.shot_id, "k", since=time.time() + 1)
    make(server).generate(request, tmp_path / "b.mp4", again)
    assert sent(server, "text_to_image") == 3 and sent(server, "image_to_video") == 2


def test_cancel_stops_the_still_or_the_video(server, tmp_path):
    request = shot(figures=two_people(tmp_path))
    server.outcomes = ["hold"]
    b = make(server, timeout_s=0.2)
    jobs = shot_jobs(tmp_path, request)
    with pytest.raises(TransientError):
        b.generate(request, tmp_path / "out.mp4", jobs)
    (still,) = of(server, "text_to_image")
    assert server.created() == []  # no video yet
    b.cancel(jobs.journal.of(request.shot_id)[0].job_id)
    assert still.cancelled and ("cancel", still.id) in server.calls
