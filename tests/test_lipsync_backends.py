"""The hosted lip-sync backends (Sync Labs, Kling, fal) against a local server speaking each protocol
(`fakes_lipsync/`): the create as each provider's docs give it, one piece synced end to end and
conformed to the request, failed and refused jobs, poll errors retried without a new job, a create
whose answer was lost (found, or stopped as unknown-job and never re-sent), and a resumed job."""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path

import pytest

import fakes_lipsync
from fake_hosted import FakeHosted
from fake_openai import provider_mp4  # noqa: F401 (a fixture)
from fakes_lipsync import kling_lipsync as kling_proto
from fakes_lipsync import sync as sync_proto
from fakes_lipsync._media import mark_seen
from stages.backends._jobs import JobFailed, ShotJobs, UnknownJob
from stages.backends.base import LipSyncBackend, LipSyncRequest, PermanentError, RejectedError, TransientError
from stages.core.jobs import Journal
from stages.core.ledger import Ledger
from stages.core.media import probe, run_ffmpeg

FPS = 24


def _piece(folder: Path, name: str, size: str, seconds: float) -> tuple[Path, Path]:
    """A piece as the stage sends it: an H.264 mp4 without sound, and its speech (48 kHz mono WAV)."""
    video, audio = folder / f"{name}.mp4", folder / f"{name}.wav"
    run_ffmpeg(["-f", "lavfi", "-i", f"testsrc=size={size}:rate={FPS}:duration={seconds}", "-c:v", "libx264",
                "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-an", str(video)])
    run_ffmpeg(["-f", "lavfi", "-i", f"sine=frequency=220:duration={seconds}", "-ac", "1", "-ar", "48000",
                "-c:a", "pcm_s16le", str(audio)])
    return video, audio


@pytest.fixture(scope="module")
def pieces(tmp_path_factory) -> dict[str, tuple[Path, Path, float]]:
    folder = tmp_path_factory.mktemp("pieces")
    return {"small": (*_piece(folder, "small", "144x256", 1.5), 1.5),  # sync, fal: no documented bounds
            "kling": (*_piece(folder, "kling", "720x1280", 2.5), 2.5)}  # Kling: 2-10 s, sides 720-1920 px


@pytest.fixture
def server(provider_mp4, monkeypatch):
    for proto in fakes_lipsync.PROTOCOLS.values():
        for env, value in proto.ENV.items():
            monkeypatch.setenv(env, value)
    s = FakeHosted(provider_mp4, hang_s=0.5)
    yield s
    s.close()


def make(server, name: str, **kw):
    return fakes_lipsync.backend(server, name, **{"poll_s": 0.02, "request_timeout_s": 5, "timeout_s": 60, **kw})


def request_for(pieces, tmp_path: Path, which: str = "small") -> LipSyncRequest:
    """The piece copied where the stage writes it (build/lipsync, under a temp name), asked back at the
    shot's size (smaller than the piece sent: the clip is conformed)."""
    video, audio, seconds = pieces[which]
    folder = tmp_path / "lipsync"
    folder.mkdir(exist_ok=True)
    cut, wav = folder / ".piece.cut.by-test.part.mp4", folder / "piece.wav"
    cut.write_bytes(video.read_bytes())
    wav.write_bytes(audio.read_bytes())
    return LipSyncRequest("ep01-sc01-sh002", "ann", cut, wav, seconds, 90, 160, FPS, start_s=0.4)


def shot_jobs(tmp_path: Path, *, piece: int = 0, recreate: int = 0) -> ShotJobs:
    """The journal as one piece of the shot sees it (`piece`: another piece, on the same ledger)."""
    return ShotJobs(Journal(Ledger(tmp_path / "ledger.sqlite")), f"ep01-sc01-sh002-f{piece}", "k1",
                    since=time.time(), recreate=recreate)


def run(b, request: LipSyncRequest, tmp_path: Path, jobs: ShotJobs | None = None) -> tuple[Path, ShotJobs]:
    jobs = jobs or shot_jobs(tmp_path)
    out = tmp_path / "synced.mp4"
    b.sync(request, out, jobs=jobs)
    return out, jobs


def states(jobs: ShotJobs) -> list[str]:
    return [str(j.state) for j in jobs.journal.of(jobs.unit_id)]


