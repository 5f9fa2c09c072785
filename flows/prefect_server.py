"""The local Prefect server that renders share, so a render does not pay for starting one.

Prefect's default, with no PREFECT_API_URL, is a temporary server per process: every render would
spend 5-8 s (and as many CPU-s) importing and starting it, and the same again in the render process
importing the server's code only to launch it. Instead the first render starts one server for this
PREFECT_HOME, in its own session (not tied to the render: `flows.lifetime` spares it), and records
it in `PREFECT_HOME/dramaforge-server.json`; later renders find it alive and connect in milliseconds.
It stops by itself after `DRAMAFORGE_PREFECT_SERVER_IDLE_S` seconds (default 900) without a
request or an open connection.

A fresh home's database starts as a copy of a template, `<venv>/share/dramaforge/prefect-<version>.db`
(or `DRAMAFORGE_PREFECT_TEMPLATES`): Prefect's 111 migrations and its block registration cost 6-7 s
on a first render otherwise. `make install` prepares it (`python -m flows.prefect_server --prepare`);
the first server that migrates a database itself saves one.

A server the user runs (PREFECT_API_URL, in the environment or the Prefect profile) is always used
instead. `DRAMAFORGE_PREFECT_SERVER_IDLE_S=0` restores Prefect's temporary server per render.

Run as `python -m flows.prefect_server PORT IDLE_S`: the server itself (Prefect's API app, with only
the services a temporary server runs, behind a wrapper that notices idleness).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable

from stages.core.errors import RenderError

IDLE_ENV = "DRAMAFORGE_PREFECT_SERVER_IDLE_S"
TEMPLATES_ENV = "DRAMAFORGE_PREFECT_TEMPLATES"
DEFAULT_IDLE_S = 900
RECORD, LOCK, LOG = "dramaforge-server.json", "dramaforge-server.lock", "dramaforge-server.log"


def idle_s() -> int:
    raw = os.environ.get(IDLE_ENV, str(DEFAULT_IDLE_S))
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        from stages.core.errors import InputError

        raise InputError(f"{IDLE_ENV}={raw!r} is not a number of seconds",
                         hint=f"e.g. {IDLE_ENV}=900 (0: a temporary Prefect server for each render)")
    return value


def connect(while_starting: Callable[[], object] = lambda: None) -> tuple[str | None, bool]:
    """Point this process's Prefect at a server: the user's own, else the shared local one (started
    when none is alive). Returns (its API address, or None for a temporary one; whether it is the user's).
    `while_starting` is called while this process starts the server (4-10 s), and only then."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url:  # the user's server (environment or profile): theirs to run
        return settings.api.url, True
    idle = idle_s()
    if not idle:
        return None, False
    home = Path(settings.home).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120"))
    url = alive(home, wait_s=timeout)
    if url is None:
        from filelock import FileLock

        with FileLock(str(home / LOCK), timeout=timeout + 30):  # two renders at once start one server
            url = alive(home, wait_s=timeout) or _start(home, idle, timeout, while_starting)
    os.environ["PREFECT_API_URL"] = url
    return url, False


def alive(home: Path, *, wait_s: float = 0.0) -> str | None:
    """The recorded server's API address, if it runs this Prefect version and answers. A server that
    runs but is slow to answer (a loaded machine) is waited for, up to `wait_s`, never replaced by a
    second one; one that never answers is stopped."""
    record = _record(home)
    if record is None:
        return None
    if record.get("prefect") != _prefect_version():  # upgraded since: a new server, the old one stopped
        stop(home)
        return None
    deadline = time.monotonic() + wait_s
    while _running(record):
        if _healthy(record["url"], timeout_s=5.0):
            return record["url"]
        if time.monotonic() > deadline:
            stop(home)
            break
        time.sleep(0.2)
    return None


def stop(home: Path) -> bool:
    """Stop the recorded server, if it runs (for tests and upgrades); True if one was stopped."""
    record = _record(home)
    (home / RECORD).unlink(missing_ok=True)
    if record is None or not _running(record):
        return False
    try:
        os.kill(record["pid"], signal.SIGTERM)
    except OSError:
        return False
    for _ in range(100):  # uvicorn's graceful shutdown takes a moment
        if not _running(record):
            break
        time.sleep(0.05)
    else:
        os.kill(record["pid"], signal.SIGKILL)
    return True


def _record(home: Path) -> dict | None:
    """The recorded server: {url, pid, start (its start time, so a reused pid is not taken for it), …}."""
    try:
        record = json.loads((home / RECORD).read_text(encoding="utf-8"))
        record["pid"], record["start"] = int(record["pid"]), int(record.get("start", 0))
        return record if isinstance(record["url"], str) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _running(record: dict) -> bool:
    """The recorded process runs (the same process: same pid and start time), and is not a zombie."""
    from stages.core.artifacts import running

    if not running(record["pid"], record["start"]):
        return False
    try:
        return Path(f"/proc/{record['pid']}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _start(home: Path, idle: int, timeout_s: float, while_starting: Callable[[], object] = lambda: None) -> str:
    from flows.lifetime import TOKEN

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    database = _database()
    fresh = database is not None and not database.exists()
    if fresh and _template().exists():
        _copy_database(_template(), database)
        fresh = False
    env = {k: v for k, v in os.environ.items() if k not in (TOKEN, "PREFECT_API_URL")}  # outlives this render
    # No service that nothing here reads (automations, the stored event feed, event and log streams):
    # 27 % less of its CPU per task run, measured; task and flow runs are recorded as before. Nor Prefect's
    # anonymous usage report, which this local server would send to Prefect at every start.
    for service in ("SERVICES_TRIGGERS", "SERVICES_EVENT_PERSISTER", "EVENTS_STREAM_OUT", "LOGS_STREAM_OUT",
                    "ANALYTICS"):
        env.setdefault(f"PREFECT_SERVER_{service}_ENABLED", "false")
    with open(home / LOG, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "flows.prefect_server", str(port), str(idle)],
                                cwd=Path(__file__).resolve().parents[1], env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, close_fds=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        while_starting()
    except BaseException:
        proc.kill()  # not recorded yet: nobody else would ever stop it
        raise
    deadline = time.monotonic() + timeout_s
    while not _healthy(url, timeout_s=1.0):
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
            tail = (home / LOG).read_text(encoding="utf-8", errors="replace")[-1500:]
            raise RenderError(f"the local Prefect server did not start within {timeout_s:.0f} s",
                              hint=f"see {home / LOG}; or run your own (`prefect server start`) and set "
                                   f"PREFECT_API_URL, or set {IDLE_ENV}=0 for a temporary server per render",
                              text=tail)
        time.sleep(0.1)
    from stages.core.artifacts import start_ticks, write_text_atomic

    if fresh:  # migrated here: the next fresh home starts from this state
        _save_template(database)
    write_text_atomic(home / RECORD, json.dumps({"url": url, "pid": proc.pid, "start": start_ticks(proc.pid),
                                                 "prefect": _prefect_version(), "idle_s": idle}))
    return url


def _database() -> Path | None:
    """The server's SQLite file, when it is one (PostgreSQL needs no template)."""
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    url = PREFECT_API_DATABASE_CONNECTION_URL.value() or ""
    prefix = "sqlite+aiosqlite:///"
    return Path(url[len(prefix):]).expanduser() if url.startswith(prefix) and ":memory:" not in url else None


def _template() -> Path:
    folder = os.environ.get(TEMPLATES_ENV) or Path(sys.prefix) / "share" / "dramaforge"
    return Path(folder) / f"prefect-{_prefect_version()}.db"


def _copy_database(source: Path, final: Path) -> None:
    """A consistent copy of a live SQLite database (its WAL included), written atomically."""
    import sqlite3

    from stages.core.artifacts import atomic_path

    with atomic_path(final) as tmp:
        src = sqlite3.connect(source)
        try:
            dst = sqlite3.connect(tmp)
            try:
                src.backup(dst)
            finally:
                dst.close()
        finally:
            src.close()


def _save_template(database: Path) -> None:
    """Keep a just-migrated database as the template. A cache: where the folder is not writable (a
    system-wide install), every fresh home migrates, as Prefect does."""
    if _template().exists():
        return
    try:
        _copy_database(database, _template())
    except OSError:
        pass


def prepare() -> Path:
    """Make the template: a server started once in a throwaway home (what `make install` runs)."""
    import shutil
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="dramaforge-prefect-"))
    os.environ["PREFECT_HOME"] = str(home)
    os.environ.pop("PREFECT_API_URL", None)
    os.environ.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)
    try:
        if not _template().exists():
            _template().parent.mkdir(parents=True, exist_ok=True)
            connect()
    finally:
        stop(home)
        shutil.rmtree(home, ignore_errors=True)
    return _template()


