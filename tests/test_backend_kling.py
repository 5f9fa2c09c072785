"""Kling's own API against a local server that speaks it (`fakes/kling.py`): the token, each family's
body as its docs give it, both characters' references with the speaker first and the omni prompt's
`<<<image_N>>>`/`<<<element_N>>>` names, the start frame, limits checked at the edge, and the lookup of
a lost create by its `external_task_id`. Faults and money rules: the shared tests in test_hosted_video."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

import fakes
from fake_hosted import FakeHosted
from fake_openai import png_bytes, provider_mp4  # noqa: F401 (a fixture)
from fakes import kling as proto
from stages.backends._jobs import ShotJobs
from stages.backends.base import Figure, PermanentError, ShotRequest
from stages.core.jobs import Journal
from stages.core.ledger import Ledger


@pytest.fixture
def server(provider_mp4, monkeypatch):
    for env, value in proto.ENV.items():
        monkeypatch.setenv(env, value)
    s = FakeHosted(provider_mp4, hang_s=0.5)
    yield s
    s.close()


def make(server, **kw):
    return fakes.backend(server, "kling", **{"poll_s": 0.005, "request_timeout_s": 0.5, **kw})


def sheet(tmp_path: Path, name: str, colour) -> Path:
    p = tmp_path / f"{name}-{'0' * 20}.png"
    p.write_bytes(png_bytes(64, 96, colour))
    return p


def two_people(tmp_path: Path, *, speaker: str = "bo") -> tuple[Figure, ...]:
    ann = Figure("ann", "ANN", "red coat", speaking=speaker == "ann",
                 references=(sheet(tmp_path, "ann/front", (200, 0, 0)), sheet(tmp_path, "ann/three-quarter", (150, 0, 0))))
    bo = Figure("bo", "BO", "blue scarf", speaking=speaker == "bo",
                references=(sheet(tmp_path, "bo/front", (0, 0, 200)), sheet(tmp_path, "bo/three-quarter", (0, 0, 150))))
    return ann, bo


def shot(duration_s: float = 3.2, **kw) -> ShotRequest:
    args = dict(shot_id="ep01-sc01-sh002", prompt="Medium shot: ANN hands BO a letter in a rainy bus shelter.",
                size="medium", camera="static", location="BUS SHELTER", time="NIGHT", action="", caption="",
                figures=(), duration_s=duration_s, width=90, height=160, fps=24, seed=7)
    return ShotRequest(**{**args, **kw})


def run(server, b, request, tmp_path) -> tuple[dict, ShotJobs]:
    jobs = ShotJobs(Journal(Ledger(tmp_path / "ledger.sqlite")), request.shot_id, "k", since=time.time())
    b.generate(request, tmp_path / "out.mp4", jobs)
    (job,) = server.created()
    return job, jobs


def test_a_two_character_omni_shot_sends_both_with_the_speaker_first_named_in_the_prompt(server, tmp_path):
    (tmp_path / "ann").mkdir()
    (tmp_path / "bo").mkdir()
    ann, bo = two_people(tmp_path, speaker="bo")
    request = shot(figures=(ann, bo), negative_prompt="blurry")
    job, jobs = run(server, make(server), request, tmp_path)
    body = job.body
    assert job.model == "omni-video:kling-v3-omni"
    sent = [base64.b64decode(i["image_url"]) for i in body["image_list"]]
    assert sent == [p.read_bytes() for p in (bo.references[0], ann.references[0], bo.references[1],
                                            ann.references[1])]  # the speaker's front, then ANN's; then the 3/4s
    assert body["prompt"] == ("<<<image_1>>> is BO (front view); <<<image_2>>> is ANN (front view); "
                              "<<<image_3>>> is BO (three-quarter view); <<<image_4>>> is ANN (three-quarter view). "
                              + request.prompt)
    (row,) = jobs.journal.of(request.shot_id)
    assert body["external_task_id"] == row.client_key and row.images == 4
    assert {k: body[k] for k in ("duration", "aspect_ratio", "mode", "negative_prompt")} == \
        {"duration": "5", "aspect_ratio": "9:16", "mode": "std", "negative_prompt": "blurry"}
    assert "sound" not in body and "element_list" not in body and "seed" not in body  # Kling has no seed field
    assert (tmp_path / "out.mp4").exists()


def test_the_token_is_a_real_hs256_jwt_from_the_access_and_secret_keys(server, tmp_path):
    import jwt

    run(server, make(server), shot(), tmp_path)
    (job,) = server.created()
    token = job.headers["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(token, proto.SECRET, algorithms=["HS256"])
    assert claims["iss"] == proto.KEY and claims["nbf"] <= time.time() < claims["exp"] <= time.time() + 1801
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}


def test_a_wrong_secret_is_refused_by_the_server_and_named(server, tmp_path, monkeypatch):
    monkeypatch.setenv(proto.SECRET_ENV, "not-the-secret-but-thirty-two-bytes-long")
    with pytest.raises(PermanentError, match="401.*invalid"):
        run(server, make(server), shot(), tmp_path)
    assert server.created() == []


def test_saved_elements_share_the_slots_and_are_named_apart(server, tmp_path):
    (tmp_path / "ann").mkdir()
    (tmp_path / "bo").mkdir()
    ann, bo = two_people(tmp_path, speaker="ann")
    bo = Figure(bo.id, bo.name, bo.description, references=bo.references,
                assets=(("kling", "829836802793406551"), ("seedance", "asset://not-for-kling")))
    b = make(server, max_references=3)
    fitted = b.fitted(shot(figures=(ann, bo)))
    assert [r.label() for r in fitted.sent] == ["ANN (front)", "BO (saved)", "ANN (three-quarter)"]
    assert [r.label() for r in fitted.dropped] == ["BO (front)", "BO (three-quarter)"]
    job, _ = run(server, b, shot(figures=(ann, bo)), tmp_path)
    assert job.body["element_list"] == [{"element_id": 829836802793406551}]
    assert len(job.body["image_list"]) == 2
    assert job.body["prompt"].startswith("<<<image_1>>> is ANN (front view); <<<element_1>>> is BO; "
                                         "<<<image_2>>> is ANN (three-quarter view). ")


def test_image_mode_on_a_classic_model_sends_the_start_frame_without_a_ratio(server, tmp_path):
    key = tmp_path / "key.png"
    key.write_bytes(png_bytes(90, 160, (10, 200, 10)))
    b = make(server, model="kling-v2-6", mode="image", resolution="1080p", audio=True)
    assert b.capabilities.uses == {"keyframe"} and b.capabilities.native_audio
    job, _ = run(server, b, shot(9.0, keyframe=key, motion_prompt="Slow push-in."), tmp_path)
    body = job.body
    assert job.model == "image2video:kling-v2-6"
    assert base64.b64decode(body["image"]) == key.read_bytes() and "aspect_ratio" not in body
    assert (body["prompt"], body["duration"], body["mode"], body["sound"]) == ("Slow push-in.", "10", "pro", "on")


def test_multi_image_takes_four_unnamed_and_the_rest_is_named_as_dropped(server, tmp_path):
    (tmp_path / "ann").mkdir()
    (tmp_path / "bo").mkdir()
    ann, bo = two_people(tmp_path)
    third = Figure("cy", "CY", "", references=(sheet(tmp_path, "cy-front", (0, 200, 0)),))
    b = make(server, model="kling-v1-6")
    assert b.capabilities.max_references == 4
    request = shot(figures=(ann, bo, third))
    assert [r.label() for r in b.fitted(request).dropped] == ["ANN (three-quarter)"]  # BO speaks: theirs first
    job, _ = run(server, b, request, tmp_path)
    assert job.model == "multi-image2video:kling-v1-6"
    assert [set(i) for i in job.body["image_list"]] == [{"image"}] * 4
    assert job.body["prompt"] == request.prompt  # multi-image2video names no images in the prompt


@pytest.mark.parametrize("bad,match", [({"aspect_ratio": "4:3"}, "aspect_ratio '4:3' is not offered"),
                                       ({"durations": [7.5]}, r"durations \[7.5\] are not offered"),
                                       ({"max_references": 9}, "over the provider's 7"),
                                       ({"resolution": "4k"}, "resolution '4k' is not offered")])
def test_options_outside_the_api_are_refused_at_the_edge(bad, match):
    from pydantic import ValidationError

    from stages.backends.kling import KlingOptions

    with pytest.raises(ValidationError, match=match):
        KlingOptions(**bad)


def test_durations_round_up_to_an_offered_length(server, tmp_path):
    b = make(server, durations=[3, 5, 8])
    assert [b.seconds(shot(d)) for d in (1.0, 3.02, 3.2, 7.9, 12.0)] == [3, 3, 5, 8, 8]
