"""`render --dask`: shots spread over a Dask cluster of 2 worker processes, reporting to one real
Prefect server (`prefect server start`), as on a farm of GPU machines."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO, SMALL, TINY_SCRIPT, TINY_YAML, gpu_slot, run_cli
from fake_hosted import FAL_KEY, FAL_KEY_ENV, FakeHosted
from fake_openai import provider_mp4  # noqa: F401 (a fixture)

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
pytest.importorskip("prefect_dask", reason="the dask extra is not installed")

GPU = "1"  # the workers' CUDA_VISIBLE_DEVICES: not the default ordinal, so the slot shows they read it


@pytest.fixture
def prefect_server(prefect_api):
    """The session's real Prefect server (conftest), which this command and every worker reach."""
    return prefect_api


def test_render_on_a_two_process_dask_cluster(tmp_path, prefect_server, monkeypatch):
    root = tmp_path / "tiny"
    root.mkdir()
    (root / "project.yaml").write_text(TINY_YAML + "width: 270\nheight: 480\nfps: 12\nbackends:\n  video: chaos\n"
                                       "  chaos: {wraps: animatic, fail_rate: 0.0, seed: 1}\n", encoding="utf-8")
    (root / "script.fountain").write_text(TINY_SCRIPT, encoding="utf-8")
    monkeypatch.setenv("PREFECT_API_URL", prefect_server)
    before = _task_runs(prefect_server)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  env={"PREFECT_API_URL": prefect_server}) as cluster:
        proc = run_cli("render", str(root), "--dask", cluster.scheduler_address)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (root / "build" / "episodes" / "ep01.mp4").exists()
    calls = [json.loads(line) for line in (root / "build" / "shots" / "calls.jsonl").read_text().splitlines()]
    pids = {c["pid"] for c in calls}
    assert len(pids) == 2, pids  # both worker processes made shots
    assert all(c["call"] == 1 for c in calls)  # each shot made once
    # The task runs were recorded by the one server, not by private temporary ones.
    assert _task_runs(prefect_server) - before >= len(calls)


class _Cluster:
    """A scheduler and two workers started as README's many-machines section starts them (`dask scheduler`,
    `CUDA_VISIBLE_DEVICES=1 dask worker tcp://SCHEDULER:PORT --nthreads N --nworkers 1`: both on GPU 1), each
    worker a process of two threads: a limit held per process would let four units run at once."""

    def __init__(self, env: dict, logs, workers: int = 2, threads: int = 2):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.scheduler_address = f"tcp://127.0.0.1:{port}"
        dask = str(Path(sys.executable).with_name("dask"))
        commands = [[dask, "scheduler", "--host", "127.0.0.1", "--port", str(port)]] + \
            [[dask, "worker", self.scheduler_address, "--nthreads", str(threads), "--nworkers", "1"]] * workers
        worker_env = {**env, "CUDA_VISIBLE_DEVICES": GPU}
        self.procs = [subprocess.Popen(cmd, cwd=REPO, env=env if i == 0 else worker_env,
                                       stdout=open(logs / f"dask-{i}.log", "wb"), stderr=subprocess.STDOUT,
                                       start_new_session=True)
                      for i, cmd in enumerate(commands)]
        try:
            with distributed.Client(self.scheduler_address, timeout=60) as client:
                client.wait_for_workers(workers, timeout=120)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def cluster(prefect_server, tmp_path):
    c = _Cluster({**os.environ, "PREFECT_API_URL": prefect_server, FAL_KEY_ENV: FAL_KEY}, tmp_path)
    yield c
    c.close()


def _project(tmp_path, name: str, backends: str, script: str = TINY_SCRIPT):
    root = tmp_path / name
    root.mkdir()
    (root / "project.yaml").write_text(TINY_YAML + SMALL + backends, encoding="utf-8")
    (root / "script.fountain").write_text(script, encoding="utf-8")
    return root


def _fal_project(tmp_path, server: FakeHosted):
    """The tiny project on fal (the local server's), one shot at a time across the cluster."""
    opts = {"model": "fal-ai/kling-video/v2.1/standard/image-to-video", "queue_url": server.fal_queue,
            "api_url": server.fal_api, "api_key_env": FAL_KEY_ENV, "durations": [1, 2], "poll_s": 0.05,
            "request_timeout_s": 5}
    return _project(tmp_path, "api", f"backends:\n  video: fal\n  fal: {json.dumps(opts)}\n"
                    "limits: {video_concurrency: 1}\n")


def _overlapping(spans: list[tuple[float, float]]) -> list:
    spans = sorted(spans)
    return [(a, b) for a, b in zip(spans, spans[1:]) if b[0] < a[1]]


def _limit(api: str, name: str) -> dict:
    return json.loads(urllib.request.urlopen(f"{api}/v2/concurrency_limits/{name}", timeout=10).read())