def check_synced(out: Path, request: LipSyncRequest) -> None:
    """The clip is the marked piece, conformed: the request's size, fps and frame count, H.264, no sound."""
    info = probe(out)
    assert (info.width, info.height, info.video_codec, info.audio_codec) == (request.width, request.height,
                                                                             "h264", None)
    assert round(info.fps) == request.fps and info.frames == round(request.duration_s * request.fps)
    assert mark_seen(out) and not mark_seen(request.video)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- Sync Labs ------------------------------------------------------------------------------

def test_sync_sends_the_documented_multipart_create_and_the_synced_clip_comes_back_conformed(server, pieces,
                                                                                             tmp_path):
    b = make(server, "sync", extra_options={"temperature": 0.3})
    assert isinstance(b, LipSyncBackend) and b.capabilities.billed and b.capabilities.resumable
    request = request_for(pieces, tmp_path)
    out, jobs = run(b, request, tmp_path)
    check_synced(out, request)
    (job,) = server.created()
    (row,) = jobs.journal.of(jobs.unit_id)
    assert (row.state, row.job_id, row.billed_s, row.why) == ("done", job.id, round(request.duration_s, 4), "first")
    body = job.body
    assert (body["model"], body["options"]) == ("lipsync-2", {"sync_mode": "cut_off", "temperature": 0.3})
    assert body["outputFileName"] == row.client_key  # our key is already in [A-Za-z0-9_-]
    assert (body["video"]["sha256"], body["audio"]["sha256"]) == (sha(request.video), sha(request.audio))
    assert body["video"]["filename"].endswith(".mp4") and "by-test" not in body["video"]["filename"]
    headers = {k.lower(): v for k, v in job.headers.items()}
    assert headers["x-api-key"] == sync_proto.KEY and headers["idempotency-key"] == row.client_key
    assert headers["content-type"].startswith("multipart/form-data") and "authorization" not in headers
    assert server.count("submit") == 1 and server.count("download") == 1


def test_sync_output_names_are_sanitised_and_the_generation_is_read_as_documented(server):
    from stages.backends.sync_labs import output_name

    assert output_name("df-0a1b") == "df-0a1b" and output_name("a.b/c d") == "a_b_c_d"
    b = make(server, "sync")
    assert b.read("g", {"status": "COMPLETED", "outputMediaUrl": "https://cdn/x.mp4"}).result == "https://cdn/x.mp4"
    flagged = b.read("g", {"status": "FAILED", "error": "flagged", "error_code": "input_moderation"})
    assert isinstance(flagged.error, RejectedError) and "input_moderation" in str(flagged.error)
    bad = b.read("g", {"status": "FAILED", "error": "cannot fetch", "errorCode": "generation_input_video_inaccessible"})
    assert type(bad.error) is PermanentError
    assert type(b.read("g", {"status": "TIMED_OUT"}).error) is TransientError  # sync's own: re-created if allowed
    assert b.read("g", {"status": "CANCELED"}).state == "gone"
    with pytest.raises(TransientError, match="does not know"):
        b.read("g", {"status": "ARCHIVED"})
    with pytest.raises(PermanentError, match="no way to cancel"):
        b.cancel("g")


def test_sync_options_are_checked_at_the_edge():
    from pydantic import ValidationError

    from stages.backends.sync_labs import SyncLabsOptions

    with pytest.raises(ValidationError, match="sync_mode"):
        SyncLabsOptions(sync_mode="stretch")
    with pytest.raises(ValidationError, match="sync_mode as its own setting"):
        SyncLabsOptions(extra_options={"sync_mode": "loop"})


def test_sync_a_failed_generation_stops_with_its_reason_and_a_rejected_one_as_rejected(server, pieces, tmp_path):
    server.outcomes = ["fail-model"]
    with pytest.raises(PermanentError, match="No face could be found.*generation_input_validation_failed"):
        run(make(server, "sync"), request_for(pieces, tmp_path), tmp_path)
    server.outcomes = ["refuse"]
    jobs = shot_jobs(tmp_path, piece=1)
    with pytest.raises(RejectedError, match="REJECTED: The input was rejected by content moderation"):
        run(make(server, "sync"), request_for(pieces, tmp_path), tmp_path, jobs)
    assert len(server.created()) == 2 and states(jobs) == ["failed"]  # one job each: a refusal is never re-sent


