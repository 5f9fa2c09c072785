"""`render --dask`: shots spread over a Dask cluster of 2 worker processes, reporting to one real
Prefect server (`prefect server start`), as on a farm of GPU machines."""

from __future__ import annotations

import json
import urllib.request

import pytest
from conftest import TINY_SCRIPT, TINY_YAML, run_cli

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
pytest.importorskip("prefect_dask", reason="the dask extra is not installed")


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


def _task_runs(api: str) -> int:
    req = urllib.request.Request(api + "/task_runs/count", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    return int(urllib.request.urlopen(req, timeout=10).read())


def test_dask_without_a_prefect_server_is_refused(tiny_project, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    proc = run_cli("render", str(tiny_project), "--dask", "tcp://127.0.0.1:1")
    assert proc.returncode == 2 and "PREFECT_API_URL" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tiny_project / "build").exists()
