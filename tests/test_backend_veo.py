"""Veo on the Gemini API through google-genai, against a local server that speaks it (`fakes/veo.py`):
the key header, the predictLongRunning body as the client writes it (both characters' reference
images with the speaker first, named in the prompt; the start frame; 8 s with references; ratio,
resolution; no generateAudio), the operation's states, the download through the files endpoint,
one attempt per call, and the limits checked at the edge. Faults and money rules: test_hosted_video."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

pytest.importorskip("google.genai")  # the `veo` extra

import fakes
from fake_hosted import FakeHosted
from fake_openai import png_bytes, provider_mp4  # noqa: F401 (a fixture)
from fakes import veo as proto
from stages.backends._jobs import ShotJobs, UnknownJob
from stages.backends.base import Figure, PermanentError, RejectedError, ShotRequest, TransientError
from stages.backends.veo import VeoOptions
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
    return fakes.backend(server, "veo", **{"poll_s": 0.005, "request_timeout_s": 0.2, **kw})


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
            "caption": "", "figures": (), "duration_s": duration_s, "width": 90, "height": 160, "fps": 24, "seed": 7}
    return ShotRequest(**{**args, **kw})


def run(server, b, request, tmp_path) -> tuple[object, ShotJobs]:
    jobs = ShotJobs(Journal(Ledger(tmp_path / "ledger.sqlite")), request.shot_id, "k", since=time.time())
    b.generate(request, tmp_path / "out.mp4", jobs)
    (job,) = server.created()
    return job, jobs


def colour_of(image: dict) -> tuple[int, int, int]:
    """The colour of an image sent inline (a JPEG of one colour, so near it)."""
    import io

    from PIL import Image

    assert set(image) == {"bytesBase64Encoded", "mimeType"} and image["mimeType"] == "image/jpeg"
    with Image.open(io.BytesIO(base64.b64decode(image["bytesBase64Encoded"]))) as im:
        return im.convert("RGB").getpixel((10, 10))


def near(a, b) -> bool:
    return all(abs(x - y) <= 12 for x, y in zip(a, b))


def test_a_two_character_shot_sends_both_speaker_first_named_in_the_prompt_as_8_s(server, tmp_path):
    ann, bo = two_people(tmp_path, speaker="bo")
    request = shot(figures=(ann, bo), negative_prompt="blurry")
    b = make(server)
    fitted = b.fitted(request)
    job, jobs = run(server, b, request, tmp_path)
    assert job.model == "veo-3.1-generate-preview"
    body = job.body
    (inst,) = body["instances"]
    refs = inst["referenceImages"]
    assert [r["referenceType"].lower() for r in refs] == ["asset"] * 3  # Veo takes 3: the last 3/4 is dropped
    assert [near(colour_of(r["image"]), c) for r, c in zip(refs, [(0, 0, 200), (200, 0, 0), (0, 0, 150)])] == [True] * 3
    assert [r.label() for r in fitted.dropped] == ["ANN (three-quarter)"]  # named, never silent
    assert inst["prompt"] == ("Reference image 1 shows BO (front view); Reference image 2 shows ANN (front view); "
                              "Reference image 3 shows BO (three-quarter view). " + request.prompt)
    assert "image" not in inst
    assert body["parameters"] == {"sampleCount": 1, "durationSeconds": 8, "aspectRatio": "9:16",
                                  "resolution": "720p", "negativePrompt": "blurry"}  # 8 s: references take only 8
    assert job.headers["x-goog-api-key"] == proto.KEY and "Authorization" not in job.headers
    assert job.headers["X-Server-Timeout"] == "1"  # our request_timeout_s, rounded up as the client sends it
    (row,) = jobs.journal.of(request.shot_id)
    assert (row.state, row.job_id, row.billed_s, row.images) == (
        "done", f"models/veo-3.1-generate-preview/operations/{job.id}", 8.0, 3)


def test_a_keyframe_goes_as_the_start_image_with_the_motion_prompt(server, tmp_path):
    key = tmp_path / "key.png"
    key.write_bytes(png_bytes(300, 200, (0, 180, 0)))
    request = shot(keyframe=key, motion_prompt="Slow push-in.", figures=two_people(tmp_path))
    job, _ = run(server, make(server, mode="image"), request, tmp_path)
    (inst,) = job.body["instances"]
    assert set(inst) == {"prompt", "image"} and inst["prompt"] == "Slow push-in."
    assert near(colour_of(inst["image"]), (0, 180, 0))
    assert job.body["parameters"]["durationSeconds"] == 4  # 3.2 s asks for the next length Veo makes


@pytest.mark.parametrize("seconds,asked", [(0.5, 4), (4.5, 6), (6.2, 8), (12.0, 8)])
def test_a_text_shot_asks_for_the_next_length_veo_makes(server, tmp_path, seconds, asked):
    b = make(server, mode="text", durations=[4, 6, 8])
    job, jobs = run(server, b, shot(seconds), tmp_path)
    assert job.body["parameters"]["durationSeconds"] == asked and "referenceImages" not in job.body["instances"][0]
    assert jobs.journal.of("ep01-sc01-sh002")[0].billed_s == asked


def test_a_reference_mode_shot_without_references_may_be_short(server, tmp_path):
    b = make(server)  # mode reference: 8 s only once images go
    assert b.billed_seconds(shot(3.2)) == 4.0 and b.billed_seconds(shot(3.2, figures=two_people(tmp_path))) == 8.0


def test_polls_until_done_then_downloads_through_the_files_endpoint_with_the_key(server, tmp_path):
    server.steps = 3
    job, _ = run(server, make(server), shot(), tmp_path)
    assert [c for c in server.calls if c[0] in ("submit", "status", "download")] == [
        ("submit", "veo-3.1-generate-preview"), ("status", job.id), ("status", job.id), ("status", job.id),
        ("download", job.id)]
    assert ("http", f"GET /veo/v1beta/files/{job.id}:download") in server.calls  # the key checked there too
    assert job.downloads == 1


def test_the_safety_filter_is_a_refusal_with_its_reason(server, tmp_path):
    server.outcomes = ["refuse"]
    with pytest.raises(RejectedError, match="safety filter .*violate our safety policy"):
        run(server, make(server), shot(), tmp_path)


def test_the_client_makes_one_attempt_per_call(server, tmp_path):
    b = make(server)
    assert b.client()._api_client._http_options.retry_options.attempts == 1
    server.faults.submit = ["429"]
    with pytest.raises(TransientError, match="429"):
        run(server, b, shot(), tmp_path)
    server.faults.submit = ["500-after"]
    with pytest.raises(UnknownJob):  # may have been made: never sent again, and no way to look it up
        b.generate(shot(), tmp_path / "o.mp4", ShotJobs(Journal(Ledger(tmp_path / "l2.sqlite")), "x", "k",
                                                         since=time.time()))
    assert server.count("submit") == 2 and len(server.created()) == 1


def test_a_wrong_key_is_permanent_and_names_the_variable(server, tmp_path, monkeypatch):
    monkeypatch.setenv(proto.KEY_ENV, "AIza-wrong")
    with pytest.raises(PermanentError, match=f"API key not valid.*\\${proto.KEY_ENV}"):
        run(server, make(server), shot(), tmp_path)
    assert server.created() == []


def test_a_refused_connection_made_no_job(tmp_path, monkeypatch):
    import socket

    monkeypatch.setenv(proto.KEY_ENV, proto.KEY)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = fakes.backend(type("S", (), {"base": f"http://127.0.0.1:{port}"})(), "veo", poll_s=0.005,
                      request_timeout_s=0.2)
    jobs = ShotJobs(Journal(Ledger(tmp_path / "ledger.sqlite")), "s", "k", since=time.time())
    with pytest.raises(TransientError, match="cannot connect"):
        b.generate(shot(), tmp_path / "o.mp4", jobs)
    assert [str(j.state) for j in jobs.journal.of("s")] == ["refused"]


@pytest.mark.parametrize("bad,message", [
    ({"aspect_ratio": "1:1"}, "aspect_ratio '1:1' is not offered"),
    ({"durations": [5]}, r"durations \[5.0\] are not offered"),
    ({"resolution": "1080p", "durations": [4, 8]}, "1080p in 8 s clips only"),
    ({"mode": "reference", "durations": [4, 6]}, "reference images take 8 s clips only"),
    ({"audio": False}, "always makes sound"),
    ({"max_references": 4}, "over the provider's 3"),
    ({"resolution": "480p"}, "resolution '480p' is not offered"),
])
def test_options_outside_veos_limits_are_refused_with_a_clear_message(bad, message):
    with pytest.raises(ValueError, match=message):
        VeoOptions(**bad)


def test_4k_asks_for_8_s_and_extra_fields_go_as_written(server, tmp_path):
    b = make(server, mode="text", resolution="4k", inputs={"parameters": {"personGeneration": "allow_all"}})
    assert b.capabilities.durations_s == (8.0,) and b.capabilities.native_audio
    job, _ = run(server, b, shot(2.0), tmp_path)
    assert job.body["parameters"] == {"sampleCount": 1, "durationSeconds": 8, "aspectRatio": "9:16",
                                      "resolution": "4k", "personGeneration": "allow_all"}
