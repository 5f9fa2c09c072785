"""The /v1/videos backend and the images backend against a local server that speaks both protocols.

The fake keeps state like the real service: a job created by POST /v1/videos advances one step per
GET (queued -> in_progress -> completed), its content is a real mp4 made by ffmpeg, and scripted
plans make it fail, get blocked by moderation, expire, hold, or answer the download with a 500.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from stages.backends.base import (ImageBackend, ImageRequest, PermanentError, RejectedError, ShotRequest,
                                  TransientError, VideoBackend)
from stages.backends.openai_image import OpenAIImageBackend, nearest_size
from stages.backends.openai_videos import OpenAIVideosBackend, pick_seconds
from stages.core.media import probe, run_ffmpeg, video_validator
from stages.schema import ImageOptions, OpenAIVideosOptions

REPO = Path(__file__).resolve().parents[1]
KEY_ENV = "DRAMAFORGE_TEST_OPENAI_KEY"  # never set by a developer's shell
PROVIDER_SIZE = "144x256"  # what the fake "model" makes (small: tests stay fast)
FPS = 24


# --- the fake service ------------------------------------------------------------------------------

@dataclass
class Plan:
    """How one created job behaves. `polls`: the status each GET returns (the last one repeats)."""

    polls: list[str] = field(default_factory=lambda: ["in_progress", "completed"])
    error: dict | None = None  # the job's error object when it fails
    expires_at: int | None = None
    content: list[int] = field(default_factory=list)  # status of each download before the mp4 (e.g. [500])
    hold: threading.Event | None = None  # stay in_progress until set


class FakeService:
    def __init__(self, mp4: bytes):
        self.mp4 = mp4
        self.plans: list[Plan] = []  # one per create, in order; default: the happy path
        self.create_errors: list[tuple[int, dict, dict]] = []  # answers to the next creates, before any job
        self.image_replies: list = []
        self.jobs: dict[str, dict] = {}
        self.events: list[tuple[str, str]] = []  # ("create" | "get" | "content", job id)
        self.creates: list[dict] = []  # the form (or JSON) of each successful create
        self.image_requests: list[dict] = []
        self.probe = None  # called on each GET of a job: what the client's JobStore held then
        self.seen_on_get: list = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                form = parse_body(self.headers.get("Content-Type", ""), body)
                if self.path == "/v1/videos":
                    self.reply(*outer.create(form))
                elif self.path in ("/v1/images/generations", "/v1/images/edits"):
                    outer.image_requests.append({"path": self.path, "form": form})
                    self.reply(*outer.image_requests_reply())
                else:
                    self.reply(404, error("not_found", f"no route {self.path}"))

            def do_GET(self):
                path, _, query = self.path.partition("?")
                parts = path.strip("/").split("/")  # v1 videos ID [content]
                if path.startswith("/files/"):
                    self.reply(200, outer.png_file, {"Content-Type": "image/png"})
                elif parts[:2] == ["v1", "videos"] and len(parts) == 3:
                    self.reply(*outer.get(parts[2]))
                elif parts[:2] == ["v1", "videos"] and len(parts) == 4 and parts[3] == "content":
                    self.reply(*outer.content(parts[2], query))
                else:
                    self.reply(404, error("not_found", f"no route {self.path}"))

            def reply(self, status: int, data, headers: dict | None = None):
                if not isinstance(data, bytes):
                    data = json.dumps(data).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.png_file = b""
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    # the protocol

    def create(self, form: dict):
        with self.lock:
            if self.create_errors:
                return self.create_errors.pop(0)
            plan = self.plans.pop(0) if self.plans else Plan()
            job_id = f"video_{len(self.jobs) + 1}"
            self.jobs[job_id] = {"plan": plan, "gets": 0, "downloads": 0, "status": "queued", "form": form}
            self.creates.append(form)
            self.events.append(("create", job_id))
            return 200, self.video(job_id)

    def get(self, job_id: str):
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                return 404, error("video_not_found", f"Video with id '{job_id}' not found.")
            self.events.append(("get", job_id))
            plan = job["plan"]
            if plan.hold is not None and not plan.hold.is_set():
                job["status"] = "in_progress"
            else:
                job["status"] = plan.polls[min(job["gets"], len(plan.polls) - 1)]
                job["gets"] += 1
        if self.probe is not None:
            self.seen_on_get.append(self.probe())
        return 200, self.video(job_id)

    def content(self, job_id: str, query: str):
        with self.lock:
            job = self.jobs.get(job_id)
            self.events.append(("content", job_id))
            if job is None or job["status"] != "completed":
                return 404, error("video_not_found", "no content")
            assert query == "variant=video"
            job["downloads"] += 1
            if job["plan"].content:
                status = job["plan"].content.pop(0)
                return status, error("server_error" if status >= 500 else "gone", f"download answered {status}")
            return 200, self.mp4, {"Content-Type": "video/mp4"}

    def video(self, job_id: str) -> dict:
        job = self.jobs[job_id]
        status, plan = job["status"], job["plan"]
        return {"id": job_id, "object": "video", "created_at": 1_700_000_000, "model": job["form"].get("model"),
                "prompt": job["form"].get("prompt"), "seconds": job["form"].get("seconds", "4"),
                "size": job["form"].get("size", "720x1280"), "status": status,
                "progress": {"queued": 0, "in_progress": 50}.get(status, 100),
                "error": plan.error if status == "failed" else None,
                "expires_at": plan.expires_at if status == "completed" else None,
                "completed_at": 1_700_000_100 if status == "completed" else None}

    def image_requests_reply(self):
        reply = self.image_replies.pop(0)
        return reply

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self.events if k == kind)


def error(code: str, message: str) -> dict:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}


def parse_body(content_type: str, body: bytes) -> dict:
    """A JSON body, or a multipart form as {name: str | (filename, bytes)} (lists for `name[]`)."""
    if content_type.startswith("application/json"):
        return json.loads(body)
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    form: dict = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True)
        value = (part.get_filename(), data) if part.get_filename() else data.decode()
        if name.endswith("[]"):
            form.setdefault(name[:-2], []).append(value)
        else:
            form[name] = value
    return form


def png_bytes(width: int, height: int, colour=(200, 40, 40), mode: str = "RGB") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, (width, height), colour).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def provider_mp4(tmp_path_factory) -> bytes:
    """What the fake model makes: 1 s of testsrc at the provider size, with a sound track to drop."""
    out = tmp_path_factory.mktemp("provider") / "clip.mp4"
    w, h = PROVIDER_SIZE.split("x")
    run_ffmpeg(["-f", "lavfi", "-i", f"testsrc=size={w}x{h}:rate=30:duration=1", "-f", "lavfi",
                "-i", "sine=frequency=440:duration=1", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
                "-shortest", str(out)])
    return out.read_bytes()


@pytest.fixture
def fake(provider_mp4, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    f = FakeService(provider_mp4)
    yield f
    f.server.shutdown()
    f.server.server_close()


class Jobs:
    """An in-memory JobStore that remembers every put."""

    def __init__(self, job_id: str | None = None):
        self.job_id = job_id
        self.puts: list[str | None] = []

    def get(self) -> str | None:
        return self.job_id

    def put(self, job_id: str | None) -> None:
        self.puts.append(job_id)
        self.job_id = job_id


def backend(fake: FakeService, **kw) -> OpenAIVideosBackend:
    args = dict(base_url=fake.base_url, api_key_env=KEY_ENV, model="video-test", size=PROVIDER_SIZE,
                seconds=[1, 2], poll_s=0.001, timeout_s=120)
    return OpenAIVideosBackend(OpenAIVideosOptions(**{**args, **kw}))


def shot(duration_s: float = 0.75, **kw) -> ShotRequest:
    args = dict(shot_id="e1s1", prompt="A kettle steams in a small kitchen.", size="medium", camera="static",
                location="KITCHEN", time="DAY", action="Steam rises.", caption="", figures=(),
                duration_s=duration_s, width=100, height=150, fps=FPS, seed=1)
    return ShotRequest(**{**args, **kw})


def check_clip(path: Path, request: ShotRequest) -> None:
    """Exactly the request: size, fps, frame count (duration within a frame), H.264 yuv420p, no audio."""
    video_validator(width=request.width, height=request.height,
                    min_duration_s=request.duration_s - 1.0 / request.fps)(path)
    info = probe(path)
    assert (info.video_codec, info.pix_fmt, info.audio_codec) == ("h264", "yuv420p", None)
    assert info.fps == pytest.approx(request.fps)
    assert info.frames == round(request.duration_s * request.fps)
    assert abs(info.duration_s - request.duration_s) <= 1.0 / request.fps + 1e-6


# --- videos -------------------------------------------------------------------------------------------

def test_identity_needs_no_key_and_names_what_shapes_the_clip(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    b = OpenAIVideosBackend(OpenAIVideosOptions())
    assert isinstance(b, VideoBackend)
    assert (b.name, b.resumable, set(b.uses), b.concurrency) == ("openai-videos", True, {"keyframe"}, 4)
    assert b.identity() == {"engine": "openai-videos", "model": "sora-2", "base_url": "api.openai.com",
                            "size": "720x1280"}
    with pytest.raises(PermanentError, match="OPENAI_API_KEY"):  # OpenAI's own server without a key
        b.generate(shot(), Path("/nonexistent/out.mp4"), jobs=Jobs())


def test_registry_pickling_and_generate_shot_use_the_job_store(fake, tmp_path):
    import pickle

    from stages.backends.registry import make_image_backend, make_video_backend
    from stages.generate_shot import generate_shot
    from stages.schema import Backends

    opts = backend(fake).options
    b = make_video_backend(Backends(video="openai-videos", openai_videos=opts))
    assert isinstance(b, OpenAIVideosBackend)
    assert isinstance(make_image_backend(ImageOptions(kind="openai")), OpenAIImageBackend)
    b = pickle.loads(pickle.dumps(b))  # Dask ships backends to workers
    assert b.identity()["base_url"] == fake.base_url
    jobs = Jobs()
    result = generate_shot(shot(), b, tmp_path / "shots", jobs=jobs)
    check_clip(result.path, shot())
    assert jobs.puts == ["video_1", None] and fake.count("create") == 1
    assert [p.name for p in (tmp_path / "shots").iterdir()] == [result.path.name]  # no temp files left


def test_pick_seconds_takes_the_shortest_clip_that_covers_the_shot():
    assert pick_seconds([4, 8, 12], 3.2) == 4
    assert pick_seconds([12, 4, 8], 4.0) == 4
    assert pick_seconds([4, 8, 12], 4.01, fps=24) == 4  # within a frame: the last frame is held
    assert pick_seconds([4, 8, 12], 4.5) == 8
    assert pick_seconds([4, 8, 12], 30) == 12


def test_happy_path_creates_once_stores_the_job_before_polling_and_conforms(fake, tmp_path):
    jobs = Jobs()
    fake.probe = jobs.get
    request = shot(0.75, negative_prompt="text, watermark")
    out = tmp_path / "shot.mp4"
    backend(fake).generate(request, out, jobs=jobs)
    check_clip(out, request)  # 1 s of 144x256 at 30 fps -> 0.75 s of 100x150 at 24 fps
    assert fake.count("create") == 1
    (form,) = fake.creates
    assert form == {"prompt": "A kettle steams in a small kitchen.\nAvoid: text, watermark", "model": "video-test",
                    "seconds": "1", "size": PROVIDER_SIZE}
    # the server saw the create, and the store held its id when the first poll arrived
    assert fake.events[0] == ("create", "video_1") and fake.events[1] == ("get", "video_1")
    assert fake.seen_on_get[0] == "video_1"
    assert fake.count("content") == 1
    assert jobs.puts == ["video_1", None]  # cleared once the clip is made


def test_a_short_clip_is_padded_with_its_last_frame(fake, tmp_path):
    request = shot(1.5)  # the model was asked for 2 s but made 1 s
    out = tmp_path / "shot.mp4"
    backend(fake).generate(request, out)
    assert fake.creates[0]["seconds"] == "2"
    check_clip(out, request)


def test_keyframe_is_uploaded_as_a_png_of_the_provider_size_with_the_motion_prompt(fake, tmp_path):
    from PIL import Image

    key = tmp_path / "key.png"
    key.write_bytes(png_bytes(300, 200))  # landscape: must be fitted to the portrait job size
    request = shot(keyframe=key, motion_prompt="Slow push-in; steam curls.")
    backend(fake).generate(request, tmp_path / "shot.mp4", jobs=Jobs())
    (form,) = fake.creates
    assert form["prompt"] == "Slow push-in; steam curls."
    filename, data = form["input_reference"]
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as im:
        assert (f"{im.width}x{im.height}", im.mode) == (PROVIDER_SIZE, "RGB")
        assert im.getpixel((im.width // 2, im.height // 2)) == (200, 40, 40)
    check_clip(tmp_path / "shot.mp4", request)


def test_a_missing_keyframe_is_permanent_and_creates_nothing(fake, tmp_path):
    with pytest.raises(PermanentError, match="keyframe"):
        backend(fake).generate(shot(keyframe=tmp_path / "gone.png"), tmp_path / "shot.mp4", jobs=Jobs())
    assert fake.count("create") == 0


def test_failed_job_is_permanent_and_cleared(fake, tmp_path):
    fake.plans.append(Plan(polls=["in_progress", "failed"],
                           error={"code": "invalid_input", "message": "The size 144x256 is not supported."}))
    jobs = Jobs()
    with pytest.raises(PermanentError, match="not supported"):
        backend(fake).generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    assert jobs.puts == ["video_1", None] and jobs.get() is None
    assert fake.count("content") == 0


def test_failed_with_a_server_error_is_transient_and_a_retry_creates_a_new_job(fake, tmp_path):
    fake.plans.append(Plan(polls=["failed"], error={"code": "server_error", "message": "Internal error."}))
    jobs = Jobs()
    b = backend(fake)
    with pytest.raises(TransientError, match="Internal error"):
        b.generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    assert jobs.get() is None
    b.generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    assert fake.count("create") == 2
    check_clip(tmp_path / "shot.mp4", shot())


@pytest.mark.parametrize("err", [
    {"code": "moderation_blocked", "message": "Your request was blocked by our moderation system."},
    {"code": "generation_failed", "message": "The output violates our content policy."},
], ids=["code", "message"])
def test_moderation_is_rejected_and_cleared(fake, tmp_path, err):
    fake.plans.append(Plan(polls=["in_progress", "failed"], error=err))
    jobs = Jobs()
    with pytest.raises(RejectedError) as info:
        backend(fake).generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    assert err["message"] in str(info.value)
    assert jobs.get() is None


def test_a_prompt_refused_at_create_is_rejected(fake, tmp_path):
    fake.create_errors.append((400, error("moderation_blocked", "Your prompt was flagged."), {}))
    with pytest.raises(RejectedError, match="flagged"):
        backend(fake).generate(shot(), tmp_path / "shot.mp4", jobs=Jobs())


@pytest.mark.parametrize("how", ["status", "expires_at", "download_410"])
def test_an_expired_job_is_recreated_once(fake, tmp_path, how):
    first = {"status": Plan(polls=["in_progress", "expired"]),
             "expires_at": Plan(expires_at=int(time.time()) - 60),
             "download_410": Plan(content=[410])}[how]
    fake.plans += [first, Plan()]
    jobs = Jobs()
    backend(fake).generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    assert fake.count("create") == 2
    assert jobs.puts == ["video_1", None, "video_2", None]
    check_clip(tmp_path / "shot.mp4", shot())


def test_a_job_that_expires_twice_is_transient_not_a_loop(fake, tmp_path):
    fake.plans += [Plan(polls=["expired"]), Plan(polls=["expired"]), Plan()]
    jobs = Jobs()
    with pytest.raises(TransientError, match="expired again"):
        backend(fake).generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    assert fake.count("create") == 2 and jobs.get() is None


def test_download_500_is_transient_keeps_the_job_and_the_retry_only_downloads(fake, tmp_path):
    fake.plans.append(Plan(content=[500]))
    jobs = Jobs()
    b = backend(fake)
    with pytest.raises(TransientError, match="500"):
        b.generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    assert jobs.get() == "video_1"
    assert not (tmp_path / "shot.mp4").exists() or (tmp_path / "shot.mp4").stat().st_size == 0
    b.generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    assert fake.count("create") == 1 and fake.jobs["video_1"]["downloads"] == 2
    check_clip(tmp_path / "shot.mp4", shot())
    assert list(tmp_path.glob(".*download*")) == []  # the temp download is gone


def test_a_corrupt_download_is_transient_and_keeps_the_job(fake, tmp_path):
    fake.mp4 = b"<html>proxy error</html>"
    jobs = Jobs()
    with pytest.raises(TransientError, match="cannot be decoded"):
        backend(fake).generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    assert jobs.get() == "video_1"


def test_429_on_create_is_transient_with_the_retry_after_hint(fake, tmp_path):
    fake.create_errors.append((429, error("rate_limit_exceeded", "Slow down."), {"Retry-After": "7"}))
    jobs = Jobs()
    with pytest.raises(TransientError, match="429") as info:
        backend(fake).generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    assert info.value.retry_after_s == 7
    assert jobs.puts == [] and fake.count("create") == 0


def test_a_stored_job_is_resumed_without_a_create(fake, tmp_path):
    backend(fake).generate(shot(), tmp_path / "a.mp4", jobs=Jobs())  # video_1, completed
    jobs = Jobs("video_1")
    backend(fake).generate(shot(), tmp_path / "b.mp4", jobs=jobs)
    assert fake.count("create") == 1
    check_clip(tmp_path / "b.mp4", shot())


@pytest.mark.parametrize("stored", ["unknown", "failed"])
def test_a_stored_job_that_cannot_deliver_is_replaced(fake, tmp_path, stored):
    jobs = Jobs("video_404")
    if stored == "failed":
        fake.plans.append(Plan(polls=["failed"], error={"code": "server_error", "message": "boom"}))
        with pytest.raises(TransientError):
            backend(fake).generate(shot(), tmp_path / "a.mp4", jobs=Jobs())
        jobs = Jobs("video_1")
    backend(fake).generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    assert fake.count("create") == (2 if stored == "failed" else 1)
    assert jobs.puts[0] is None  # cleared before the new job was created
    check_clip(tmp_path / "shot.mp4", shot())


def test_still_running_at_timeout_is_transient_and_a_rerun_resumes(fake, tmp_path):
    hold = threading.Event()
    fake.plans.append(Plan(hold=hold))
    jobs = Jobs()
    with pytest.raises(TransientError, match="still running after .* resume with rerun"):
        backend(fake, timeout_s=0.05).generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    assert jobs.get() == "video_1"
    hold.set()
    backend(fake).generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    assert fake.count("create") == 1
    check_clip(tmp_path / "shot.mp4", shot())


def test_a_poll_error_keeps_the_job(fake, tmp_path):
    jobs = Jobs()
    b = backend(fake)
    real = fake.get
    calls = []

    def flaky(job_id):
        calls.append(job_id)
        return (503, error("server_error", "busy")) if len(calls) == 1 else real(job_id)

    fake.get = flaky
    with pytest.raises(TransientError, match="503"):
        b.generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    assert jobs.get() == "video_1"
    b.generate(shot(), tmp_path / "shot.mp4", jobs=jobs)
    assert fake.count("create") == 1


CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from stages.backends.base import ShotRequest
    from stages.backends.openai_videos import OpenAIVideosBackend
    from stages.core.ledger import Ledger, LedgerJobs
    from stages.schema import OpenAIVideosOptions

    base_url, ledger_path, out, key_env = sys.argv[1:5]
    ledger = Ledger(Path(ledger_path))
    ledger.start("e1s1", kind="shot", episode=1, spec_hash="h1")
    backend = OpenAIVideosBackend(OpenAIVideosOptions(base_url=base_url, api_key_env=key_env, model="video-test",
                                                      size="144x256", seconds=[1, 2], poll_s=0.01))
    request = ShotRequest(shot_id="e1s1", prompt="A kettle.", size="medium", camera="static", location="K",
                          time="DAY", action="", caption="", figures=(), duration_s=0.75, width=100, height=150,
                          fps=24, seed=1)
    backend.generate(request, Path(out), jobs=LedgerJobs(ledger, "e1s1"))
    print("finished")
""")