def test_sync_its_own_failure_is_re_created_only_as_the_project_allows(server, pieces, tmp_path):
    server.outcomes = ["fail-infra", "ok"]
    out, jobs = run(make(server, "sync"), request_for(pieces, tmp_path), tmp_path, shot_jobs(tmp_path, recreate=1))
    assert out.exists() and states(jobs) == ["failed", "done"] and len(server.created()) == 2
    server.outcomes = ["fail-infra"]
    with pytest.raises(JobFailed, match="recreate_failed_jobs = 0"):
        run(make(server, "sync"), request_for(pieces, tmp_path), tmp_path, shot_jobs(tmp_path, piece=1))
    assert len(server.created()) == 3


def test_sync_poll_errors_are_retried_without_a_new_generation(server, pieces, tmp_path):
    server.faults.status = ["429", "500", "drop", "html"]
    request = request_for(pieces, tmp_path)
    out, jobs = run(make(server, "sync"), request, tmp_path)
    check_synced(out, request)
    assert server.count("submit") == 1 and len(server.created()) == 1 and states(jobs) == ["done"]
    assert server.count("status") >= 4 + server.steps


def test_sync_a_lost_create_is_found_by_its_output_file_name(server, pieces, tmp_path):
    for _ in range(3):  # the account's other generations, newer than nothing of ours
        server.create("lipsync-2", {"duration": 1}, "0d9b5e3c-7a41-4c8e-9f21-00000000",
                      raw={"model": "lipsync-2", "options": {}, "outputFileName": "someone-else"})
    server.faults.submit = ["drop-after"]
    request = request_for(pieces, tmp_path)
    out, jobs = run(make(server, "sync"), request, tmp_path)
    check_synced(out, request)
    ours = [j for j in server.created() if j.body["outputFileName"] != "someone-else"]
    (row,) = jobs.journal.of(jobs.unit_id)
    assert len(ours) == 1 and (row.state, row.job_id) == ("done", ours[0].id)
    assert server.count("submit") == 1 and server.count("list") >= 1
    assert ours[0].billed == pytest.approx(1.5 * server.price_per_second)  # billed once, for the piece's length


def test_sync_lookup_pages_back_to_the_request_by_cursor(server, pieces, tmp_path, monkeypatch):
    from stages.backends import sync_labs

    monkeypatch.setattr(sync_labs, "LIST_LIMIT", 2)

    def generation(name: str):
        return server.create("lipsync-2", {"duration": 1}, "0d9b5e3c-7a41-4c8e-9f21-00000000",
                             raw={"model": "lipsync-2", "options": {}, "outputFileName": name})

    sent_at = time.time()
    ours = generation("df-ours")
    for i in range(5):  # made after ours: ours is on the third page of two
        generation(f"df-other{i}")
    b = make(server, "sync")
    request = request_for(pieces, tmp_path)
    assert b.lookup("df-ours", request, sent_at) == ours.id
    assert server.count("list") == 3
    assert b.lookup("df-never-made", request, sent_at) is None  # the list's end: it made nothing


def test_sync_a_lost_create_that_made_nothing_is_asked_again_once_the_list_has_settled(server, pieces, tmp_path):
    server.faults.submit = ["drop"]  # the connection dropped before anything was made
    b = make(server, "sync", request_timeout_s=0.3)
    request = request_for(pieces, tmp_path)
    jobs = shot_jobs(tmp_path)
    with pytest.raises(TransientError, match="made no job"):
        run(b, request, tmp_path, jobs)
    assert server.created() == [] and states(jobs) == ["refused"]
    out, jobs = run(b, request, tmp_path, jobs)  # the flow's retry
    assert states(jobs) == ["refused", "done"] and len(server.created()) == 1


def test_sync_a_list_that_cannot_tell_ours_stops_as_unknown_job_and_pays_nothing_again(server, pieces, tmp_path):
    server.sync_list_names = False
    server.faults.submit = ["drop-after"]
    b = make(server, "sync", request_timeout_s=0.3)
    jobs = shot_jobs(tmp_path)
    with pytest.raises(UnknownJob, match="without an outputFileName"):
        run(b, request_for(pieces, tmp_path), tmp_path, jobs)
    with pytest.raises(UnknownJob):
        run(b, request_for(pieces, tmp_path), tmp_path, jobs)
    assert server.count("submit") == 1 and states(jobs) == ["unknown"]


