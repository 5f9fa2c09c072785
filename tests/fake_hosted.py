"""A local server that speaks fal's queue API (+ its Platform API request list) and Replicate's
predictions API as their docs describe them, with scripted faults, for the hosted backend tests; the
direct providers' protocols (`tests/fakes/<provider>.py`) are served on the same port and job store.

It keeps state like the services: a job advances one step per status poll (queued -> running ->
done), its result is a real mp4 made by ffmpeg, and it bills each job it creates (seconds of the
input's duration x the price) so tests can compare what the provider would charge with what
dramaforge reports. Faults are consumed in order per endpoint:

- submit: "429", "500" (refused before anything is made), "500-after" (made, then 500), "html-after"
  (made, then a 200 HTML page), "drop-after" (made, then the connection closes), "hang-after" (made,
  then no answer for `hang_s`), "hold-after" (made, then no answer until `release` is set)
- status / result / listing: "429", "500", "403", "html", "drop", "hang"
- download: "500", "404", "garbage" (a body that is not a video)
A job's `outcome` (from `outcomes`, in creation order): "ok", "fail-infra", "fail-model", "refuse",
"cancel", "vanish", "expire" (its file answers 404), "hold" (runs until `release` is set).
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAL_KEY_ENV = "DRAMAFORGE_TEST_FAL_KEY"
REPLICATE_KEY_ENV = "DRAMAFORGE_TEST_REPLICATE_TOKEN"
FAL_KEY, REPLICATE_TOKEN = "fal-test:secret", "r8_test"


@dataclass
class Job:
    id: str
    model: str
    input: dict
    created_at: float
    outcome: str = "ok"
    polls: int = 0
    state: str = "queued"
    billed: float = 0.0
    downloads: int = 0
    fetched_at: float | None = None  # when its clip was first downloaded: the job is out until then
    cancelled: bool = False
    body: dict = field(default_factory=dict)  # the request as the provider got it (a direct protocol's own shape)
    headers: dict = field(default_factory=dict)  # the create request's headers
    result: bytes | None = None  # its own clip (a lip-sync job's: the video it was sent, marked); else `mp4`


@dataclass
class Faults:
    submit: list[str] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    result: list[str] = field(default_factory=list)
    listing: list[str] = field(default_factory=list)
    download: list[str] = field(default_factory=list)

    def next(self, endpoint: str) -> str | None:
        queue = getattr(self, endpoint)
        return queue.pop(0) if queue else None


class FakeHosted:
    """Both services on one port: fal under /fal/queue and /fal/api, Replicate under /replicate/v1."""

    def __init__(self, mp4: bytes, *, price_per_second: float = 0.05, price_per_request: float = 0.0,
                 steps: int = 2, hang_s: float = 3.0):
        self.mp4, self.price_per_second, self.price_per_request = mp4, price_per_second, price_per_request
        self.steps, self.hang_s = steps, hang_s  # polls before a job is done; how long "hang" waits
        self.faults = Faults()
        self.outcomes: list[str] = []
        self.jobs: dict[str, Job] = {}
        self.calls: list[tuple[str, str]] = []  # (endpoint, job id or path)
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.list_has_payloads = True  # fal's request list carries json_input
        self.status_hides_errors = False  # a fal app whose status says COMPLETED, its error only in the result
        self.clip_for = None  # a test's clip for a job's input (a seed's own picture), else `mp4` for all
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                outer.route(self, "POST")

            def do_GET(self):
                outer.route(self, "GET")

            def do_PUT(self):
                outer.route(self, "PUT")

            def do_DELETE(self):
                outer.route(self, "DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    # --- what tests read ----------------------------------------------------------------------

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def fal_queue(self) -> str:
        return f"{self.base}/fal/queue"

    @property
    def fal_api(self) -> str:
        return f"{self.base}/fal/api"

    @property
    def replicate_url(self) -> str:
        return f"{self.base}/replicate/v1"

    def count(self, endpoint: str) -> int:
        return sum(1 for e, _ in self.calls if e == endpoint)

    def created(self) -> list[Job]:
        return sorted(self.jobs.values(), key=lambda j: j.created_at)

    def billed(self) -> float:
        return round(sum(j.billed for j in self.jobs.values()), 4)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    # --- the job store ------------------------------------------------------------------------

    def create(self, model: str, body: dict, prefix: str, *, raw: dict | None = None,
               headers: dict | None = None, result: bytes | None = None) -> Job:
        """A new job. `body`: its input as the tests read it (`prompt`, `duration`); `raw`: the request
        as sent, for a protocol whose body is shaped otherwise."""
        with self.lock:
            job_id = f"{prefix}{len(self.jobs) + 1:04d}"
            outcome = self.outcomes.pop(0) if self.outcomes else "ok"
            job = Job(job_id, model, body, time.time(), outcome, body=raw if raw is not None else body,
                      headers=dict(headers or {}), result=result if result is not None or self.clip_for is None
                      else self.clip_for(body))
            seconds = _seconds(body)
            job.billed = round(seconds * self.price_per_second + self.price_per_request, 4)
            self.jobs[job_id] = job
            return job

    def advance(self, job: Job) -> None:
        """One status look: queued -> running -> the outcome."""
        with self.lock:
            job.polls += 1
            if job.cancelled or job.state in ("done", "failed", "cancelled", "vanished"):
                return
            if job.outcome == "hold" and not self.release.is_set():
                job.state = "running"
                return
            if job.polls < self.steps:
                job.state = "queued" if job.polls == 1 else "running"
                return
            job.state = {"ok": "done", "hold": "done", "expire": "done", "fail-infra": "failed",
                         "fail-model": "failed", "refuse": "failed", "cancel": "cancelled",
                         "vanish": "vanished"}[job.outcome]

    # --- HTTP -----------------------------------------------------------------------------------

    def route(self, h: BaseHTTPRequestHandler, method: str) -> None:
        path, _, query = h.path.partition("?")
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        if path.startswith("/files/"):
            return self.download(h, path)
        from fakes import PROTOCOLS
        from fakes_lipsync import PROTOCOLS as LIPSYNC
        from fakes_tts import PROTOCOLS as SPEECH

        for name, proto in {**PROTOCOLS, **LIPSYNC, **SPEECH}.items():
            if path.startswith(proto.PREFIX + "/"):
                self.calls.append(("http", f"{method} {path}"))
                return proto.route(self, h, method, path[len(proto.PREFIX):], urllib.parse.parse_qs(query), raw)
        if path.startswith("/fal/"):
            if h.headers.get("Authorization") != f"Key {FAL_KEY}":
                return _json(h, 401, {"detail": "Invalid key"})
            return self.fal(h, method, path[len("/fal"):], urllib.parse.parse_qs(query), raw)
        if path.startswith("/replicate/v1/"):
            if h.headers.get("Authorization") != f"Bearer {REPLICATE_TOKEN}":
                return _json(h, 401, {"title": "Unauthenticated", "detail": "You did not pass a valid "
                                                                          "authentication token", "status": 401})
            return self.replicate(h, method, path[len("/replicate/v1"):], urllib.parse.parse_qs(query), raw)
        _json(h, 404, {"detail": f"no route {path}"})

    def fault(self, h, kind: str | None, after=None) -> bool:
        """Answer with the fault `kind` (True), or do nothing (False). `after`: commit first."""
        if kind is None:
            return False
        if kind.endswith("-after") and after is not None:
            after()
            kind = kind[:-len("-after")]
        if kind == "429":
            _json(h, 429, {"detail": "Request was throttled. Your rate limit resets in ~1s."}, {"Retry-After": "0"})
        elif kind == "500":
            _json(h, 500, {"detail": "Internal server error"})
        elif kind == "403":
            _json(h, 403, {"detail": "This key cannot use the Platform API"})
        elif kind == "html":
            _raw(h, 200, b"<html><body><h1>502 Bad Gateway</h1>nginx</body></html>", "text/html")
        elif kind == "drop":
            h.close_connection = True
            h.connection.shutdown(2)
        elif kind == "hang":
            time.sleep(self.hang_s)
            h.close_connection = True
            h.connection.shutdown(2)
        elif kind == "hold":
            self.release.wait(60)
            h.close_connection = True
            h.connection.shutdown(2)
        else:
            raise ValueError(f"unknown fault {kind}")
        return True

    def fal(self, h, method: str, path: str, query: dict, raw: bytes) -> None:
        m = re.fullmatch(r"/queue/([\w.-]+/[\w.-]+)/requests/([\w-]+)(/status|/cancel)?", path)
        if method == "POST" and path.startswith("/queue/") and not m:
            model = path[len("/queue/"):]
            body = json.loads(raw or b"{}")
            self.calls.append(("submit", model))
            made = []
            if self.fault(h, self.faults.next("submit"), after=lambda: made.append(self.create(model, body, "fal-"))):
                return
            job = self.create(model, body, "fal-")
            app = "/".join(model.split("/")[:2])
            base = f"{self.fal_queue}/{app}/requests/{job.id}"
            return _json(h, 200, {"request_id": job.id, "response_url": base, "status_url": f"{base}/status",
                                  "cancel_url": f"{base}/cancel", "status": "IN_QUEUE", "queue_position": 0})
        if m:
            app, job_id, tail = m.groups()
            job = self.jobs.get(job_id)
            if tail == "/status" and method == "GET":
                self.calls.append(("status", job_id))
                if self.fault(h, self.faults.next("status")):
                    return
                if job is None or job.state == "vanished" or not job.model.startswith(app):
                    return _json(h, 404, {"detail": "Request not found"})
                self.advance(job)
                if job.state == "vanished":
                    return _json(h, 404, {"detail": "Request not found"})
                if job.state == "queued":
                    return _json(h, 202, {"status": "IN_QUEUE", "queue_position": 0, "request_id": job.id})
                if job.state == "running":
                    return _json(h, 202, {"status": "IN_PROGRESS", "logs": [], "request_id": job.id})
                done = {"status": "COMPLETED", "logs": [], "metrics": {"inference_time": 1.0}, "request_id": job.id}
                if job.state == "failed" and not self.status_hides_errors:
                    done.update(_FAL_ERRORS[job.outcome])
                if job.state == "cancelled":  # fal has no CANCELED state: a cancelled request completes with an error
                    done.update({"error": "Request was cancelled", "error_type": "request_cancelled"})
                return _json(h, 200, done)
            if tail == "/cancel" and method == "PUT":
                self.calls.append(("cancel", job_id))
                if job is None:
                    return _json(h, 404, {"status": "NOT_FOUND"})
                if job.state in ("done", "failed"):
                    return _json(h, 400, {"status": "ALREADY_COMPLETED"})
                job.cancelled, job.state = True, "cancelled"
                return _json(h, 202, {"status": "CANCELLATION_REQUESTED"})
            if tail is None and method == "GET":
                self.calls.append(("result", job_id))
                if self.fault(h, self.faults.next("result")):
                    return
                if job is None or job.state == "vanished":
                    return _json(h, 404, {"detail": "Request not found"})
                if job.state in ("queued", "running"):
                    return _json(h, 400, {"detail": "Request is still in progress"})
                if job.state == "failed":
                    status = 422 if job.outcome == "fail-model" else 500
                    return _json(h, status, {"detail": _FAL_ERRORS[job.outcome]["error"]},
                                 {"X-Fal-Error-Type": _FAL_ERRORS[job.outcome]["error_type"]})
                return _json(h, 200, {"video": {"url": f"{self.base}/files/{job.id}.mp4", "content_type": "video/mp4",
                                                "file_name": f"{job.id}.mp4", "file_size": len(self.mp4)},
                                      "seed": job.input.get("seed")})
        if method == "GET" and path == "/api/models/requests/by-endpoint":
            self.calls.append(("list", query.get("endpoint_id", [""])[0]))
            if self.fault(h, self.faults.next("listing")):
                return
            start = _iso(query.get("start", ["1970-01-01T00:00:00Z"])[0])
            items = [{"request_id": j.id, "endpoint_id": j.model, "sent_at": _stamp(j.created_at),
                      "status_code": 200 if j.state == "done" else None,
                      **({"json_input": j.input} if self.list_has_payloads else {})}
                     for j in reversed(self.created()) if j.model == query.get("endpoint_id", [""])[0]
                     and j.created_at >= start and j.id.startswith("fal-")]
            return _json(h, 200, {"items": items, "next_cursor": None, "has_more": False})
        _json(h, 404, {"detail": f"no route {method} {path}"})

    def replicate(self, h, method: str, path: str, query: dict, raw: bytes) -> None:
        create = re.fullmatch(r"/(models|deployments)/([\w.-]+/[\w.-]+)/predictions", path)
        if method == "POST" and (create or path == "/predictions"):
            body = json.loads(raw or b"{}")
            model = create.group(2) if create else body.get("version", "")
            if "input" not in body or (path == "/predictions" and not body.get("version")):
                return _json(h, 422, {"title": "Invalid", "detail": "input and version are required", "status": 422})
            self.calls.append(("submit", model))
            if self.fault(h, self.faults.next("submit"),
                          after=lambda: self.create(model, body["input"], "rp")):
                return
            job = self.create(model, body["input"], "rp")
            return _json(h, 201, self.prediction(job))
        m = re.fullmatch(r"/predictions/([\w-]+)(/cancel)?", path)
        if m:
            job = self.jobs.get(m.group(1))
            if m.group(2) and method == "POST":
                self.calls.append(("cancel", m.group(1)))
                if job is None:
                    return _json(h, 404, {"detail": "Not found."})
                if job.state not in ("done", "failed"):
                    job.cancelled, job.state = True, "cancelled"
                return _json(h, 200, self.prediction(job))
            if method == "GET":
                self.calls.append(("status", m.group(1)))
                if self.fault(h, self.faults.next("status")):
                    return
                if job is None or job.state == "vanished":
                    return _json(h, 404, {"detail": "Not found."})
                self.advance(job)
                if job.state == "vanished":
                    return _json(h, 404, {"detail": "Not found."})
                return _json(h, 200, self.prediction(job))
        if method == "GET" and path == "/predictions":
            self.calls.append(("list", ""))
            if self.fault(h, self.faults.next("listing")):
                return
            after = _iso(query.get("created_after", ["1970-01-01T00:00:00Z"])[0])
            jobs = [j for j in reversed(self.created()) if j.id.startswith("rp") and j.created_at >= after]
            page, per = int(query.get("page", ["0"])[0]), 2  # small pages: the client must follow `next`
            rest = jobs[page * per:(page + 1) * per]
            nxt = None
            if (page + 1) * per < len(jobs):
                q = urllib.parse.urlencode({"created_after": query["created_after"][0], "page": page + 1})
                nxt = f"{self.replicate_url}/predictions?{q}"
            return _json(h, 200, {"next": nxt, "previous": None, "results": [self.prediction(j) for j in rest]})
        if method == "POST" and path == "/files":
            self.calls.append(("upload", ""))
            return _json(h, 201, {"id": "file1", "urls": {"get": f"{self.replicate_url}/files/file1"},
                                  "size": len(raw), "content_type": "image/jpeg"})
        _json(h, 404, {"detail": f"no route {method} {path}"})

    def prediction(self, job: Job) -> dict:
        status = {"queued": "starting", "running": "processing", "done": "succeeded", "failed": "failed",
                  "cancelled": "canceled"}[job.state]
        error = {"fail-infra": "CUDA error: out of memory", "fail-model": "Prediction failed",
                 "refuse": "The input or output was flagged as sensitive (E005)"}.get(job.outcome) \
            if job.state == "failed" else None
        return {"id": job.id, "model": job.model, "version": "hidden", "input": job.input,
                "output": f"{self.base}/files/{job.id}.mp4" if job.state == "done" else None,
                "error": error, "status": status, "data_removed": False, "source": "api",
                "created_at": _stamp(job.created_at), "logs": "",
                "urls": {"get": f"{self.replicate_url}/predictions/{job.id}",
                         "cancel": f"{self.replicate_url}/predictions/{job.id}/cancel",
                         "web": f"https://replicate.com/p/{job.id}"}}

    def download(self, h, path: str) -> None:
        job_id = path.rsplit("/", 1)[-1].removesuffix(".mp4")
        job = self.jobs.get(job_id)
        self.calls.append(("download", job_id))
        fault = self.faults.next("download")
        if job is None or job.outcome == "expire" or fault == "404":
            return _raw(h, 404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
        if fault == "500":
            return _json(h, 500, {"detail": "storage error"})
        job.downloads += 1
        job.fetched_at = job.fetched_at or time.time()
        _raw(h, 200, b"\x00\x00\x00\x18ftypmp42 not a video at all" if fault == "garbage" else job.result or self.mp4,
             "video/mp4")


_FAL_ERRORS = {
    "fail-infra": {"error": "Runner disconnected", "error_type": "runner_disconnected"},
    "fail-model": {"error": "Unprocessable: duration must be one of 5, 10", "error_type": "validation_error"},
    "refuse": {"error": "The content was flagged by the safety checker (content_policy_violation)",
               "error_type": "content_policy_violation"},
}


def _seconds(body: dict) -> float:
    """What the provider bills a job for: its requested duration ("5", "5s" or 5)."""
    value = body.get("duration")
    if value is None:
        return 0.0
    return float(str(value).rstrip("s"))


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def _iso(text: str) -> float:
    import calendar

    text = text.rstrip("Z").split(".")[0]
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))


def _json(h, status: int, data: dict, headers: dict | None = None) -> None:
    _raw(h, status, json.dumps(data).encode(), "application/json", headers)


def _raw(h, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(body)))
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(body)
