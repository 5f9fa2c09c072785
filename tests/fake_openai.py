"""A local server that speaks OpenAI's /v1/videos and /v1/images protocols, for the backend tests.

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
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from stages.core.media import run_ffmpeg

KEY_ENV = "DRAMAFORGE_TEST_OPENAI_KEY"  # never set by a developer's shell
PROVIDER_SIZE = "144x256"  # what the fake "model" makes (small: tests stay fast)


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
        self.lost_creates = 0  # the next creates make their job, then answer 500 (the answer is lost)
        self.create_headers: list[dict] = []
        self.image_replies: list = []
        self.jobs: dict[str, dict] = {}
        self.events: list[tuple[str, str]] = []  # ("create" | "get" | "content", job id)
        self.creates: list[dict] = []  # the form (or JSON) of each successful create
        self.image_requests: list[dict] = []
        self.probe = None  # called on each GET of a job: what the client's job journal held then
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
                    outer.create_headers.append(dict(self.headers))
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
            if self.lost_creates:
                self.lost_creates -= 1
                return 500, error("server_error", "upstream timed out")
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


def b64_reply(width: int, height: int, mode: str = "RGB", colour=(10, 120, 200)):
    data = base64.b64encode(png_bytes(width, height, colour, mode)).decode()
    return 200, {"created": 1, "data": [{"b64_json": data}]}
