"""MiniMax Hailuo against its local server (tests/fakes/minimax.py): the exact create body per mode
(S2V-01's one subject, the first frame, text), duration and resolution rules, errors as HTTP 200 with
base_resp codes, the three steps (create, query, file retrieve -> download_url), and one paid job per
shot with no lookup and no cancel."""

from __future__ import annotations

import pytest
import test_backend_seedance as shared
from fake_openai import png_bytes
from fakes import minimax as proto
from test_backend_seedance import HEX
from test_hosted_video import make, shot, shot_jobs

from stages.backends._http import AnswerLost
from stages.backends._jobs import HostedVideoBackend, UnknownJob
from stages.backends.base import Figure, PermanentError, RejectedError, TransientError
from stages.backends.minimax import MinimaxOptions

provider_mp4, server = shared.provider_mp4, shared.server  # fixtures
REF = {"mode": "reference", "aspect_ratio": "16:9"}


@pytest.fixture
def cast(tmp_path):
    paths = {}
    for who, colour in (("ann", (200, 0, 0)), ("bo", (0, 0, 200))):
        for view in ("front", "three-quarter"):
            p = tmp_path / who / f"{view}-{HEX}.png"
            p.parent.mkdir(exist_ok=True)
            p.write_bytes(png_bytes(64, 96, colour))
            paths[who, view] = p
    bo = Figure("bo", "BO", "bald", references=(paths["bo", "front"],))  # framed first
    ann = Figure("ann", "ANN", "red hair", speaking=True, references=(paths["ann", "front"], paths["ann", "three-quarter"]))
    return bo, ann


def test_a_two_character_shot_sends_the_speaker_as_the_one_subject_and_names_the_dropped(server, tmp_path, cast):
    b = make(server, "minimax", **REF)
    assert (b.options.model, b.options.resolution, b.capabilities.max_references) == ("S2V-01", None, 1)
    request = shot(3.2, figures=cast)
    fitted = b.fitted(request)
    assert [r.label() for r in fitted.sent] == ["ANN (front)"]
    assert [r.label() for r in fitted.dropped] == ["BO (front)", "ANN (three-quarter)"]
    assert [f.name for f in fitted.unseen()] == ["BO"]  # the second character is dropped, and named
    b.generate(request, tmp_path / "shot.mp4", shot_jobs(tmp_path))
    (job,) = server.created()
    assert job.headers["Authorization"] == f"Bearer {proto.KEY}"
    body = dict(job.body)
    (subject,) = body.pop("subject_reference")
    assert body == {"model": "S2V-01", "prompt": request.prompt, "prompt_optimizer": False}  # 6 s, its one size
    assert subject["type"] == "character" and len(subject["image"]) == 1
    assert subject["image"][0].startswith("data:image/jpeg;base64,")
    assert b.billed_seconds(request) == 6
    assert [c for c, _ in server.calls if c != "http"] == ["submit", "status", "status", "retrieve", "download"]


def test_a_reference_shot_with_no_character_goes_to_the_text_model_or_fails_clearly(server, tmp_path):
    make(server, "minimax", **REF).generate(shot(), tmp_path / "a.mp4", shot_jobs(tmp_path / "a"))
    assert server.created()[0].body == {"model": "MiniMax-Hailuo-2.3", "prompt": shot().prompt,
                                        "prompt_optimizer": False, "duration": 6}
    jobs = shot_jobs(tmp_path / "b")
    with pytest.raises(PermanentError, match="S2V-01 needs one"):
        make(server, "minimax", text_model=None, **REF).generate(shot(), tmp_path / "b.mp4", jobs)
    assert server.count("submit") == 1 and [str(j.state) for j in jobs.journal.of("e1s1")] == ["refused"]


def test_image_mode_sends_the_first_frame_duration_and_resolution(server, tmp_path, cast):
    key = tmp_path / "key.png"
    key.write_bytes(png_bytes(90, 160))
    b = make(server, "minimax", mode="image", aspect_ratio="9:16", prompt_optimizer=True)
    assert (MinimaxOptions().mode, MinimaxOptions().aspect_ratio) == ("image", "9:16")  # follows the keyframe
    request = shot(7.0, keyframe=key, motion_prompt="She turns [Push in]", figures=cast)
    b.generate(request, tmp_path / "shot.mp4", shot_jobs(tmp_path))
    body = dict(server.created()[0].body)
    assert body.pop("first_frame_image").startswith("data:image/jpeg;base64,")
    assert body == {"model": "MiniMax-Hailuo-2.3", "prompt": "She turns [Push in]", "prompt_optimizer": True,
                    "duration": 10, "resolution": "768P"}  # 7 s: the 10 s clip


