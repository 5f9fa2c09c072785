"""`dramaforge deploy`, `dramaforge worker`, `render --via deployment`: a series rendered by Prefect
process workers on two work pools of one real Prefect server (`prefect server start`), as a studio's
machines would render it; the episodes spread over the GPU pool's workers, the limits held across them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO, SMALL, TINY_YAML, run_cli

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


def _dramaforge(*args: str, env: dict, log: Path | None = None) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("dramaforge")
    out = open(log, "wb") if log else subprocess.DEVNULL
    return subprocess.Popen([str(exe), *args], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


@pytest.fixture
def farm(prefect_api, tmp_path):
    """The project deployed (its work pools made), then an API worker and two GPU workers (one run at a
    time each) on the session's Prefect server, as README's many-machines section starts them."""
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PREFECT_WORKER_QUERY_SECONDS": "2",
           "PREFECT_LOGGING_LEVEL": "INFO"}
    root = _project(tmp_path, GPU)
    proc = subprocess.run([str(Path(sys.executable).with_name("dramaforge")), "deploy", str(root)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on work pool dramaforge-gpu" in proc.stderr and "on work pool dramaforge-api" in proc.stderr
    workers = {name: _dramaforge("worker", "--pool", pool, env=env, log=tmp_path / f"{name}.log")
               for name, pool in (("api", "api"), ("gpu-a", "gpu"), ("gpu-b", "gpu"))}
    yield root, env, workers
    for proc in workers.values():
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
def test_a_series_rendered_by_workers_on_two_pools_uses_its_gpu_one_shot_at_a_time(farm, tmp_path, prefect_api):
    root, env, workers = farm
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
    # where each run ran: the series on the API pool, each episode on the GPU pool
    runs = _runs(prefect_api, work_pools={"name": {"any_": ["dramaforge-gpu", "dramaforge-api"]}})
    pools = {r["name"]: r["work_pool_name"] for r in runs}
    assert sorted(pools.values()).count("dramaforge-gpu") >= 3 and "dramaforge-api" in pools.values(), pools


@pytest.mark.farm  # about two minutes: the killed run's GPU slot comes back when its lease runs out
def test_an_episode_run_killed_mid_shot_is_run_again_on_another_worker(farm, tmp_path, prefect_api):
    root, env, workers = farm
    log = tmp_path / "render.log"
    render = _dramaforge("render", str(root), "--via", "deployment", env=env, log=log)
    try:
        deadline = time.monotonic() + 180
        while not (root / "build" / "shots" / "calls.jsonl").exists():  # a shot is being made
            assert render.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.05)
        victim = json.loads((root / "build" / "shots" / "calls.jsonl").read_text().splitlines()[0])["pid"]
        os.kill(victim, signal.SIGKILL)  # the episode's flow-run process, mid-shot: its worker sees it crash
        assert render.wait(timeout=400) == 0, log.read_text(errors="replace")[-3000:]
    finally:
        if render.poll() is None:
            os.killpg(render.pid, signal.SIGKILL)
    for n in (1, 2, 3):
        assert (root / "build" / "episodes" / f"ep{n:02d}.mp4").exists()
    crashed = _runs(prefect_api, flow_runs={"state": {"type": {"any_": ["CRASHED"]}}})
    assert any(r["work_pool_name"] == "dramaforge-gpu" for r in crashed)  # the killed run, run again
    assert not _overlapping(_spans(root))


def test_the_farm_commands_refuse_what_cannot_work_before_anything_starts(tiny_project, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    for args in (("deploy", str(tiny_project)), ("render", str(tiny_project), "--via", "deployment"),
                 ("worker", "--pool", "gpu")):
        proc = run_cli(*args)
        assert proc.returncode == 2 and "PREFECT_API_URL" in proc.stderr and "Traceback" not in proc.stderr, args
    proc = run_cli("worker", "--pool", "cpu")
    assert proc.returncode == 2 and "--pool api or --pool gpu" in proc.stderr
    proc = run_cli("render", str(tiny_project), "--via", "dask")
    assert proc.returncode == 2 and "--via deployment" in proc.stderr
    assert not (tiny_project / "build").exists()
