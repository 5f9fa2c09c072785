"""Seedance on Volcengine Ark against its local server (tests/fakes/seedance.py): the exact create body
(content[] items and roles, the prompt's "Image N" names, saved face assets, ratio, duration, resolution,
seed, watermark, generate_audio), the task states, the download, cancel (queued only), options checked
at the edge, and one paid job per shot with no lookup."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import wave
from dataclasses import replace
from pathlib import Path

import fake_openai
import fakes
import numpy as np
import pytest
from fake_hosted import FakeHosted
from fake_openai import png_bytes
from fakes import seedance as proto
from test_hosted_video import make, shot, shot_jobs

from stages.backends._jobs import HostedVideoBackend, JobFailed, UnknownJob
from stages.backends.base import Figure, PermanentError, RejectedError, ShotRequest, TransientError
from stages.backends.seedance import SeedanceBackend, SeedanceOptions

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



# --- the speakers' voices (dialogue: native) -------------------------------------------------------

def wav(path: Path, seconds: float, hz: int = 220, rate: int = 16_000) -> Path:
    """A tone as 16-bit mono WAV (each character's own pitch: their clips differ in content)."""
    t = np.arange(int(seconds * rate)) / rate
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.sin(2 * np.pi * hz * t) * 12_000).astype("<i2").tobytes())
    return path


@pytest.fixture
def voices(tmp_path):
    d = tmp_path / "voices"
    d.mkdir()
    return {"ann": wav(d / "ann.wav", 3.0, 220), "bo": wav(d / "bo.wav", 4.0, 150)}


def speaking(sheets, voices, *, bo_clip: bool = True) -> tuple[Figure, ...]:
    """BO framed first, ANN speaking; the model speaks for both (each with a clip, BO's optional)."""
    bo = Figure("bo", "BO", "bald", references=(sheets["bo", "front"],),
                voice_clip=voices["bo"] if bo_clip else None)
    ann = Figure("ann", "ANN", "red hair", speaking=True,
                 references=(sheets["ann", "front"], sheets["ann", "three-quarter"]), voice_clip=voices["ann"])
    return bo, ann


def native(figures, **kw) -> ShotRequest:
    return shot(figures=figures, extra={"dialogue": [{"character": "ann", "text": "Is it ready yet?"}]}, **kw)


def sent_audio(body: dict) -> list[dict]:
    return [c for c in body["content"] if c["type"] == "audio_url"]


def text_of(body: dict) -> str:
    return body["content"][0]["text"]


def test_a_native_shot_sends_each_speakers_clip_as_it_is_named_in_the_prompt(server, tmp_path, sheets, voices):
    b = make(server, "seedance", audio=True)
    assert "voice_clips" in b.capabilities.uses
    request = native(speaking(sheets, voices))
    b.generate(request, tmp_path / "shot.mp4", shot_jobs(tmp_path))
    (job,) = server.created()  # the fake validated every audio item as Ark's docs describe them
    content = job.body["content"]
    assert [c["type"] for c in content] == ["text"] + ["image_url"] * 3 + ["audio_url"] * 2  # audio after images
    assert all(set(a) == {"type", "audio_url", "role"} and a["role"] == "reference_audio" and
               a["audio_url"]["url"].startswith("data:audio/wav;base64,") for a in sent_audio(job.body))
    digest = [hashlib.sha256(a).hexdigest() for a in proto.audios(job)]
    assert digest == [hashlib.sha256(voices[w].read_bytes()).hexdigest() for w in ("ann", "bo")]  # speaker first
    assert text_of(job.body) == ("Image 1 is ANN (front view); Image 2 is BO (front view); Image 3 is ANN "
                                 "(three-quarter view). ANN speaks in the voice of Audio 1; BO speaks in the voice "
                                 "of Audio 2. " + request.prompt)


