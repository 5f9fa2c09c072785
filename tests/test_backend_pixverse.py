"""PixVerse against its local server (tests/fakes/pixverse.py): the exact requests (API-KEY, the create's
Ai-trace-id made from the client key, uploads to img_id once per file, fusion references named `@ref_name `,
quality and duration), limits, and the lookup that re-sends a lost create with its trace id (the earlier
job, never a second one)."""

from __future__ import annotations

import time
import uuid

import fakes
import pytest
from fake_hosted import FakeHosted
from fake_openai import png_bytes, provider_mp4  # noqa: F401 (a fixture)
from fakes import pixverse as proto

from stages.backends._http import AnswerLost
from stages.backends._jobs import LookupUnsupported, ShotJobs
from stages.backends.base import Figure, PermanentError, ShotRequest
from stages.backends.pixverse import (
    REPLAY_WINDOW_S,
    PixverseBackend,
    PixverseOptions,
    trace_id,
)
from stages.core.jobs import Journal
from stages.core.ledger import Ledger


@pytest.fixture
def server(provider_mp4, monkeypatch):
    monkeypatch.setenv(proto.KEY_ENV, proto.KEY)
    s = FakeHosted(provider_mp4, hang_s=0.5)
    yield s
    s.close()


def make(server, **kw) -> PixverseBackend:
    return fakes.backend(server, "pixverse", **{**dict(poll_s=0.005, request_timeout_s=0.2, timeout_s=30), **kw})


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


def test_a_two_character_shot_is_a_fusion_of_uploaded_subjects_speaker_first(server, tmp_path):
    b = make(server)
    jobs = jobs_at(tmp_path)
    b.generate(shot(figures=two_characters(tmp_path)), tmp_path / "a.mp4", jobs)
    (job,) = server.created()
    (row,) = jobs.journal.of("e1s1")
    assert job.model == "fusion:v5" and job.headers["API-KEY"] == proto.KEY
    assert job.headers["Ai-trace-id"] == trace_id(row.client_key) and uuid.UUID(job.headers["Ai-trace-id"])
    uploads = [int(i) for e, i in server.calls if e == "upload"]
    assert len(uploads) == 3
    body = dict(job.body)
    assert body.pop("image_references") == [{"type": "subject", "img_id": uploads[0], "ref_name": "bo_1"},
                                            {"type": "subject", "img_id": uploads[1], "ref_name": "ann_2"},
                                            {"type": "subject", "img_id": uploads[2], "ref_name": "ann_3"}]
    assert body == {"model": "v5", "duration": 5, "quality": "540p", "seed": 77, "aspect_ratio": "9:16",
                    "prompt": "@bo_1 is BO (front view); @ann_2 is ANN (front view); @ann_3 is ANN (three-quarter "
                              "view). e1s1: they argue by the window."}
    assert row.images == 3 and row.billed_s == 5


def test_each_sheet_is_uploaded_once_per_account_across_shots(server, tmp_path):
    figures = two_characters(tmp_path)
    jobs = jobs_at(tmp_path)
    make(server).generate(shot(figures=figures), tmp_path / "a.mp4", jobs)
    second = ShotJobs(jobs.journal, "e1s2", "k2", since=time.time())
    make(server).generate(shot(5.2, shot_id="e1s2", figures=figures), tmp_path / "b.mp4", second)
    first, again = server.created()
    assert server.count("upload") == 3 and first.body["image_references"] == again.body["image_references"]
    assert again.body["duration"] == 8  # 5.2 s asks for the next offered length
    assert first.headers["Ai-trace-id"] != again.headers["Ai-trace-id"]


def test_text_image_and_sound_requests(server, tmp_path):
    (key,) = sheets(tmp_path, "keyframe")
    make(server, mode="text", aspect_ratio="16:9", resolution="720p", audio=True, model="v5.5").generate(
        shot(negative_prompt="blur"), tmp_path / "t.mp4", jobs_at(tmp_path / "t"))
    make(server, mode="image").generate(shot(keyframe=key, motion_prompt="Slow push-in."), tmp_path / "i.mp4",
                                        jobs_at(tmp_path / "i"))
    make(server).generate(shot(), tmp_path / "r.mp4", jobs_at(tmp_path / "r"))  # reference mode, no one in it
    text, image, nobody = server.created()
    assert text.model == "text:v5.5" and text.body == {
        "model": "v5.5", "duration": 5, "quality": "720p", "seed": 77, "negative_prompt": "blur",
        "generate_audio_switch": True, "prompt": "e1s1: they argue by the window.", "aspect_ratio": "16:9"}
    assert image.model == "img:v5" and image.body == {"model": "v5", "duration": 5, "quality": "540p", "seed": 77,
                                                      "prompt": "Slow push-in.", "img_id": 90001}
    assert nobody.model == "text:v5" and "image_references" not in nobody.body


