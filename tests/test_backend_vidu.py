"""Vidu's enterprise API against a local server that speaks it (`fakes/vidu.py`): the Token header,
each endpoint's body as the docs give it, reference2video's subjects (one per character with that
character's images, the speaker first, named `@1`, `@2` in the prompt; at most 3 images a subject and
7 in all), the start frame, the audio flag, limits checked at the edge, and Vidu's error reasons.
Faults and money rules: the shared tests in test_hosted_video."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import fakes
import pytest
from fake_hosted import FakeHosted
from fake_openai import png_bytes, provider_mp4  # noqa: F401 (a fixture)
from fakes import vidu as proto

from stages.backends._jobs import ShotJobs
from stages.backends.base import Figure, PermanentError, RejectedError, ShotRequest, TransientError
from stages.backends.vidu import failure
from stages.core.jobs import Journal
from stages.core.ledger import Ledger


@pytest.fixture
def server(provider_mp4, monkeypatch):  # noqa: F811
    for env, value in proto.ENV.items():
        monkeypatch.setenv(env, value)
    s = FakeHosted(provider_mp4, hang_s=0.5)
    yield s
    s.close()
    proto.REFUSALS.clear()


def make(server, **kw):
    return fakes.backend(server, "vidu", **{"poll_s": 0.005, "request_timeout_s": 0.5, **kw})


def sheet(tmp_path: Path, name: str, colour, size=(128, 192)) -> Path:
    p = tmp_path / f"{name}-{'0' * 20}.png"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(png_bytes(*size, colour))
    return p


def person(tmp_path: Path, fid: str, views: int, *, speaking: bool = False) -> Figure:
    refs = tuple(sheet(tmp_path, f"{fid}/view{i}", (40 * i, 10, 10)) for i in range(views))
    return Figure(fid, fid.upper(), "", speaking=speaking, references=refs)


def shot(duration_s: float = 3.2, **kw) -> ShotRequest:
    args = {"shot_id": "ep01-sc01-sh002", "prompt": "Medium shot: ANN hands BO a letter in a rainy bus shelter.",
            "size": "medium", "camera": "static", "location": "BUS SHELTER", "time": "NIGHT", "action": "",
            "caption": "", "figures": (), "duration_s": duration_s, "width": 90, "height": 160, "fps": 24,
            "seed": 7, "motion_prompt": "ANN holds out the letter."}
    return ShotRequest(**{**args, **kw})


def run(server, b, request, tmp_path):
    jobs = ShotJobs(Journal(Ledger(tmp_path / "ledger.sqlite")), request.shot_id, "k", since=time.time())
    b.generate(request, tmp_path / "out.mp4", jobs)
    (job,) = server.created()
    return job, jobs


def raw(uri: str) -> bytes:
    assert uri.startswith("data:image/jpeg;base64,")
    return base64.b64decode(uri.split(",", 1)[1])


def test_a_two_character_shot_sends_one_subject_each_the_speaker_first(server, tmp_path):
    ann, bo = person(tmp_path, "ann", 2), person(tmp_path, "bo", 2, speaking=True)
    request = shot(figures=(ann, bo))
    job, jobs = run(server, make(server), request, tmp_path)
    body = dict(job.body)
    subjects = body.pop("subjects")
    assert [(s["id"], len(s["images"])) for s in subjects] == [("1", 2), ("2", 2)]
    assert all(set(s) == {"id", "images"} for s in subjects)
    assert all(raw(i)[:2] == b"\xff\xd8" for s in subjects for i in s["images"])
    (row,) = jobs.journal.of(request.shot_id)
    assert body == {"model": "viduq2", "prompt": "@1 is BO; @2 is ANN. " + request.prompt, "duration": 4,
                    "seed": 7, "resolution": "720p", "aspect_ratio": "9:16", "audio": False,
                    "payload": row.client_key}  # 3.2 s asks for 4; sound said off
    assert job.model == "reference2video:viduq2" and job.headers["Authorization"] == f"Token {proto.KEY}"
    assert (row.state, row.job_id, row.images) == ("done", job.id, 4)
    assert (tmp_path / "out.mp4").exists()


def test_at_most_three_images_a_subject_and_seven_in_all_the_rest_named(server, tmp_path):
    a, b_, c = person(tmp_path, "ann", 4, speaking=True), person(tmp_path, "bo", 3), person(tmp_path, "cy", 3)
    b = make(server)
    fitted = b.fitted(shot(figures=(a, b_, c)))
    assert [r.label() for r in fitted.dropped] == ["BO (view2)", "CY (view2)", "ANN (view3)"]
    assert len(fitted.sent) == 7 and b.images_sent(shot(figures=(a, b_, c))) == 7
    job, _ = run(server, b, shot(figures=(a, b_, c)), tmp_path)
    assert [len(s["images"]) for s in job.body["subjects"]] == [3, 2, 2]
    assert job.body["prompt"].startswith("@1 is ANN; @2 is BO; @3 is CY. ")


def test_image_mode_sends_one_start_frame_with_sound_and_no_ratio(server, tmp_path):
    key = sheet(tmp_path, "key", (10, 200, 10), (180, 320))
    b = make(server, model="viduq2-pro", mode="image", resolution="1080p", audio=True)
    assert b.capabilities.uses == {"keyframe"} and b.capabilities.native_audio
    job, _ = run(server, b, shot(9.2, keyframe=key), tmp_path)
    body = job.body
    assert job.model == "img2video:viduq2-pro" and len(body["images"]) == 1 and raw(body["images"][0])
    assert (body["prompt"], body["duration"], body["resolution"], body["audio"]) == \
        ("ANN holds out the letter.", 10, "1080p", True)
    assert "aspect_ratio" not in body and "subjects" not in body


def test_text_mode_and_a_reference_shot_without_references_go_to_text2video(server, tmp_path):
    make(server, mode="text", aspect_ratio="4:3", durations=[2, 5]).generate(
        shot(figures=(person(tmp_path, "ann", 1),)), tmp_path / "a.mp4",
        ShotJobs(Journal(Ledger(tmp_path / "a.sqlite")), "s", "k", since=time.time()))
    make(server).generate(shot(0.9), tmp_path / "b.mp4",
                          ShotJobs(Journal(Ledger(tmp_path / "b.sqlite")), "s", "k", since=time.time()))
    first, second = server.created()
    assert first.model == second.model == "text2video:viduq2"
    assert {k: first.body[k] for k in ("prompt", "duration", "aspect_ratio")} == \
        {"prompt": shot().prompt, "duration": 5, "aspect_ratio": "4:3"}
    assert "audio" not in first.body and "subjects" not in first.body and second.body["duration"] == 1


@pytest.mark.parametrize("bad,match", [({"model": "viduq2-pro"}, "does not take mode 'reference'"),
                                       ({"mode": "image"}, "does not take mode 'image'"),
                                       ({"durations": [12]}, r"durations \[12.0\] are not offered"),
                                       ({"model": "viduq1", "resolution": "1080p", "durations": [4]},
                                        r"not offered by viduq1"),
                                       ({"model": "viduq1"}, "resolution '720p' is not offered by viduq1"),
                                       ({"model": "vidu2.0", "resolution": "720p", "aspect_ratio": "4:3"},
                                        "viduq2 models only"),
                                       ({"mode": "text", "audio": True}, "text2video takes no audio"),
                                       ({"max_references": 8}, "over the provider's 7")])
def test_options_outside_the_api_are_refused_at_the_edge(bad, match):
    from pydantic import ValidationError

    from stages.backends.vidu import ViduOptions

    with pytest.raises(ValidationError, match=match):
        ViduOptions(**bad)


@pytest.mark.parametrize("status,reason,error", [(400, "TaskPromptPolicyViolation", RejectedError),
                                                 (400, "AuditSubmitIllegal", RejectedError),
                                                 (400, "CreditInsufficient", PermanentError),
                                                 (429, "TooManyRequests", TransientError),
                                                 (429, "QuotaExceeded", TransientError)])
def test_an_error_reason_on_create_is_its_class_and_made_no_task(server, tmp_path, status, reason, error):
    proto.REFUSALS.append((status, reason, "refused by the test"))
    jobs = ShotJobs(Journal(Ledger(tmp_path / "l.sqlite")), "s", "k", since=time.time())
    with pytest.raises(error, match=reason):
        make(server).generate(shot(figures=(person(tmp_path, "ann", 1),)), tmp_path / "o.mp4", jobs)
    assert server.created() == [] and [j.state for j in jobs.journal.of("s")] == ["refused"]


@pytest.mark.parametrize("reason,error", [("CreationPolicyViolation", RejectedError),
                                          ("AuditSubmitIllegal", RejectedError),
                                          ("CreditInsufficient", PermanentError), ("ImageDownloadFailure", PermanentError),
                                          ("InternalServiceFailure", TransientError), ("", TransientError)])
def test_a_failed_tasks_err_code_maps_to_what_a_flow_does(reason, error):
    assert type(failure(reason, "failed")) is error


def test_the_polling_states_a_small_image_and_a_wrong_key(server, tmp_path, monkeypatch):
    server.steps = 4
    b = make(server, mode="text")
    job_id = b.submit(shot(), "df-x")
    looks = [b.poll(job_id) for _ in range(4)]
    assert [(p.state, p.detail) for p in looks] == [("queued", "created"), ("running", ""), ("running", ""),
                                                    ("done", "")]
    assert looks[-1].result == f"{server.base}/files/{job_id}.mp4"
    tiny = Figure("ann", "ANN", "", references=(sheet(tmp_path, "tiny", (1, 2, 3), (64, 96)),))
    with pytest.raises(PermanentError, match="at least 128 px"):
        make(server).submit(shot(figures=(tiny,)), "df-y")
    monkeypatch.setenv(proto.KEY_ENV, "wrong")
    with pytest.raises(PermanentError, match="401.*Unauthorized"):
        make(server).submit(shot(), "df-z")
    assert len(server.created()) == 1


def test_native_dialogue_gives_the_speaking_subject_its_vidu_voice(server, tmp_path):
    """dialogue: native: the subject the model speaks for carries `voice_id` from the cast
    (`voice.ids.vidu`); the listener and other providers' ids are not sent."""
    from dataclasses import replace

    ann = replace(person(tmp_path, "ann", 1, speaking=True), voices=(("kling", "k-1"), ("vidu", "v-ann")))
    bo = replace(person(tmp_path, "bo", 1), voices=())
    request = shot(figures=(ann, bo), extra={"dialogue": [{"speaker": "ANN", "text": "Take it."}]})
    job, _ = run(server, make(server, audio=True), request, tmp_path)
    assert [{k: v for k, v in s.items() if k != "images"} for s in job.body["subjects"]] == \
        [{"id": "1", "voice_id": "v-ann"}, {"id": "2"}]
    assert job.body["audio"] is True