def test_a_killed_render_resumes_the_same_job_from_the_ledger(fake, tmp_path):
    from stages.core.ledger import Ledger, LedgerJobs

    hold = threading.Event()
    fake.plans.append(Plan(hold=hold))
    ledger_path, out = tmp_path / "ledger.sqlite", tmp_path / "shot.mp4"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    child_log = tmp_path / "child.log"
    with open(child_log, "wb") as logf:
        child = subprocess.Popen([sys.executable, "-c", CHILD, fake.base_url, str(ledger_path), str(out), KEY_ENV],
                                 cwd=tmp_path, env=env, stdout=logf, stderr=subprocess.STDOUT)
    try:
        for _ in range(6000):  # until the child has polled its job at least once (or died)
            if fake.count("get") >= 1 or child.poll() is not None:
                break
            time.sleep(0.01)
        assert child.poll() is None, child_log.read_text()
        assert fake.count("get") >= 1
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not out.exists()
    ledger = Ledger(ledger_path)
    assert ledger.get("e1s1").job_id == "video_1"  # recorded before the first poll, survived the kill
    assert ledger.start("e1s1", kind="shot", episode=1, spec_hash="h1") == 2  # the rerun: same spec
    hold.set()
    backend(fake).generate(shot(0.75, prompt="A kettle."), out, jobs=LedgerJobs(ledger, "e1s1"))
    assert fake.count("create") == 1
    check_clip(out, shot(0.75))
    assert ledger.get("e1s1").job_id is None


