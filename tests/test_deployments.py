"""`dramaforge deploy`, `dramaforge worker`, `render --via deployment`: a series rendered by Prefect
process workers on two work pools of one real Prefect server (`prefect server start`), as a studio's
machines would render it; the episodes spread over the GPU pool's workers, the limits held across them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import (REPO, SMALL, TINY_YAML, espeak_clip, gpu_slot, postgres_database, prefect_server,
                      run_cli)
from fake_hosted import FakeHosted

THREE = """\
Title: Three

# Episode 1: Kettle

INT. KITCHEN - DAY

ANN
Is it ready?

BO
Almost.

# Episode 2: Door

INT. HALL - NIGHT

ANN
Who is there?

# Episode 3: Street

EXT. STREET - DAY

BO
Then I am leaving.
"""

GPU = "backends:\n  video: chaos\n  chaos: {wraps: animatic, fail_rate: 0.0, seed: 1, pool: gpu, device: 'cuda:0'}\n"
CLIP_TEXT = ("The harbour lights were out by the time we reached the pier, and the boats knocked softly "
             "against the stones all night long while we waited for the morning ferry to come.")


def _dramaforge(*args: str, env: dict, log: Path | None = None) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("dramaforge")
    out = open(log, "wb") if log else subprocess.DEVNULL
    return subprocess.Popen([str(exe), *args], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


@pytest.fixture
def tts():
    """MiniMax's speech API on a local server (`fakes_tts/minimax_speech.py`): ANN's hosted voice."""
    server = FakeHosted(b"", hang_s=0.3)
    yield server
    server.close()


@pytest.fixture
def farm(prefect_api, tmp_path, tts):
    with _farm(prefect_api, tmp_path, tts) as made:
        yield made


@contextlib.contextmanager
def _farm(api: str, tmp_path: Path, tts: FakeHosted):
    """A project whose shots need a GPU (the chaos backend standing for a local model) and whose ANN speaks
    through a hosted TTS (her voice cloned from a clip), deployed (its work pools made); then an API worker
    and two GPU workers (one run at a time each) on the Prefect server at `api`, started with README's
    many-machines commands: both on GPU 1 (one by `CUDA_VISIBLE_DEVICES=1`, one by `--gpu 1`), so they share
    its slot `dramaforge-gpu-<host>-1`."""
    from fakes_tts import minimax_speech as proto

    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_WORKER_QUERY_SECONDS": "2",
           "PREFECT_LOGGING_LEVEL": "INFO", **proto.ENV}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    hosted = {**proto.options(tts), "request_timeout_s": 5}
    root = _project(tmp_path, GPU + f"  minimax_tts: {json.dumps(hosted)}\n")
    espeak_clip(root / "ann.wav", CLIP_TEXT)
    yaml = (root / "project.yaml").read_text(encoding="utf-8").replace(
        "voice: {language: en-us, variant: f2, pitch: 60}",
        f"voice: {{backend: minimax-tts, reference: ann.wav, reference_text: {json.dumps(CLIP_TEXT)}}}")
    (root / "project.yaml").write_text(yaml, encoding="utf-8")
    proc = subprocess.run([str(Path(sys.executable).with_name("dramaforge")), "deploy", str(root)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name, pool in (("render_series", "api"), ("render_episode", "api"), ("render_pictures", "gpu")):
        assert f"deployment {name}/" in proc.stderr and f" on work pool dramaforge-{pool}" in proc.stderr, name
    workers = {"api": _dramaforge("worker", "--pool", "api", env=env, log=tmp_path / "api.log"),
               "gpu-a": _dramaforge("worker", "--pool", "gpu", env={**env, "CUDA_VISIBLE_DEVICES": "1"},
                                    log=tmp_path / "gpu-a.log"),
               "gpu-b": _dramaforge("worker", "--pool", "gpu", "--gpu", "1", env=env, log=tmp_path / "gpu-b.log")}
    try:
        yield root, env, workers
    finally:
        for proc in workers.values():
            with contextlib.suppress(ProcessLookupError):  # one a test killed
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _project(tmp_path: Path, backends: str) -> Path:
    root = tmp_path / "series"
    root.mkdir()
    (root / "project.yaml").write_text(TINY_YAML + SMALL + backends, encoding="utf-8")
    (root / "script.fountain").write_text(THREE, encoding="utf-8")
    return root


def _runs(api: str, **filters) -> list[dict]:
    req = urllib.request.Request(api + "/flow_runs/filter", data=json.dumps(filters).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=10).read())


def _spans(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "build" / "shots" / "spans.jsonl").read_text().splitlines()]


def _overlapping(spans: list[dict]) -> list:
    s = sorted((x["start"], x["end"]) for x in spans)
    return [(a, b) for a, b in zip(s, s[1:]) if b[0] < a[1]]


@pytest.mark.farm  # about a minute: three workers, a flow-run process per episode
def test_a_series_rendered_by_workers_on_two_pools_uses_its_gpu_one_shot_at_a_time(farm, tmp_path, prefect_api,
                                                                                    tts):
    """Each unit on the pool its backend declares: speech (a hosted TTS) and the cut on the API pool's
    worker, the shots on the GPU pool's two workers, one at a time."""
    _render_by_the_farm(*farm, tmp_path, prefect_api, tts)
    # a change the pictures do not see (the end card's words): the cuts are made again, no GPU run is started
    root, env, workers = farm
    with open(root / "project.yaml", "a", encoding="utf-8") as f:
        f.write("cards: {end_text: 'Tomorrow, the ferry'}\n")
    before = {r["id"] for r in _runs(prefect_api, work_pools={"name": {"any_": ["dramaforge-gpu"]}})}
    cut = {n: (root / "build" / "episodes" / f"ep{n:02d}.mp4").stat().st_mtime_ns for n in (1, 2, 3)}
    render = subprocess.run([str(Path(sys.executable).with_name("dramaforge")), "render", str(root), "--via",
                             "deployment"], cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert render.returncode == 0, render.stderr[-3000:]
    assert {r["id"] for r in _runs(prefect_api, work_pools={"name": {"any_": ["dramaforge-gpu"]}})} == before
    assert all((root / "build" / "episodes" / f"ep{n:02d}.mp4").stat().st_mtime_ns > t for n, t in cut.items())


@pytest.mark.farm  # about a minute and a half: a PostgreSQL server, then a Prefect server migrating onto it
def test_the_farm_on_a_prefect_server_whose_database_is_postgresql(tmp_path, tts):
    """README's setting for many workers, `PREFECT_SERVER_DATABASE_CONNECTION_URL=postgresql+asyncpg://USER:
    PASSWORD@HOST:5432/prefect`, on a real PostgreSQL: the same farm renders the same series through it."""
    (tmp_path / "pg-home").mkdir()
    with postgres_database("prefect") as (url, sql), \
            prefect_server(tmp_path / "pg-home", PREFECT_SERVER_DATABASE_CONNECTION_URL=url) as api, \
            _farm(api, tmp_path, tts) as made:
        _render_by_the_farm(*made, tmp_path, api, tts)
        assert "pg_trgm" in sql("select extname from pg_extension").split()  # Prefect's migrations made it
        root = made[0]
        # the runs are PostgreSQL's rows: per episode, its run and its pictures' run
        names = set(sql(f"select name from flow_run where name like '{root.resolve()}%'").splitlines())
        assert names == {f"{root.resolve()}:ep{n}{part}" for n in (1, 2, 3) for part in ("", ":pictures")}, names
        assert not (tmp_path / "pg-home" / "prefect.db").exists()  # no SQLite beside it


def _render_by_the_farm(root: Path, env: dict, workers: dict, tmp_path: Path, api: str, tts: FakeHosted):
    render = subprocess.run([str(Path(sys.executable).with_name("dramaforge")), "render", str(root), "--via",
                             "deployment"], cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert render.returncode == 0, render.stderr[-3000:] + "".join(
        (tmp_path / f"{w}.log").read_text(errors="replace")[-1500:] for w in workers)
    for n in (1, 2, 3):
        assert (root / "build" / "episodes" / f"ep{n:02d}.mp4").exists()
        assert f"ep{n:02d}.mp4" in render.stderr  # reported as a local render reports it
    calls = [json.loads(line) for line in (root / "build" / "shots" / "calls.jsonl").read_text().splitlines()]
    spans = _spans(root)
    assert len(spans) == len(calls) and all(c["call"] == 1 for c in calls)  # every shot made once
    assert not _overlapping(spans), spans  # the GPU's one slot held across the workers' processes
    assert len({s["pid"] for s in spans}) >= 2  # the episodes ran in more than one worker's run
    assert os.getpid() not in {s["pid"] for s in spans}
    # where each run ran: the series and its episodes (speech, cut) on the API pool, their pictures on the GPU's
    runs = _runs(api, work_pools={"name": {"any_": ["dramaforge-gpu", "dramaforge-api"]}})
    pools = {r["name"]: r["work_pool_name"] for r in runs if str(root.resolve()) in r["name"]}
    assert {n: p for n, p in pools.items() if n.endswith(":pictures")} == {
        f"{root.resolve()}:ep{n}:pictures": "dramaforge-gpu" for n in (1, 2, 3)}, pools
    assert {n: p for n, p in pools.items() if not n.endswith(":pictures")} == {
        f"{root.resolve()}:ep{n}": "dramaforge-api" for n in (1, 2, 3)}, pools
    # ANN's two lines spoken by the hosted voice, cloned once: each paid once
    assert [c for c, _ in tts.calls if c in ("enroll", "tts")] == ["enroll", "tts", "tts"], tts.calls
    voice = json.loads(urllib.request.urlopen(f"{api}/v2/concurrency_limits/dramaforge-speech-minimax-tts",
                                              timeout=10).read())
    assert voice["limit"] == 4 and voice["active_slots"] == 0  # its `concurrency`, held across the workers
    # the GPU the workers were started on (`CUDA_VISIBLE_DEVICES=1`, `--gpu 1`): one slot, shared by both
    gpu = json.loads(urllib.request.urlopen(f"{api}/v2/concurrency_limits/{gpu_slot('1')}", timeout=10).read())
    assert gpu["limit"] == 1 and gpu["active_slots"] == 0


@pytest.mark.farm  # about two minutes: the killed run's GPU slot comes back when its lease runs out
def test_an_episode_run_killed_mid_shot_is_run_again_on_another_worker(farm, tmp_path, prefect_api):
    root, env, workers = farm
    _render_killing(root, env, tmp_path, lambda pid: os.kill(pid, signal.SIGKILL))  # its worker sees it crash
    crashed = _runs(prefect_api, flow_runs={"state": {"type": {"any_": ["CRASHED"]}}})
    assert any(r["work_pool_name"] == "dramaforge-gpu" for r in crashed)  # the killed run, run again
    assert not _overlapping(_spans(root))


@pytest.mark.farm  # about three minutes: the dead machine's run is known by its silence (flows/farm.py, ZOMBIE_S)
def test_a_gpu_worker_machine_that_dies_outright_has_its_run_crashed_and_made_again_elsewhere(farm, tmp_path,
                                                                                                prefect_api):
    """A GPU worker and the run it is making die at once, as with a machine that loses power: nobody is left
    to report the run, whose heartbeats stop; the server's automation marks it Crashed, and its episode
    run starts it again on the other GPU worker. Every episode is made, no two shots at once."""
    root, env, workers = farm

    def machine_dies(pid: int) -> None:  # the worker and its run at once: nobody is left to say so
        assert os.getpgid(pid) in {w.pid for n, w in workers.items() if n.startswith("gpu")}  # a GPU worker's
        os.killpg(os.getpgid(pid), signal.SIGKILL)

    _render_killing(root, env, tmp_path, machine_dies)
    crashed = _runs(prefect_api, flow_runs={"state": {"type": {"any_": ["CRASHED"]}}})
    assert any("no heartbeat" in (r["state"]["message"] or "") and r["name"].endswith(":pictures")
               for r in crashed), [(r["name"], r["state"]["message"]) for r in crashed]
    assert not _overlapping(_spans(root))


def _render_killing(root: Path, env: dict, tmp_path: Path, kill) -> None:
    """`render --via deployment`, `kill`ing the process of the first shot being made; then every episode
    is there, however the render got past it."""
    log = tmp_path / "render.log"
    render = _dramaforge("render", str(root), "--via", "deployment", env=env, log=log)
    try:
        calls = root / "build" / "shots" / "calls.jsonl"
        deadline = time.monotonic() + 180
        while not calls.exists():  # a shot is being made
            assert render.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.05)
        kill(json.loads(calls.read_text().splitlines()[0])["pid"])  # the flow-run process making it
        assert render.wait(timeout=600) == 0, log.read_text(errors="replace")[-3000:]
    finally:
        if render.poll() is None:
            os.killpg(render.pid, signal.SIGKILL)
    for n in (1, 2, 3):
        assert (root / "build" / "episodes" / f"ep{n:02d}.mp4").exists()


def test_the_farm_commands_refuse_what_cannot_work_before_anything_starts(tiny_project, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    for args in (("deploy", str(tiny_project)), ("render", str(tiny_project), "--via", "deployment"),
                 ("worker", "--pool", "gpu")):
        proc = run_cli(*args)
        assert proc.returncode == 2 and "PREFECT_API_URL" in proc.stderr and "Traceback" not in proc.stderr, args
    proc = run_cli("worker", "--pool", "cpu")
    assert proc.returncode == 2 and "--pool api or --pool gpu" in proc.stderr
    proc = run_cli("worker", "--pool", "api", "--limit", "1")  # it would take a series run and wait forever
    assert proc.returncode == 2 and "--limit 2 or more" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("render", str(tiny_project), "--via", "dask")
    assert proc.returncode == 2 and "--via deployment" in proc.stderr
    assert not (tiny_project / "build").exists()


def test_a_server_without_automations_still_gets_the_deployments_and_a_warning(prefect_api, tmp_path, monkeypatch):
    """`deploy` on a server that refuses the zombie automation: the pools and deployments are made, and
    the user is told that a dead machine's run would wait for them."""
    import flows.farm as farm
    from stages.load_project import load_project

    monkeypatch.setenv("PREFECT_API_URL", prefect_api)

    def refused():
        raise RuntimeError("403: automations are not available on this plan")

    monkeypatch.setattr(farm, "_zombie_automation", refused)
    said = []
    made = farm.deploy(load_project(_project(tmp_path, GPU)), warn=said.append)
    assert set(made.values()) == {"dramaforge-api", "dramaforge-gpu"} and len(made) == 3
    assert len(said) == 1 and "403" in said[0] and "prefect flow-run cancel" in said[0]