def test_more_references_than_fusion_takes_names_the_dropped_one(server, tmp_path):
    a1, a2, b1, b2 = sheets(tmp_path, "front", "three-quarter", "front", "three-quarter")
    figures = (Figure("ann", "ANN", "", references=(a1, a2)), Figure("bo", "BO", "", references=(b1, b2)))
    fitted = make(server).fitted(shot(figures=figures))
    assert len(fitted.sent) == 3 and [r.label() for r in fitted.dropped] == ["BO (three-quarter)"]


def test_options_outside_the_limits_are_refused_clearly():
    with pytest.raises(ValueError, match="no 8 s clip at 1080p"):
        PixverseOptions(resolution="1080p", durations=[5, 8])
    assert PixverseOptions(resolution="1080p").clip_lengths() == (5.0,)
    assert PixverseOptions().clip_lengths() == (5.0, 8.0)
    with pytest.raises(ValueError, match=r"durations \[10.0\] are not offered"):
        PixverseOptions(durations=[10])
    with pytest.raises(ValueError, match="max_references 4 is over the provider's 3"):
        PixverseOptions(max_references=4)
    with pytest.raises(ValueError, match="aspect_ratio '21:9' is not offered"):
        PixverseOptions(aspect_ratio="21:9")


def test_an_errcode_on_create_made_no_job(server, tmp_path):
    jobs = jobs_at(tmp_path)
    with pytest.raises(PermanentError, match="ErrCode 400017: fusion is supported in model v4.5"):
        make(server, model="v4").generate(shot(figures=two_characters(tmp_path)), tmp_path / "a.mp4", jobs)
    assert server.created() == [] and [j.state for j in jobs.journal.of("e1s1")] == ["refused"]


def test_a_wrong_key_is_refused(server, tmp_path, monkeypatch):
    monkeypatch.setenv(proto.KEY_ENV, "pv-wrong")
    with pytest.raises(PermanentError, match="401"):
        make(server).generate(shot(), tmp_path / "a.mp4", jobs_at(tmp_path))
    assert server.created() == []


def test_a_lost_create_re_sent_with_its_trace_id_returns_the_same_job_never_a_second(server, tmp_path):
    from stages.core.jobs import Uploads

    b = make(server)
    b._uploads = Uploads(Ledger(tmp_path / "ledger.sqlite"))  # as `generate` sets it
    request = shot(figures=two_characters(tmp_path))
    server.faults.submit = ["drop-after"]
    with pytest.raises(AnswerLost):
        b.submit(request, "df-1")
    (job,) = server.created()
    assert b.lookup("df-1", request, time.time()) == job.id
    assert b.lookup("df-1", request, time.time()) == job.id
    assert len(server.created()) == 1 and server.count("submit") == 1 and server.count("list") == 2
    # a create whose first send never arrived: the re-send makes the one job
    server.faults.submit = ["429"]
    with pytest.raises(Exception, match="429"):
        b.submit(request, "df-2")
    assert b.lookup("df-2", request, time.time()) == server.created()[-1].id and len(server.created()) == 2
    # long after the first send the trace id may be forgotten: never re-sent then
    with pytest.raises(LookupUnsupported):
        b.lookup("df-1", request, time.time() - REPLAY_WINDOW_S - 1)
    assert server.count("upload") == 3  # the re-sends reused the uploads


def test_polling_states(server):
    b = make(server)
    server.outcomes = ["refuse", "fail-infra"]
    refused, failed = b.submit(shot(), "df-1"), b.submit(shot(shot_id="e1s2"), "df-2")
    assert [b.poll(refused).state for _ in range(2)] == ["running", "failed"]
    assert [b.poll(failed).state for _ in range(2)] == ["running", "failed"]
    assert "moderation" in str(b.poll(refused).error) and "status 8" in str(b.poll(failed).error)
    from stages.backends._http import NotFound

    with pytest.raises(NotFound):
        b.poll("999999")