@pytest.mark.farm  # ~18 s: a render farm's limit (make test-farm, in .ci/run; make test keeps under 15 minutes)
def test_a_gpu_is_used_by_one_shot_at_a_time_across_two_dask_workers(tmp_path, prefect_server, cluster, monkeypatch):
    """A GPU backend (the chaos backend standing for one, `pool: gpu`) on a farm of two worker processes:
    its shots take the machine's GPU slot from the Prefect server, so they never overlap, whichever
    worker runs them; the progress counts every shot as it ends (the workers' own hooks cannot)."""
    root = _project(tmp_path, "gpu", "backends:\n  video: chaos\n"
                    "  chaos: {wraps: animatic, fail_rate: 0.0, seed: 1, pool: gpu, device: 'cuda:0'}\n")
    monkeypatch.setenv("PREFECT_API_URL", prefect_server)
    proc = run_cli("render", str(root), "--dask", cluster.scheduler_address)
    assert proc.returncode == 0, proc.stderr[-3000:]
    spans = [json.loads(line) for line in (root / "build" / "shots" / "spans.jsonl").read_text().splitlines()]
    calls = [json.loads(line) for line in (root / "build" / "shots" / "calls.jsonl").read_text().splitlines()]
    assert len(spans) == len(calls) >= 4 and all(c["call"] == 1 for c in calls)  # each shot made once
    assert len({s["pid"] for s in spans}) == 2, spans  # by both workers ...
    assert not _overlapping([(s["start"], s["end"]) for s in spans]), spans  # ... one at a time
    gpu = gpu_slot(GPU)  # the workers' GPU, as they named its slot
    assert _limit(prefect_server, gpu)["limit"] == 1 and _limit(prefect_server, gpu)["active_slots"] == 0
    # as README shows them: `prefect gcl ls`
    ls = subprocess.run([str(Path(sys.executable).with_name("prefect")), "gcl", "ls"], capture_output=True, text=True,
                        env={**os.environ, "COLUMNS": "250"}, timeout=120)
    assert ls.returncode == 0 and gpu in ls.stdout, ls.stdout + ls.stderr
    for bar, total in (("shots", len(spans)), ("lines", 3)):  # the bars as they stopped
        done = re.search(bar + r"\D*(\d+)/(\d+)", proc.stderr)
        assert done and done.group(1) == done.group(2) == str(total), proc.stderr


@pytest.mark.farm  # ~15 s: as above
def test_a_provider_limit_holds_across_two_dask_workers(tmp_path, prefect_server, cluster, provider_mp4,
                                                         monkeypatch):
    """A hosted provider with `limits.video_concurrency: 1`, its shots on two worker processes of two threads:
    the provider never has two jobs out at once (from its creation to its clip's download), and each
    shot is paid for once."""
    server = FakeHosted(provider_mp4)
    try:
        root = _fal_project(tmp_path, server)
        monkeypatch.setenv("PREFECT_API_URL", prefect_server)
        monkeypatch.setenv(FAL_KEY_ENV, FAL_KEY)
        proc = run_cli("render", str(root), "--dask", cluster.scheduler_address)
        assert proc.returncode == 0, proc.stderr[-3000:]
        jobs = server.created()
        assert len(jobs) >= 4 and len({j.input["prompt"] for j in jobs}) == len(jobs)  # one paid job a shot
        assert all(j.fetched_at for j in jobs)
        assert not _overlapping([(j.created_at, j.fetched_at) for j in jobs]), [(j.created_at, j.fetched_at)
                                                                                for j in jobs]
        assert _limit(prefect_server, "dramaforge-video-fal")["limit"] == 1
    finally:
        server.close()


@pytest.mark.farm  # ~2 min: the dead worker's provider slot comes back when its lease runs out
def test_a_worker_killed_mid_shot_leaves_its_job_to_the_other_worker_and_nothing_is_paid_twice(
        tmp_path, prefect_server, cluster, provider_mp4, monkeypatch):
    """The worker polling a hosted job dies (SIGKILL): Dask gives the shot to the other worker, which
    finds the job in the ledger's journal and waits for it instead of paying for a new one; its
    provider slot comes back when the dead worker's lease runs out. Every shot is made, each paid once."""
    server = FakeHosted(provider_mp4)
    server.outcomes = ["hold"]  # the first job runs until released
    try:
        root = _fal_project(tmp_path, server)
        env = {**os.environ, "PREFECT_API_URL": prefect_server, FAL_KEY_ENV: FAL_KEY}
        log = tmp_path / "render.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "render", str(root), "--dask",
                                     cluster.scheduler_address], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while not (server.created() and server.count("status") >= 2):  # the job is out, and polled
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.05)
        with sqlite3.connect(root / "build" / "ledger.sqlite") as db:  # who polls it: the shot's owner
            (owner,) = db.execute("SELECT owner FROM units WHERE state = 'running' AND kind = 'shot'").fetchone()
        os.kill(int(owner.split("-")[-2]), signal.SIGKILL)
        server.release.set()
        assert proc.wait(timeout=400) == 0, log.read_text(errors="replace")[-3000:]
        jobs = server.created()
        assert len({j.input["prompt"] for j in jobs}) == len(jobs) >= 4  # one paid job a shot: none twice
        assert all(j.fetched_at for j in jobs)
    finally:
        server.release.set()
        server.close()


def _task_runs(api: str) -> int:
    req = urllib.request.Request(api + "/task_runs/count", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    return int(urllib.request.urlopen(req, timeout=10).read())


def test_dask_without_a_prefect_server_is_refused(tiny_project, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    proc = run_cli("render", str(tiny_project), "--dask", "tcp://127.0.0.1:1")
    assert proc.returncode == 2 and "PREFECT_API_URL" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tiny_project / "build").exists()
