"""`dramaforge render` through the hosted gateways, end to end (CLI, Prefect, assembly) against the
local fal / Replicate server (the Replicate render, the other kills and the unknown-job and
concurrent-rerun flows are in `make test-slow`; every step of them is also tested at the backend
in test_hosted_video.py): one paid job per shot, the report's cost equal to what the provider
billed, `--max-cost` refusing what the providers' clip lengths really cost, an unknown job surfaced
and paid again only by `rerun --new-job`, a killed render resumed without a second job, and two
`rerun --shot` of one shot at once paying once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, SMALL, TINY_YAML, copy_demo, run_cli
from fake_hosted import FAL_KEY, FAL_KEY_ENV, REPLICATE_KEY_ENV, REPLICATE_TOKEN, FakeHosted
from fake_openai import provider_mp4  # noqa: F401 (a fixture)

PRICE = 0.05  # what the fake provider bills per second asked for
ONE_EPISODE = """\
Title: One

# Episode 1: Kettle

INT. KITCHEN - DAY

ANN
Is it ready?

BO
Almost.
"""


@pytest.fixture
def server(provider_mp4, monkeypatch):
    monkeypatch.setenv(FAL_KEY_ENV, FAL_KEY)
    monkeypatch.setenv(REPLICATE_KEY_ENV, REPLICATE_TOKEN)
    s = FakeHosted(provider_mp4, price_per_second=PRICE)
    yield s
    s.close()


def backend_yaml(server: FakeHosted, which: str, **extra) -> str:
    common = {"durations": [1, 2], "poll_s": 0.02, "request_timeout_s": 2, **extra}
    if which == "fal":
        opts = {"model": "fal-ai/kling-video/v2.1/standard/image-to-video", "queue_url": server.fal_queue,
                "api_url": server.fal_api, "api_key_env": FAL_KEY_ENV, **common}
    else:
        opts = {"model": "kwaivgi/kling-v2.1", "base_url": server.replicate_url, "api_key_env": REPLICATE_KEY_ENV,
                "fields": {"image": "start_image"}, **common}
    return (f"backends:\n  video: {which}\n  {which}: {json.dumps(opts)}\n"
            f"rates:\n  video:\n    {which}: {{cost_per_second: {PRICE}}}\n")


def project(tmp_path: Path, server: FakeHosted, which: str, name: str = "p", more: str = "", **extra) -> Path:
    root = tmp_path / name
    root.mkdir()
    (root / "project.yaml").write_text(TINY_YAML + SMALL + backend_yaml(server, which, **extra) + more,
                                       encoding="utf-8")
    (root / "script.fountain").write_text(ONE_EPISODE, encoding="utf-8")
    return root


def shot_ids(root: Path) -> list[str]:
    proc = run_cli("status", str(root), "--json")
    assert proc.returncode == 0, proc.stderr
    return [s["id"] for e in json.loads(proc.stdout)["episodes"] for s in e["shots"]]


def report(root: Path) -> dict:
    path = sorted((root / "build" / "reports").glob("*.json"))[-1]
    return json.loads(path.read_text(encoding="utf-8"))


def per_shot(server: FakeHosted) -> dict[str, int]:
    """Paid jobs the provider made for each shot (its id starts every prompt dramaforge sends)."""
    out: dict[str, int] = {}
    for j in server.created():
        key = (j.input["prompt"], j.input.get("seed"))
        out[key] = out.get(key, 0) + 1
    return out


@pytest.mark.parametrize("which", ["fal", pytest.param("replicate", marks=pytest.mark.slow)])
def test_a_render_through_the_gateway_pays_once_per_shot_and_reports_what_was_billed(server, tmp_path, which):
    root = project(tmp_path, server, which)
    proc = run_cli("render", str(root))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    ids = shot_ids(root)
    assert len(server.created()) == len(ids) and set(per_shot(server).values()) == {1}
    assert (root / "build" / "episodes" / "ep01.mp4").exists()
    data = report(root)
    (video,) = [w for w in data["made"] if w["kind"] == "video"]
    assert video["jobs"] == len(ids) and video["cost"] == pytest.approx(server.billed())
    assert data["cost"] == pytest.approx(server.billed())  # everything else is local and free
    again = run_cli("render", str(root))  # up to date: nothing is paid for
    assert again.returncode == 0 and len(server.created()) == len(ids)


@pytest.mark.parametrize("which,clips", [("fal", [5, 10]), ("replicate", [6, 10]), ("openai-videos", [4, 8, 12])])
def test_max_cost_prices_the_clip_lengths_the_provider_bills(server, tmp_path, which, clips):
    """The demo on Kling through fal, Hailuo through Replicate, a /v1/videos gateway: each asks for its
    model's clip lengths, whatever the shots' lengths."""
    root = copy_demo(tmp_path / "demo")
    yaml = (root / "project.yaml").read_text(encoding="utf-8")
    section = {"fal": f"fal: {{model: fal-ai/kling-video/v2.1/standard/image-to-video, durations: {clips}, "
                      f"queue_url: '{server.fal_queue}', api_url: '{server.fal_api}', api_key_env: {FAL_KEY_ENV}}}",
               "replicate": f"replicate: {{model: minimax/hailuo-02, durations: {clips}, base_url: "
                            f"'{server.replicate_url}', api_key_env: {REPLICATE_KEY_ENV}}}",
               "openai-videos": f"openai_videos: {{seconds: {clips}, base_url: '{server.base}/v1'}}"}[which]
    yaml = yaml.replace("  video: animatic\n", f"  video: {which}\n  {section}\n")
    yaml = yaml.replace("rates:\n  currency: USD",
                        f"rates:\n  currency: USD\n  video:\n    {which}: {{cost_per_second: 0.056}}")
    (root / "project.yaml").write_text(yaml, encoding="utf-8")
    proc = run_cli("estimate", str(root), "--json")
    assert proc.returncode == 0, proc.stderr
    est = json.loads(proc.stdout)
    (video,) = [w for w in est["work"] if w["kind"] == "video"]
    plan = run_cli("plan", str(root), "--json")
    lengths = [s["duration_s"] for e in json.loads(plan.stdout) for s in e["shots"]]
    asked = sum(next((c for c in clips if c + 1 / 30 >= d), clips[-1]) for d in lengths)
    assert video["todo_s"] == pytest.approx(asked) and asked > sum(lengths) * 1.3
    assert video["cost"] == pytest.approx(asked * 0.056)
    print(f"{which}: {len(lengths)} shots, {sum(lengths):.1f} s planned, {asked} s asked for")
    budget = (sum(lengths) * 0.056 + video["cost"]) / 2  # enough for the planned seconds, not the billed ones
    proc = run_cli("render", str(root), "--max-cost", f"{budget:.2f}")
    assert proc.returncode == 2 and "over --max-cost" in proc.stderr + proc.stdout
    assert not (root / "build" / "ledger.sqlite").exists() and server.calls == []


def test_a_render_without_the_key_is_refused_before_any_work(server, tmp_path, monkeypatch):
    root = project(tmp_path, server, "fal")
    monkeypatch.delenv(FAL_KEY_ENV)
    proc = run_cli("render", str(root))
    assert proc.returncode == 2 and f"${FAL_KEY_ENV}" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr and not (root / "build" / "ledger.sqlite").exists()
    assert run_cli("estimate", str(root)).returncode == 0  # a dry run needs no key


@pytest.mark.slow  # four CLI runs; the backend tests cover each step in the main suite
def test_an_unknown_job_is_surfaced_and_paid_again_only_with_new_job(server, tmp_path):
    root = project(tmp_path, server, "fal")
    server.faults.submit = ["500"]  # the first shot's create answer is lost (and, here, nothing was made)
    proc = run_cli("render", str(root))
    assert proc.returncode == 1
    status = run_cli("status", str(root))
    assert "unknown-job" in status.stdout and "--new-job" in status.stdout
    (unknown,) = [s for s in json.loads(run_cli("status", str(root), "--json").stdout)["episodes"][0]["shots"]
                  if s["state"] == "unknown-job"]
    submits = server.count("submit")
    proc = run_cli("rerun", str(root), "--failed")  # looks it up again; never re-sends
    assert proc.returncode == 1 and server.count("submit") == submits
    proc = run_cli("rerun", str(root), "--shot", unknown["id"], "--new-job")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "gave up on job" in proc.stdout + proc.stderr
    assert server.count("submit") == submits + 1
    assert len(server.created()) == len(shot_ids(root))  # one job per shot at the provider
    proc = run_cli("rerun", str(root), "--new-job")
    assert proc.returncode == 2 and "--new-job needs --shot" in proc.stderr + proc.stdout


def _render_bg(root: Path, log: Path, *args: str) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("dramaforge")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "flows.cli"]
    with open(log, "wb") as f:
        return subprocess.Popen([*cmd, *args, str(root)] if not args or args[0] != "rerun" else [*cmd, *args],
                                cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=os.environ.copy(),
                                start_new_session=True)


def _until(cond, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
        time.sleep(0.05)


@pytest.mark.parametrize("which,where", [("fal", "mid-submit"),
                                         pytest.param("replicate", "mid-submit", marks=pytest.mark.slow),
                                         pytest.param("fal", "mid-poll", marks=pytest.mark.slow)])
def test_a_render_killed_while_a_job_is_out_resumes_it_without_paying_twice(server, tmp_path, which, where):
    """On Replicate the other shots' requests, sent at the same moment, are looked up and, where its
    complete list shows none, asked again; on fal (whose list is not known to be complete) they would
    be unknown jobs, so that render sends one request at a time."""
    one_at_a_time = "limits: {video_concurrency: 1}\n" if which == "fal" else ""
    root = project(tmp_path, server, which, more=one_at_a_time)
    if where == "mid-submit":
        server.faults.submit = ["hold-after"]  # the provider made the job; its answer never arrives
    else:
        server.outcomes = ["hold"]  # the job runs until released
    log = tmp_path / "render.log"
    proc = _render_bg(root, log, "render")
    try:
        _until(lambda: server.created() and (where == "mid-submit" or server.count("status") >= 2), proc, log)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    server.release.set()
    again = run_cli("render", str(root))
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert len(server.created()) == len(shot_ids(root)) and set(per_shot(server).values()) == {1}


@pytest.mark.slow  # three CLI runs
def test_two_reruns_of_one_shot_at_once_pay_once(server, tmp_path):
    root = project(tmp_path, server, "replicate")
    assert run_cli("render", str(root)).returncode == 0
    first = shot_ids(root)[0]
    made = len(server.created())
    server.outcomes = ["hold"]  # the rerun's new job runs until both reruns are under way
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    a = _render_bg(root, logs[0], "rerun", str(root), "--shot", first)
    _until(lambda: len(server.created()) > made, a, logs[0])
    b = _render_bg(root, logs[1], "rerun", str(root), "--shot", first)
    _until(lambda: b"starting Prefect" in logs[1].read_bytes(), b, logs[1])
    server.release.set()
    assert a.wait(300) == 0, logs[0].read_text(errors="replace")[-3000:]
    assert b.wait(300) == 0, logs[1].read_text(errors="replace")[-3000:]
    assert len(server.created()) == made + 1  # one new take, not two