def test_a_voice_id_keys_only_the_shots_where_the_model_speaks():
    """The cast's voice ids reach a shot's figures (and its key) only where its lines are native."""
    from pathlib import Path as P

    from stages.backends.registry import make_video_backend
    from stages.generate_shot import shot_request
    from stages.plan_work import shot_key
    from stages.schema import Project, Shot, ShotLine

    cast = [{"id": "ann", "name": "ANN", "description": "a woman", "voice": {"ids": {"vidu": "v-ann"}}}]
    s = Shot(id="ep01-sc01-sh001", episode=1, scene=1, size="close-up", location="ROOM", characters=["ann"],
             lines=[ShotLine(character="ann", text="Hi.", file="s", line=2, speech_s=1.0)], duration_s=2.0,
             file="s", line=1)
    vidu = make_video_backend(Project.model_validate({"title": "t", "backends": {"video": "vidu"}}).backends)
    keys = {}
    for mode in ("tts", "native"):
        for voiced in (True, False):
            people = cast if voiced else [{**cast[0], "voice": {}}]
            p = Project.model_validate({"title": "t", "cast": people, "dialogue": mode})
            request = shot_request(s, p, P("."), {"ann": "ANN"})
            assert request.figures[0].voices == ((("vidu", "v-ann"),) if mode == "native" and voiced else ())
            keys[mode, voiced] = shot_key(request, vidu)
    assert keys["tts", True] == keys["tts", False]  # a tts shot's clip does not depend on a provider voice
    assert keys["native", True] != keys["native", False]