def _healthy(url: str, *, timeout_s: float) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout_s) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


@functools.cache
def _prefect_version() -> str:
    from importlib.metadata import version

    return version("prefect")


# --- the server process -----------------------------------------------------------------------

class _Idle:
    """ASGI wrapper: counts requests and connections in flight; calls `stop` once none has been open
    for `idle_s`."""

    def __init__(self, app, idle_s: int, stop):
        self.app, self.idle_s, self.stop = app, idle_s, stop
        self.open, self.last = 0, time.monotonic()
        threading.Thread(target=self._watch, daemon=True).start()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self.app(scope, receive, send)
        self.open += 1
        try:
            return await self.app(scope, receive, send)
        finally:
            self.open -= 1
            self.last = time.monotonic()

    def _watch(self) -> None:
        while True:
            time.sleep(min(30.0, max(self.idle_s / 4, 0.25)))
            if self.open == 0 and time.monotonic() - self.last > self.idle_s:
                self.stop()
                return


def serve(app, port: int, idle: int) -> None:
    """Serve `app` on 127.0.0.1:`port` until it has been idle for `idle` seconds (then exit cleanly)."""
    import uvicorn

    server = None

    def stop() -> None:
        server.should_exit = True  # uvicorn's own graceful shutdown

    server = uvicorn.Server(uvicorn.Config(_Idle(app, idle, stop), host="127.0.0.1", port=port, log_level="error",
                                           lifespan="on"))
    server.run()