def test_a_speaker_without_a_clip_a_shot_not_spoken_by_the_model_or_one_without_images_send_none(server, sheets,
                                                                                                  voices):
    b = make(server, "seedance", audio=True)
    body = b.body(native(speaking(sheets, voices, bo_clip=False)))
    assert len(sent_audio(body)) == 1 and "BO speaks" not in text_of(body)
    assert "ANN speaks in the voice of Audio 1. " in text_of(body) and proto._invalid(body) is None
    for request in (shot(figures=speaking(sheets, voices)),  # dialogue: tts (our voices): no dialogue in extra
                    native(tuple(replace(f, voice_clip=None) for f in speaking(sheets, voices))),
                    native(tuple(replace(f, references=()) for f in speaking(sheets, voices)))):  # Ark: no audio alone
        body = b.body(request)
        assert sent_audio(body) == [] and "Audio" not in text_of(body) and proto._invalid(body) is None


def test_a_changed_clip_changes_the_shot_key_only_where_clips_are_sent(server, sheets, voices, tmp_path):
    from stages.plan_work import shot_key

    b = make(server, "seedance", audio=True)
    request = native(speaking(sheets, voices))
    same = tmp_path / "same-ann.wav"
    same.write_bytes(voices["ann"].read_bytes())
    other = wav(tmp_path / "other-ann.wav", 3.0, 330)
    def with_clip(clip):
        return replace(request, figures=tuple(replace(f, voice_clip=clip) if f.id == "ann" else f
                                                                for f in request.figures))
    assert shot_key(with_clip(same), b) == shot_key(request, b)  # by content, not by path
    assert shot_key(with_clip(other), b) != shot_key(request, b)
    image = make(server, "seedance", audio=True, mode="image")  # first frame: Ark mixes no audio in
    assert "voice_clips" not in image.capabilities.uses
    assert shot_key(with_clip(other), image) == shot_key(request, image)


def test_clips_over_the_limits_are_cut_or_converted_and_a_too_short_one_is_refused_unpaid(server, sheets, tmp_path):
    from stages.core.media import run_ffmpeg

    b = make(server, "seedance", audio=True)
    long_, short = wav(tmp_path / "long.wav", 12.0, 200), wav(tmp_path / "short.wav", 6.0, 300)
    bo, ann = speaking(sheets, {"ann": long_, "bo": short})
    body = b.body(native((bo, ann)))
    assert proto._invalid(body) is None
    clips = [base64.b64decode(a["audio_url"]["url"].split(",", 1)[1]) for a in sent_audio(body)]
    assert clips[1] == short.read_bytes()  # within its share: as it is
    with wave.open(io.BytesIO(clips[0])) as w:  # ANN's: cut to what BO's 6 s leave of 14.5 s
        assert (w.getnchannels(), w.getframerate()) == (1, 44_100)
        assert w.getnframes() / w.getframerate() == pytest.approx(8.5, abs=0.01)

    flac = tmp_path / "ann.flac"  # a format Ark does not take: converted whole
    run_ffmpeg(["-i", str(wav(tmp_path / "f.wav", 3.0)), "-c:a", "flac", str(flac)])
    (clip,) = sent_audio(b.body(native((replace(ann, voice_clip=flac),))))
    assert clip["audio_url"]["url"].startswith("data:audio/wav;base64,")
    with wave.open(io.BytesIO(base64.b64decode(clip["audio_url"]["url"].split(",", 1)[1]))) as w:
        assert w.getnframes() / w.getframerate() == pytest.approx(3.0, abs=0.01)

    tiny = wav(tmp_path / "tiny.wav", 1.2)
    jobs = shot_jobs(tmp_path)
    with pytest.raises(PermanentError, match=r"ANN's voice.reference tiny.wav is 1.2 s.*2-15 s; nothing was sent"):
        b.generate(native((replace(ann, voice_clip=tiny),)), tmp_path / "s.mp4", jobs)
    assert server.created() == [] and [str(j.state) for j in jobs.journal.of("e1s1")] == ["refused"]