def test_sync_a_second_run_resumes_the_recorded_generation_instead_of_paying_again(server, pieces, tmp_path):
    server.outcomes = ["hold"]
    request = request_for(pieces, tmp_path)
    jobs = shot_jobs(tmp_path)
    with pytest.raises(TransientError, match="still running"):
        run(make(server, "sync", timeout_s=0.3), request, tmp_path, jobs)
    server.release.set()
    later = ShotJobs(jobs.journal, jobs.unit_id, jobs.spec_hash, since=time.time())
    out, _ = run(make(server, "sync"), request, tmp_path, later)
    check_synced(out, request)
    assert server.count("submit") == 1 and states(jobs) == ["done"]


# --- Kling ------------------------------------------------------------------------------------

def test_kling_sends_a_signed_create_with_the_served_piece_and_the_speech_inline(server, pieces, tmp_path):
    import jwt

    request = request_for(pieces, tmp_path, "kling")
    server.media_dir = request.video.parent
    b = make(server, "kling-lipsync")
    assert (b.capabilities.min_s, b.capabilities.max_s, b.capabilities.min_side_px,
            b.capabilities.max_side_px) == (2.0, 10.0, 720, 1920)
    out, jobs = run(b, request, tmp_path)
    check_synced(out, request)
    (job,) = server.created()
    (row,) = jobs.journal.of(jobs.unit_id)
    assert (row.state, row.job_id, row.billed_s) == ("done", job.id, 3.0)
    name = f"{sha(request.video)[:24]}.mp4"
    url = f"{kling_proto.options(server)['media_base_url']}/{name}"
    assert job.body == {"input": {"video_url": url, "mode": "audio2video", "audio_type": "file",
                                  "audio_file": base64.b64encode(request.audio.read_bytes()).decode()}}
    assert base64.b64decode(job.body["input"]["audio_file"]) == request.audio.read_bytes()
    assert (request.video.parent / name).read_bytes() == request.video.read_bytes()  # kept under its content's name
    assert ("fetched", url) in server.calls and server.count("media") >= 2  # our check, then Kling's download
    token = job.headers["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(token, kling_proto.SECRET, algorithms=["HS256"])
    assert claims["iss"] == kling_proto.KEY and claims["nbf"] <= time.time() < claims["exp"]


def test_kling_an_unserved_piece_is_named_with_the_fix_before_anything_is_paid(server, pieces, tmp_path):
    request = request_for(pieces, tmp_path, "kling")
    server.media_dir = tmp_path / "elsewhere"
    jobs = shot_jobs(tmp_path)
    with pytest.raises(PermanentError, match=r"answered 404\. Serve the folder .*lipsync at http.*media_base_url"):
        run(make(server, "kling-lipsync"), request, tmp_path, jobs)
    assert server.count("submit") == 0 and states(jobs) == ["refused"]


def test_kling_speech_over_five_megabytes_is_refused_before_anything_is_paid(server, pieces, tmp_path):
    import wave

    request = request_for(pieces, tmp_path, "kling")
    server.media_dir = request.video.parent
    with wave.open(str(request.audio), "wb") as w:  # 60 s of 48 kHz mono: 5.76 MB
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48_000)
        w.writeframes(b"\x00\x00" * 48_000 * 60)
    with pytest.raises(PermanentError, match="5.8 MB; Kling takes at most 5 MB"):
        run(make(server, "kling-lipsync"), request, tmp_path)
    assert server.count("submit") == 0 and server.count("media") == 0


def test_kling_a_failed_task_stops_and_a_refused_one_is_rejected(server, pieces, tmp_path):
    request = request_for(pieces, tmp_path, "kling")
    server.media_dir = request.video.parent
    server.outcomes = ["fail-model", "refuse"]
    with pytest.raises(JobFailed, match="No face was detected"):
        run(make(server, "kling-lipsync"), request, tmp_path)
    jobs = shot_jobs(tmp_path, piece=1)
    with pytest.raises(RejectedError, match="risk control"):
        run(make(server, "kling-lipsync"), request, tmp_path, jobs)
    assert len(server.created()) == 2 and states(jobs) == ["failed"]