# --- images -------------------------------------------------------------------------------------------

def images(fake: FakeService, **kw) -> OpenAIImageBackend:
    return OpenAIImageBackend(ImageOptions(kind="openai", base_url=fake.base_url, api_key_env=KEY_ENV, **kw))


def image_request(**kw) -> ImageRequest:
    args = dict(purpose="keyframe", prompt="Ann at the kitchen window, morning light.", width=90, height=160, seed=1)
    return ImageRequest(**{**args, **kw})


def b64_reply(width: int, height: int, mode: str = "RGB", colour=(10, 120, 200)):
    data = base64.b64encode(png_bytes(width, height, colour, mode)).decode()
    return 200, {"created": 1, "data": [{"b64_json": data}]}


def check_png(path: Path, width: int, height: int):
    from PIL import Image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        assert (im.size, im.mode) == ((width, height), "RGB")
        return im.getpixel((width // 2, height // 2))


def test_image_identity_and_nearest_sizes(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    b = OpenAIImageBackend(ImageOptions(kind="openai"))
    assert isinstance(b, ImageBackend)
    assert b.identity() == {"engine": "openai-image", "model": "gpt-image-1", "base_url": "api.openai.com"}
    assert nearest_size("gpt-image-1", 1080, 1920) == "1024x1536"
    assert nearest_size("gpt-image-1", 1920, 1080) == "1536x1024"
    assert nearest_size("gpt-image-1", 512, 512) == "1024x1024"
    assert nearest_size("dall-e-3", 1080, 1920) == "1024x1792"


def test_generate_without_references(fake, tmp_path):
    fake.image_replies.append(b64_reply(64, 96))
    out = tmp_path / "key.png"
    images(fake).generate_image(image_request(negative_prompt="blurry"), out)
    (req,) = fake.image_requests
    assert req["path"] == "/v1/images/generations"
    assert req["form"] == {"model": "gpt-image-1", "prompt": "Ann at the kitchen window, morning light.\nAvoid: blurry",
                           "size": "1024x1536", "n": 1}
    assert check_png(out, 90, 160) == (10, 120, 200)


def test_edit_with_references_uploads_every_sheet(fake, tmp_path):
    refs = []
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0)]):
        p = tmp_path / f"ann_{i}.png"
        p.write_bytes(png_bytes(32, 48, colour))
        refs.append(p)
    fake.image_replies.append(b64_reply(120, 80, "RGBA", (0, 0, 0, 0)))  # transparent: flattened onto white
    out = tmp_path / "key.png"
    images(fake, model="gpt-image-test").generate_image(image_request(references=tuple(refs), width=96, height=96),
                                                        out)
    (req,) = fake.image_requests
    assert req["path"] == "/v1/images/edits"
    form = req["form"]
    assert (form["model"], form["prompt"], form["size"]) == ("gpt-image-test", image_request().prompt, "1024x1024")
    assert [name for name, _ in form["image"]] == ["ann_0.png", "ann_1.png"]
    assert [data for _, data in form["image"]] == [p.read_bytes() for p in refs]
    assert check_png(out, 96, 96) == (255, 255, 255)


