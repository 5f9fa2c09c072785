"""Grok Imagine on xAI's REST API against a local server that speaks it (`fakes/grok_imagine.py`): the
Bearer key, the generations body as documented (both characters' reference images as data URLs with
the speaker first, named `<IMAGE_N>` in the prompt; the start frame as `image: {url}`; duration rounded
up, at most 10 s with references; ratio, resolution, generate_audio), the request's states, the
download of `video.url`, and the limits checked at the edge. Faults and money rules: test_hosted_video."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import pytest

import fakes
from fake_hosted import FakeHosted
from fake_openai import png_bytes, provider_mp4  # noqa: F401 (a fixture)
from fakes import grok_imagine as proto
from stages.backends._jobs import ShotJobs
from stages.backends.base import Figure, PermanentError, RejectedError, ShotRequest
from stages.backends.grok_imagine import GrokImagineOptions
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
    return fakes.backend(server, "grok-imagine", **{"poll_s": 0.005, "request_timeout_s": 0.2, **kw})


def sheet(tmp_path: Path, name: str, colour) -> Path:
    p = tmp_path / f"{name}-{'0' * 20}.png"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(png_bytes(64, 96, colour))
    return p


def person(tmp_path: Path, fid: str, name: str, colours, *, speaking=False) -> Figure:
    views = ("front", "three-quarter", "profile", "back")
    return Figure(fid, name, "", speaking=speaking,
                  references=tuple(sheet(tmp_path, f"{fid}/{v}", c) for v, c in zip(views, colours)))


def shot(duration_s: float = 3.2, **kw) -> ShotRequest:
    args = {"shot_id": "ep01-sc01-sh002", "prompt": "Medium shot: ANN hands BO a letter in a rainy bus shelter.",
            "size": "medium", "camera": "static", "location": "BUS SHELTER", "time": "NIGHT", "action": "",
            "caption": "", "figures": (), "duration_s": duration_s, "width": 90, "height": 160, "fps": 24, "seed": 7}
    return ShotRequest(**{**args, **kw})


def run(server, b, request, tmp_path) -> tuple[object, ShotJobs]:
    jobs = ShotJobs(Journal(Ledger(tmp_path / "ledger.sqlite")), request.shot_id, "k", since=time.time())
    b.generate(request, tmp_path / "out.mp4", jobs)
    (job,) = server.created()
    return job, jobs


def colour_of(url: str) -> tuple[int, int, int]:
    from PIL import Image

    assert url.startswith("data:image/jpeg;base64,")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as im:
        return im.convert("RGB").getpixel((10, 10))


def near(a, b) -> bool:
    return all(abs(x - y) <= 12 for x, y in zip(a, b))


def test_a_two_character_shot_sends_both_speaker_first_named_image_n(server, tmp_path):
    ann = person(tmp_path, "ann", "ANN", [(200, 0, 0), (150, 0, 0)])
    bo = person(tmp_path, "bo", "BO", [(0, 0, 200), (0, 0, 150)], speaking=True)
    request = shot(figures=(ann, bo))
    job, jobs = run(server, make(server), request, tmp_path)
    body = dict(job.body)
    refs = body.pop("reference_images")
    assert [near(colour_of(r["url"]), c) for r, c in zip(refs, [(0, 0, 200), (200, 0, 0), (0, 0, 150),
                                                                 (150, 0, 0)])] == [True] * 4
    assert body == {"model": "grok-imagine-video", "duration": 4, "aspect_ratio": "9:16", "resolution": "720p",
                    "generate_audio": False,
                    "prompt": "<IMAGE_1> is BO (front view); <IMAGE_2> is ANN (front view); <IMAGE_3> is BO "
                              "(three-quarter view); <IMAGE_4> is ANN (three-quarter view). " + request.prompt}
    assert job.headers["Authorization"] == f"Bearer {proto.KEY}"
    (row,) = jobs.journal.of(request.shot_id)
    assert (row.state, row.job_id, row.billed_s, row.images) == ("done", job.id, 4.0, 4)


def test_more_references_than_seven_drop_the_last_turn_and_name_it(server, tmp_path):
    colours = [(i * 20, 0, 0) for i in range(4)]
    ann = person(tmp_path, "ann", "ANN", colours, speaking=True)
    bo = person(tmp_path, "bo", "BO", colours)
    b = make(server)
    fitted = b.fitted(shot(figures=(ann, bo)))
    assert len(fitted.sent) == 7 and [r.label() for r in fitted.dropped] == ["BO (back)"]
    job, _ = run(server, b, shot(figures=(ann, bo)), tmp_path)
    assert len(job.body["reference_images"]) == 7 and "<IMAGE_7> is ANN (back view)" in job.body["prompt"]


def test_a_keyframe_goes_as_image_url_with_the_motion_prompt(server, tmp_path):
    key = tmp_path / "key.png"
    key.write_bytes(png_bytes(300, 200, (0, 180, 0)))
    request = shot(12.3, keyframe=key, motion_prompt="Slow push-in.")
    job, _ = run(server, make(server, mode="image", resolution="480p", audio=True), request, tmp_path)
    body = dict(job.body)
    assert near(colour_of(body.pop("image")["url"]), (0, 180, 0))
    assert body == {"model": "grok-imagine-video", "prompt": "Slow push-in.", "duration": 13, "aspect_ratio": "9:16",
                    "resolution": "480p", "generate_audio": True}


def test_with_references_a_long_shot_asks_for_10_s_at_most(server, tmp_path):
    b = make(server)
    assert b.capabilities.durations_s[-1] == 10.0
    job, _ = run(server, b, shot(12.0, figures=(person(tmp_path, "ann", "ANN", [(9, 9, 9)]),)), tmp_path)
    assert job.body["duration"] == 10


def test_polls_pending_until_done_then_downloads_the_url(server, tmp_path):
    server.steps = 3
    job, _ = run(server, make(server, mode="text"), shot(), tmp_path)
    assert [c for c in server.calls if c[0] in ("submit", "status", "download")] == [
        ("submit", "generations"), ("status", job.id), ("status", job.id), ("status", job.id), ("download", job.id)]


def test_a_video_blocked_by_moderation_is_a_refusal(server, tmp_path, monkeypatch):
    real = proto._video

    def blocked(server, job):
        out = real(server, job)
        if out["status"] == "done":
            out["video"] = {"url": "", "duration": 0, "respect_moderation": False}
        return out

    monkeypatch.setattr(proto, "_video", blocked)
    with pytest.raises(RejectedError, match="moderation"):
        run(server, make(server), shot(), tmp_path)


def test_a_wrong_key_is_permanent_and_names_the_variable(server, tmp_path, monkeypatch):
    monkeypatch.setenv(proto.KEY_ENV, "xai-wrong")
    with pytest.raises(PermanentError, match=f"Incorrect API key.*\\${proto.KEY_ENV}"):
        run(server, make(server), shot(), tmp_path)
    assert server.created() == []


@pytest.mark.parametrize("bad,message", [
    ({"aspect_ratio": "21:9"}, "aspect_ratio '21:9' is not offered"),
    ({"durations": [16]}, r"durations \[16.0\] are not offered"),
    ({"durations": [12]}, "10 s at most"),  # mode reference
    ({"resolution": "1080p", "mode": "text"}, "only grok-imagine-video-1.5"),
    ({"resolution": "1080p", "model": "grok-imagine-video-1.5"}, "720p at most"),
    ({"max_references": 8}, "over the provider's 7"),
])
def test_options_outside_grok_imagines_limits_are_refused_with_a_clear_message(bad, message):
    with pytest.raises(ValueError, match=message):
        GrokImagineOptions(**bad)


def test_1080p_on_grok_imagine_1_5_from_text(server, tmp_path):
    job, _ = run(server, make(server, mode="text", model="grok-imagine-video-1.5", resolution="1080p"), shot(),
                 tmp_path)
    assert (job.body["model"], job.body["resolution"]) == ("grok-imagine-video-1.5", "1080p")