def _writes_wait() -> None:
    """SQLite transactions that take the write lock as they begin (BEGIN IMMEDIATE), so a writer waits
    for another one (SQLite's busy timeout) instead of failing.

    Prefect begins most transactions DEFERRED: one that reads first, then writes while the task-run
    recorder is writing, fails at once ("database is locked"), the API answers 503 and the client
    retries after 2 s. Measured: every episode's subflow started 2 s late this way, after a burst of task runs."""
    from contextlib import asynccontextmanager

    from prefect.server.database.configurations import AioSqliteConfiguration
    from prefect.server.database.dependencies import set_database_config
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    url = PREFECT_API_DATABASE_CONNECTION_URL.value()
    if not url.startswith("sqlite"):  # PostgreSQL locks rows, not the database
        return

    class Immediate(AioSqliteConfiguration):
        @asynccontextmanager
        async def begin_transaction(self, session, with_for_update: bool = False):
            async with super().begin_transaction(session, with_for_update=True) as transaction:
                yield transaction

    set_database_config(Immediate(connection_url=url))


def _serve(port: int, idle: int) -> None:
    from prefect.server.api.server import create_app

    _writes_wait()
    # ephemeral: the API and the services a temporary server runs (no UI, no scheduler: nothing here
    # deploys); a user who wants the UI runs `prefect server start` and sets PREFECT_API_URL
    serve(create_app(ephemeral=True, final=True), port, idle)


if __name__ == "__main__":
    if sys.argv[1:] == ["--prepare"]:
        made = prepare()
        print(f"Prefect's database template: {made}" if made.exists() else
              "no template for Prefect's database: this Prefect's database is not a local SQLite file")
    else:
        _serve(int(sys.argv[1]), int(sys.argv[2]))