def test_an_image_given_by_url_is_downloaded(fake, tmp_path):
    fake.png_file = png_bytes(50, 50, (1, 2, 3))
    fake.image_replies.append((200, {"created": 1, "data": [{"url": fake.base_url[:-3] + "/files/a.png"}]}))
    images(fake, model="dall-e-3").generate_image(image_request(), tmp_path / "key.png")
    assert fake.image_requests[0]["form"]["size"] == "1024x1792"
    assert check_png(tmp_path / "key.png", 90, 160) == (1, 2, 3)


@pytest.mark.parametrize("status, code, message, cls", [
    (400, "moderation_blocked", "Your request was rejected by the safety system.", RejectedError),
    (429, "rate_limit_exceeded", "Too many requests.", TransientError),
    (400, "invalid_value", "Invalid size.", PermanentError),
])
def test_image_errors_are_mapped(fake, tmp_path, status, code, message, cls):
    fake.image_replies.append((status, error(code, message)))
    with pytest.raises(cls, match=message.split()[0]):
        images(fake).generate_image(image_request(), tmp_path / "key.png")


def test_an_image_reply_without_an_image_is_transient(fake, tmp_path):
    fake.image_replies.append((200, {"created": 1, "data": []}))
    with pytest.raises(TransientError, match="no image"):
        images(fake).generate_image(image_request(), tmp_path / "key.png")


def test_a_missing_reference_is_permanent(fake, tmp_path):
    with pytest.raises(PermanentError, match="reference image"):
        images(fake).generate_image(image_request(references=(tmp_path / "gone.png",)), tmp_path / "key.png")
    assert fake.image_requests == []