def test_three_clips_at_most_the_speaker_first_and_an_mp3_goes_as_mp3(server, sheets, voices, tmp_path):
    from stages.core.media import run_ffmpeg

    mp3 = tmp_path / "cy.mp3"
    run_ffmpeg(["-f", "lavfi", "-i", "sine=frequency=500:duration=3", "-c:a", "libmp3lame", str(mp3)])
    b = make(server, "seedance", audio=True)
    cast = [Figure(w, w.upper(), "x", references=(sheets["ann", "front"],), voice_clip=clip)
            for w, clip in (("bo", voices["bo"]), ("cy", mp3), ("dee", wav(tmp_path / "dee.wav", 3.0, 400)))]
    ann = Figure("ann", "ANN", "red hair", speaking=True, references=(sheets["ann", "front"],),
                 voice_clip=voices["ann"])
    body = b.body(native((*cast, ann)))
    assert proto._invalid(body) is None
    urls = [a["audio_url"]["url"] for a in sent_audio(body)]
    assert len(urls) == 3 and [u.split(";")[0] for u in urls] == ["data:audio/wav", "data:audio/wav", "data:audio/mp3"]
    assert base64.b64decode(urls[2].split(",", 1)[1]) == mp3.read_bytes()
    assert ("ANN speaks in the voice of Audio 1; BO speaks in the voice of Audio 2; CY speaks in the voice of "
            "Audio 3.") in text_of(body) and "DEE speaks" not in text_of(body)


def test_voice_clips_only_where_ark_takes_them():
    def uses(**kw):
        return "voice_clips" in SeedanceBackend(SeedanceOptions(**kw)).capabilities.uses
    assert uses(audio=True) and uses(audio=True, model="ep-20260101-abc")  # an endpoint id: not checked
    assert not uses() and not uses(audio=True, mode="image") and not uses(audio=True, mode="text")
    assert not uses(model="doubao-seedance-1-0-lite-i2v-250428")


@pytest.mark.parametrize("item,why", [
    ({"role": "reference_image"}, "is not reference_audio"),
    ({"url": "data:audio/flac;base64,AAAA"}, "data:audio/<wav|mp3>"),
    ({"url": "data:audio/WAV;base64,AAAA"}, "lower case"),
    ({"url": "data:audio/wav;base64,bm90IGEgd2F2"}, "cannot be decoded as wav"),
    ({"seconds": 16.0}, "2 to 15 s"), ({"seconds": 1.5}, "2 to 15 s"),
    ({"count": 2, "seconds": 8.0}, "over 15 s"), ({"count": 4}, "at most 3"),
    ({"images": []}, "cannot be the only reference"), ({"first_frame": True}, "cannot be mixed"),
    ({"prompt": "Audio 2 speaks."}, "names Audio 2 but the request has 1"),
    ({"model": "doubao-seedance-1-5-pro-251215"}, "only by Seedance 2.0")])
def test_the_fake_refuses_audio_items_as_ark_documents(server, sheets, tmp_path, item, why):
    clip = wav(tmp_path / "c.wav", item.get("seconds", 3.0))
    url = item.get("url") or "data:audio/wav;base64," + base64.b64encode(clip.read_bytes()).decode()
    audio = {"type": "audio_url", "audio_url": {"url": url}, "role": item.get("role", "reference_audio")}
    image = {"type": "image_url", "image_url": {"url": "https://x/a.png"}, "role": "reference_image"}
    images = item.get("images", [image]) + ([{**image, "role": "first_frame"}] if item.get("first_frame") else [])
    body = {"model": item.get("model", "doubao-seedance-2-0-260128"),
            "content": [{"type": "text", "text": item.get("prompt", "ANN speaks in the voice of Audio 1.")},
                        *images, *[audio] * item.get("count", 1)]}
    assert why in proto._invalid(body)[1]
    if "count" in item:  # the error as Ark answers it
        with pytest.raises(PermanentError, match="400.*InvalidParameter.*" + re.escape(why)):
            make(server, "seedance").call("POST", "/contents/generations/tasks", "creating a task", body=body)


assert "seedance" in fakes.DIRECT