def test_kling_poll_errors_are_retried_without_a_new_task(server, pieces, tmp_path):
    request = request_for(pieces, tmp_path, "kling")
    server.media_dir = request.video.parent
    server.faults.status = ["429", "500", "drop"]
    out, jobs = run(make(server, "kling-lipsync"), request, tmp_path)
    check_synced(out, request)
    assert server.count("submit") == 1 and len(server.created()) == 1 and states(jobs) == ["done"]


def test_kling_a_lost_create_stops_as_unknown_job_and_is_never_sent_again(server, pieces, tmp_path):
    request = request_for(pieces, tmp_path, "kling")
    server.media_dir = request.video.parent
    server.faults.submit = ["drop-after"]
    jobs = shot_jobs(tmp_path)
    with pytest.raises(UnknownJob, match="--new-job"):
        run(make(server, "kling-lipsync"), request, tmp_path, jobs)
    later = ShotJobs(jobs.journal, jobs.unit_id, jobs.spec_hash, since=time.time())
    with pytest.raises(UnknownJob):  # the next render: still unknown, still not re-sent
        run(make(server, "kling-lipsync"), request, tmp_path, later)
    assert server.count("submit") == 1 and len(server.created()) == 1 and states(jobs) == ["unknown"]


def test_kling_a_second_run_resumes_the_recorded_task_instead_of_paying_again(server, pieces, tmp_path):
    request = request_for(pieces, tmp_path, "kling")
    server.media_dir = request.video.parent
    server.outcomes = ["hold"]
    jobs = shot_jobs(tmp_path)
    with pytest.raises(TransientError, match="still running"):
        run(make(server, "kling-lipsync", timeout_s=0.3), request, tmp_path, jobs)
    server.release.set()
    later = ShotJobs(jobs.journal, jobs.unit_id, jobs.spec_hash, since=time.time())
    out, _ = run(make(server, "kling-lipsync"), request, tmp_path, later)
    check_synced(out, request)
    assert server.count("submit") == 1 and states(jobs) == ["done"]


def test_kling_needs_the_media_address():
    from pydantic import ValidationError

    from stages.backends.kling_lipsync import KlingLipSyncOptions

    with pytest.raises(ValidationError, match="media_base_url"):
        KlingLipSyncOptions()
    with pytest.raises(ValidationError, match="media_base_url"):
        KlingLipSyncOptions(media_base_url="build/lipsync")


# --- fal --------------------------------------------------------------------------------------

def test_fal_sends_the_model_input_with_the_media_inline_and_syncs_one_piece(server, pieces, tmp_path):
    b = make(server, "fal-lipsync", inputs={"active_speaker": True})
    request = request_for(pieces, tmp_path)
    out, jobs = run(b, request, tmp_path)
    check_synced(out, request)
    (job,) = server.created()
    body = dict(job.input)
    video, audio = body.pop("video_url"), body.pop("audio_url")
    assert body == {"model": "lipsync-2", "sync_mode": "cut_off", "active_speaker": True}
    assert video.startswith("data:video/mp4;base64,") and audio.startswith("data:audio/wav;base64,")
    assert base64.b64decode(video.split(",", 1)[1]) == request.video.read_bytes()
    assert base64.b64decode(audio.split(",", 1)[1]) == request.audio.read_bytes()
    assert job.model == "fal-ai/sync-lipsync/v2"
    (row,) = jobs.journal.of(jobs.unit_id)
    assert (row.state, row.job_id, row.billed_s) == ("done", job.id, round(request.duration_s, 4))
    assert b.provider() == "fal-ai/sync-lipsync/v2 on fal"


def test_fal_a_lost_submit_is_found_by_its_exact_input(server, pieces, tmp_path):
    server.faults.submit = ["drop-after"]
    request = request_for(pieces, tmp_path)
    out, jobs = run(make(server, "fal-lipsync"), request, tmp_path)
    check_synced(out, request)
    (job,) = server.created()
    assert states(jobs) == ["done"] and jobs.journal.of(jobs.unit_id)[0].job_id == job.id
    assert server.count("submit") == 1


def test_fal_options_keep_the_filled_fields_out_of_inputs():
    from pydantic import ValidationError

    from stages.backends.fal_lipsync import FalLipSyncOptions

    with pytest.raises(ValidationError, match=r"inputs \['sync_mode'\]"):
        FalLipSyncOptions(inputs={"sync_mode": "loop"})