@pytest.mark.parametrize("options,seconds,asked", [({}, 3.2, 6), ({"resolution": "1080P"}, 7.0, 6),
                                                    ({"durations": [10]}, 3.2, 10)])
def test_durations_round_up_to_what_the_resolution_allows(server, tmp_path, options, seconds, asked):
    b = make(server, "minimax", mode="text", aspect_ratio="16:9", **options)
    b.generate(shot(seconds), tmp_path / "shot.mp4", shot_jobs(tmp_path))
    body = server.created()[0].body
    assert (body["duration"], body["resolution"]) == (asked, options.get("resolution", "768P"))


@pytest.mark.parametrize("bad,message", [
    ({"resolution": "1080P", "durations": [6, 10]}, "1080P makes only 6 s"),
    ({"resolution": "720p"}, "resolution '720p' is not offered"), ({"durations": [5]}, "not offered"),
    ({"model": "S2V-01", "mode": "reference", "aspect_ratio": "16:9", "durations": [10]}, "makes only 6 s"),
    ({"mode": "reference", "aspect_ratio": "16:9", "resolution": "768P"}, "takes no resolution"),
    ({"model": "S2V-01", "mode": "image"}, "mode image: S2V-01 takes reference"),
    ({"model": "MiniMax-Hailuo-2.3-Fast", "mode": "text", "aspect_ratio": "16:9"}, "takes image"),
    ({"mode": "reference"}, "aspect_ratio 9:16: MiniMax takes no ratio"),
    ({"mode": "text"}, "comes out 16:9"), ({"max_references": 2}, "over the provider's 1"),
    ({"audio": True}, "makes no sound"), ({"text_model": "I2V-01"}, "makes no text-to-video")])
def test_options_outside_the_documented_constraints_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        MinimaxOptions(**bad)


def test_base_resp_codes_map_to_the_error_classes(server):
    b = make(server, "minimax")
    for code, cls in {1002: TransientError, 1004: PermanentError, 1008: PermanentError, 1026: RejectedError,
                      1027: RejectedError, 1000: AnswerLost, 1024: AnswerLost, 2013: PermanentError}.items():
        err = b.error({"base_resp": {"status_code": code, "status_msg": "x"}}, "creating a task")
        assert type(err) is cls and str(code) in str(err), code
    assert proto.KEY_ENV in str(b.error({"base_resp": {"status_code": 1004, "status_msg": "x"}}, "x"))
    assert b.error({"task_id": "1", "base_resp": {"status_code": 0, "status_msg": "success"}}, "x") is None


def test_a_wrong_key_answers_200_with_1004_and_makes_no_job(server, tmp_path, monkeypatch):
    monkeypatch.setenv(proto.KEY_ENV, "wrong")
    jobs = shot_jobs(tmp_path)
    with pytest.raises(PermanentError, match=f"1004 login fail.*{proto.KEY_ENV}"):
        make(server, "minimax").generate(shot(), tmp_path / "shot.mp4", jobs)
    assert server.created() == [] and [str(j.state) for j in jobs.journal.of("e1s1")] == ["refused"]


def test_a_refused_task_and_an_unknown_task(server, tmp_path):
    server.outcomes = ["refuse"]
    with pytest.raises(RejectedError, match="1027"):
        make(server, "minimax").generate(shot(), tmp_path / "shot.mp4", shot_jobs(tmp_path))
    from stages.backends._http import NotFound

    with pytest.raises(NotFound, match="no longer knows task 404404"):
        make(server, "minimax").poll("404404")


def test_the_download_url_is_asked_for_again_at_each_attempt(server, tmp_path):
    server.faults.download = ["404"]  # the link expired between retrieve and download
    make(server, "minimax").generate(shot(), tmp_path / "shot.mp4", shot_jobs(tmp_path))
    assert server.count("retrieve") == 2 and server.count("download") == 2 and server.created()[0].downloads == 1


def test_no_lookup_and_no_cancel(server, tmp_path):
    b = make(server, "minimax")
    assert type(b).lookup is HostedVideoBackend.lookup
    with pytest.raises(PermanentError, match="no way to cancel"):
        b.cancel("1")
    server.faults.submit = ["500-after"]
    jobs = shot_jobs(tmp_path)
    for _ in range(2):
        with pytest.raises(UnknownJob, match="usage records"):
            b.generate(shot(), tmp_path / "shot.mp4", jobs)
    assert server.count("submit") == 1 and len(server.created()) == 1

