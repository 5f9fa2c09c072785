"""Re-run only what failed or changed: the chaos backend, the ledger, status and rerun, end to end."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from conftest import chaos_calls as _calls
from conftest import run_cli

CHAOS = "backends:\n  video: chaos\n  chaos: {wraps: animatic, fail_rate: 0.4, error: permanent, seed: 2}\n"


@pytest.fixture(autouse=True)
def _small_frames(tiny_project):
    """What these tests check is which units are made, not pixels: small frames keep them quick."""
    with open(tiny_project / "project.yaml", "a", encoding="utf-8") as f:
        f.write("width: 270\nheight: 480\nfps: 12\n")


def _status(root):
    proc = run_cli("status", str(root), "--json")
    assert proc.returncode == 0, proc.stderr
    return {s["id"]: s for e in json.loads(proc.stdout)["episodes"] for s in e["shots"]}


def test_failed_shots_are_named_and_rerun_until_done_without_regenerating(tiny_project):
    (tiny_project / "project.yaml").write_text((tiny_project / "project.yaml").read_text() + CHAOS)
    first = run_cli("render", str(tiny_project))
    assert first.returncode == 1, first.stderr[-2000:]
    assert "shot(s) failed" in first.stderr and "Traceback" not in first.stderr
    shots = _status(tiny_project)
    failed = {i for i, s in shots.items() if s["state"] == "failed"}
    assert failed and all("chaos" in shots[i]["reason"] for i in failed)
    assert {i for i, s in shots.items() if s["state"] == "done"} == set(shots) - failed
    human = run_cli("status", str(tiny_project)).stdout
    assert all(f"--shot {i}" in human for i in failed)

    for _ in range(8):
        proc = run_cli("rerun", str(tiny_project), "--failed")
        if proc.returncode == 0:
            break
        assert proc.returncode == 1, proc.stderr[-2000:]
    else:
        pytest.fail("rerun --failed never completed")
    assert (tiny_project / "build" / "episodes" / "ep01.mp4").exists()
    assert all(s["state"] == "done" for s in _status(tiny_project).values())
    successes = Counter(c["shot"] for c in _calls(tiny_project) if not c["failed"])
    assert set(successes) == set(shots) and set(successes.values()) == {1}, successes  # none made twice


@pytest.mark.slow  # make test: test_orchestration_limits.py::test_an_edited_line_redoes_its_shot_speech_and_episode_only
def test_editing_one_line_rerenders_exactly_that_shot(tiny_project):
    assert run_cli("render", str(tiny_project)).returncode == 0
    shots_dir = tiny_project / "build" / "shots"
    before = {p.name for p in shots_dir.glob("*.mp4")}
    speech_before = {p.name for p in (tiny_project / "build" / "speech").glob("*.wav")}
    script = tiny_project / "script.fountain"
    script.write_text(script.read_text().replace("Almost. Patience.", "Almost. Wait."), encoding="utf-8")
    shots = _status(tiny_project)
    plan = json.loads(run_cli("plan", str(tiny_project), "--json").stdout)
    edited = [s["id"] for ep in plan for s in ep["shots"] if any(ln["text"] == "Almost. Wait." for ln in s["lines"])]
    assert [i for i, s in shots.items() if s["state"] == "stale"] == edited and len(edited) == 1
    assert run_cli("rerun", str(tiny_project), "--stale").returncode == 0
    after = {p.name for p in shots_dir.glob("*.mp4")}
    assert len(after - before) == 1  # one new clip; every other clip reused by its hash
    assert len({p.name for p in (tiny_project / "build" / "speech").glob("*.wav")} - speech_before) == 1
    assert all(s["state"] == "done" for s in _status(tiny_project).values())


def test_rerun_one_shot_makes_only_it_anew(tiny_project):
    assert run_cli("render", str(tiny_project)).returncode == 0
    shots_dir = tiny_project / "build" / "shots"
    mtimes = {p.name: p.stat().st_mtime_ns for p in shots_dir.glob("*.mp4")}
    target = _status(tiny_project)["ep01-sc01-sh002"]["artifact"]
    assert run_cli("rerun", str(tiny_project), "--shot", "ep01-sc01-sh002").returncode == 0
    changed = {p.name for p in shots_dir.glob("*.mp4") if p.stat().st_mtime_ns != mtimes.get(p.name)}
    assert changed == {target.rsplit("/", 1)[-1]}


def test_rerun_needs_one_mode(tiny_project):
    proc = run_cli("rerun", str(tiny_project))
    assert proc.returncode == 2 and "exactly one of" in proc.stderr


def test_accepted_placeholder_lets_the_episode_assemble(tiny_project):
    always = CHAOS.replace("fail_rate: 0.4", "fail_rate: 1.0")
    (tiny_project / "project.yaml").write_text((tiny_project / "project.yaml").read_text() + always)
    assert run_cli("render", str(tiny_project)).returncode == 1
    shots = _status(tiny_project)
    assert all(s["state"] == "failed" for s in shots.values())
    proc = run_cli("accept", str(tiny_project), *[a for i in shots for a in ("--shot", i)], "--placeholder")
    assert proc.returncode == 0, proc.stderr
    assert run_cli("rerun", str(tiny_project), "--episode", "1").returncode == 0
    assert (tiny_project / "build" / "episodes" / "ep01.mp4").exists()
    assert {s["state"] for s in _status(tiny_project).values()} == {"placeholder"}
    assert all(c["failed"] for c in _calls(tiny_project))  # the chaos backend was never asked again
    assert len(_calls(tiny_project)) == len(shots)
    # the run's report lists each card with the reason it stands in (RELIABILITY 15)
    report = max((tiny_project / "build" / "reports").glob("*.json"))
    rows = {r["shot"]: r for r in json.loads(report.read_text(encoding="utf-8"))["shots"]}
    assert set(rows) == set(shots) and {r["outcome"] for r in rows.values()} == {"placeholder"}, rows
    assert all(r["reason"] for r in rows.values()), rows


def test_a_rejected_shot_is_recorded_with_its_reason_and_never_retried(tiny_project):
    """Content refused by the provider is `rejected`, with its reason, after one call per shot: not
    retried as if it were bad luck (RELIABILITY 9, at the level of a render)."""
    never = CHAOS.replace("fail_rate: 0.4, error: permanent", "fail_rate: 1.0, error: rejected")
    (tiny_project / "project.yaml").write_text((tiny_project / "project.yaml").read_text() + never
                                               + "limits: {failed_shots_per_episode: 100}\n")
    assert run_cli("render", str(tiny_project)).returncode == 1
    shots = _status(tiny_project)
    assert shots and all(s["state"] == "rejected" and s["reason"] for s in shots.values()), shots
    assert Counter(c["shot"] for c in _calls(tiny_project)) == Counter(set(shots))  # one call each


def test_the_shared_prefect_server_makes_a_writer_wait_instead_of_answering_503(tmp_path):
    """On the shared server, a subflow started right after a burst of task runs is created at once.
    Prefect's own server begins that write transaction deferred; while its task-run recorder writes,
    SQLite refuses it ("database is locked"), the API answers 503 and the client retries after 2 s:
    every episode started 2 s late. The shared server's transactions take the write lock as they begin."""
    import os
    import subprocess
    import sys

    from conftest import REPO
    from flows.prefect_server import stop

    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(home)
    started = subprocess.run([sys.executable, "-c", "from flows.prefect_server import connect; print(connect()[0])"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stderr[-2000:]
    url = started.stdout.strip()
    code = """
import logging
import time

from prefect import flow, task

retried = []  # the client's own word for each request it sends again ("retryable status code 503")

class Retries(logging.Handler):
    def emit(self, record):
        if "retryable" in record.getMessage():
            retried.append(record.getMessage())

client_log = logging.getLogger("prefect.client")
client_log.setLevel(logging.DEBUG)
client_log.addHandler(Retries())

@task
def tiny(i):
    time.sleep(0.05)  # task runs ending one after another, as shots do: the recorder keeps writing
    return i

@flow
def child(i):
    return sum(tiny.map(range(8)).result())

@flow
def parent():
    return [child(i) for i in range(4)]

from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):  # as a render on this server runs
    assert parent() == [28] * 4
print(len(retried), retried[:1])
"""
    try:
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                              env={**env, "PREFECT_API_URL": url})
        assert proc.returncode == 0, proc.stderr[-3000:]
    finally:
        stop(home)
    assert proc.stdout.startswith("0 "), proc.stdout


def test_the_shared_prefect_server_stops_itself_when_idle(tmp_path):
    """`flows.prefect_server.serve` (how the shared server runs Prefect's app) ends its process once
    nothing has asked anything for its idle time, and not while a request is open."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from conftest import REPO

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = f"""
import asyncio
from flows.prefect_server import serve

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({{"type": "lifespan.startup.complete"}})
        await send({{"type": "lifespan.shutdown.complete"}})
        return
    await asyncio.sleep(3)  # a request open for longer than the idle time
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": b"ok"}})

serve(app, {port}, 1)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read() == b"ok"
                break  # answered after 3 s: the open request kept the 1 s idle timer from firing
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        assert proc.wait(timeout=60) == 0  # then, idle, it shut down by itself, cleanly
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_fresh_prefect_home_starts_from_the_saved_database_template(tmp_path, monkeypatch):
    """A server in a fresh home starts from a copy of the template (Prefect's migrations and block
    registration, 6-7 s otherwise), and works; the first server that migrates a database itself keeps a
    copy as the template (here: the session's server's database, migrated by `prefect server start`)."""
    import os
    import sqlite3
    import subprocess
    import sys
    from pathlib import Path

    from conftest import REPO
    from flows import prefect_server
    from flows.prefect_server import stop

    templates = tmp_path / "templates"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["DRAMAFORGE_PREFECT_TEMPLATES"] = str(templates)
    monkeypatch.setenv("DRAMAFORGE_PREFECT_TEMPLATES", str(templates))
    prefect_server._save_template(Path(os.environ["DRAMAFORGE_TEST_PREFECT_DB"]))
    [template] = templates.iterdir()
    prefect_server._save_template(tmp_path / "nothing.db")  # one is kept: never replaced
    assert template.name == f"prefect-{prefect_server._prefect_version()}.db"
    with sqlite3.connect(template) as db:
        assert db.execute("select count(*) from alembic_version").fetchone()[0] == 1
        assert db.execute("select count(*) from block_type").fetchone()[0] > 0  # registered: not done again
        runs = db.execute("select count(*) from flow_run").fetchone()[0]  # the session's renders, if any ran
        db.execute("insert into configuration (id, key, value) values ('x', 'copied-from-template', '{}')")
    home = tmp_path / "home"
    started = subprocess.run([sys.executable, "-c", "from flows.prefect_server import connect; print(connect()[0])"],
                             cwd=REPO, env={**env, "PREFECT_HOME": str(home)}, capture_output=True, text=True,
                             timeout=180)
    try:
        assert started.returncode == 0, started.stderr[-2000:]
        code = "from prefect import flow\n@flow\ndef f():\n    return 7\nprint(f())"
        ran = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=180,
                             env={**env, "PREFECT_HOME": str(home), "PREFECT_API_URL": started.stdout.strip()})
        assert ran.returncode == 0 and ran.stdout.strip().endswith("7"), ran.stderr[-2000:]
    finally:
        stop(home)
    with sqlite3.connect(home / "prefect.db") as db:
        assert db.execute("select count(*) from configuration where key = 'copied-from-template'").fetchone()[0] == 1
        assert db.execute("select count(*) from flow_run").fetchone()[0] == runs + 1
