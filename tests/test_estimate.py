"""Estimates before any work: `estimate`, `render --dry-run`, `--max-cost`, and the run report's cost.

The central promise: on a half-rendered project, the dry run names exactly the shots and lines
the real render then makes (counted at the backend), priced as the report then bills them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import COUNTING, SMALL, TINY_YAML, TWO_EPISODES, run_cli
from conftest import chaos_calls as _calls
from stages.backends.animatic import AnimaticBackend
from stages.estimate_render import BUILTIN, duration, price
from stages.core.ledger import Ledger
from stages.schema import Rates

RATES = "rates:\n  currency: EUR\n  video: {chaos: {cost_per_shot: 0.25}}\n  speech: {espeak: {cost_per_line: 0.01}}\n"


def _estimate(root: Path, *args: str) -> dict:
    proc = run_cli("estimate", str(root), "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()
            and p.name not in ("ledger.sqlite-wal", "ledger.sqlite-shm")}


def _work(est: dict, kind: str) -> list[dict]:
    return [w for w in est["work"] if w["kind"] == kind]


def test_dry_run_on_a_half_rendered_project_names_exactly_what_the_render_makes(tiny_project):
    root = tiny_project
    (root / "project.yaml").write_text(TINY_YAML + SMALL + COUNTING, encoding="utf-8")
    (root / "script.fountain").write_text(TWO_EPISODES, encoding="utf-8")
    first = run_cli("render", str(root), "--episodes", "1")
    assert first.returncode == 0, first.stderr[-2000:]

    # Half-rendered: episode 2 never made; in episode 1 one line edited and one clip deleted;
    # rates added (they are in no key, so they redo nothing).
    (root / "script.fountain").write_text(TWO_EPISODES.replace("Almost.", "Almost there."), encoding="utf-8")
    (root / "project.yaml").write_text(TINY_YAML + SMALL + COUNTING + RATES, encoding="utf-8")
    status = json.loads(run_cli("status", str(root), "--json").stdout)["episodes"]
    ep1 = {s["id"]: s for s in status[0]["shots"]}
    deleted = next(i for i, s in ep1.items() if s["state"] == "done")
    Path(ep1[deleted]["artifact"]).unlink()
    kept = next(i for i, s in ep1.items() if s["state"] == "done" and i != deleted)
    stale = [i for i, s in ep1.items() if s["state"] == "stale"]
    assert len(stale) == 1

    before = _snapshot(root)
    est = _estimate(root)
    dry = run_cli("render", str(root), "--dry-run")
    assert dry.returncode == 0 and "starting Prefect" not in dry.stderr, dry.stderr
    # `rerun --shot --dry-run` counts the chosen shot as made anew and touches nothing
    again = run_cli("rerun", str(root), "--shot", kept, "--dry-run")
    assert again.returncode == 0 and kept in again.stdout, again.stdout
    assert _snapshot(root) == before  # a dry run writes nothing

    predicted = est["shots"]
    assert sorted(predicted["ep01"]) == sorted([deleted, *stale])
    assert len(predicted["ep02"]) == len(status[1]["shots"]) and est["episodes"] == [1, 2]
    for n, ids in predicted.items():
        assert f"{n}: {len(ids)} shot(s) to make" in dry.stdout
    speech = _work(est, "speech")  # a row per character, as each provider bills a voice's text
    assert sum(w["todo"] for w in speech) == 3 and sum(w["cached"] for w in speech) == 1  # the edited line, ep 2's
    assert {w["who"] for w in speech} == {ln["character"] for e in status for ln in e["lines"]}
    assert _work(est, "assembly")[0]["ids"] == ["ep01", "ep02"]
    assert est["cost"] == pytest.approx(0.25 * (2 + len(predicted["ep02"])) + 0.01 * 3)
    assert f"EUR {est['cost']:,.2f}" in dry.stdout

    calls = len(_calls(root))
    proc = run_cli("render", str(root), "--max-cost", "100")  # within budget: it runs
    assert proc.returncode == 0, proc.stderr[-2000:]
    made = [c["shot"] for c in _calls(root)[calls:]]
    assert sorted(made) == sorted(predicted["ep01"] + predicted["ep02"])  # exactly those, each once

    (report,) = sorted((root / "build" / "reports").glob("*.json"))[-1:]
    data = json.loads(report.read_text(encoding="utf-8"))
    (video,) = _work(data | {"work": data["made"]}, "video")
    assert sorted(video["ids"]) == sorted(made) and video["cached"] == 2
    assert [w["todo"] for w in data["made"] if w["kind"] == "speech"] == [3]
    assert data["cost"] == pytest.approx(est["cost"]) and data["currency"] == "EUR"
    md = report.with_suffix(".md").read_text(encoding="utf-8")
    assert f"EUR {est['cost']:,.2f}" in md and "**Made**" in md

    assert [e["episode"] for e in data["episodes"] if e["mp4"] and not e["reused"]] == [1, 2]

    after = _estimate(root)
    assert after["episodes"] == [] and after["up_to_date"] == [1, 2] and after["cost"] == 0

    # A clip lost from a finished episode: made again under the same key, so the cut is kept.
    status = json.loads(run_cli("status", str(root), "--json").stdout)["episodes"]
    lost = status[1]["shots"][0]
    Path(lost["artifact"]).unlink()
    est = _estimate(root)
    assert est["shots"] == {"ep02": [lost["id"]]} and _work(est, "assembly")[0]["todo"] == 0
    calls = len(_calls(root))
    assert run_cli("render", str(root)).returncode == 0
    assert [c["shot"] for c in _calls(root)[calls:]] == [lost["id"]]
    (report,) = sorted((root / "build" / "reports").glob("*.json"))[-1:]
    assert [e["reused"] for e in json.loads(report.read_text(encoding="utf-8"))["episodes"]] == [True]


def test_max_cost_refuses_before_anything_is_made(tiny_project):
    root = tiny_project
    rates = "rates:\n  video: {chaos: {cost_per_second: 1.0}}\n"
    (root / "project.yaml").write_text(TINY_YAML + SMALL + COUNTING + rates, encoding="utf-8")
    est = _estimate(root)
    assert est["cost"] == pytest.approx(_work(est, "video")[0]["todo_s"], abs=1e-3) and est["cost"] > 5
    proc = run_cli("render", str(root), "--max-cost", "5")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "over --max-cost 5.00" in proc.stderr and "starting Prefect" not in proc.stderr
    assert not (root / "build").exists()  # no folder, no ledger, no call


def test_estimate_json_answers_for_a_project_a_render_would_refuse(tiny_project):
    root = tiny_project
    (root / "project.yaml").write_text(TINY_YAML + SMALL + "audio:\n  music: {file: missing.ogg}\n", encoding="utf-8")
    est = run_cli("estimate", str(root), "--json")
    assert est.returncode == 0, est.stderr
    assert json.loads(est.stdout)["episodes"] == [1]  # the numbers, whatever blocks the render
    render = run_cli("render", str(root))
    assert render.returncode == 2 and "music file not found: missing.ogg" in render.stderr


def test_a_billed_backend_without_a_rate_cannot_pass_max_cost(tiny_project, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    root = tiny_project
    hosted = "backends:\n  video: openai-videos\n  openai_videos: {base_url: 'http://127.0.0.1:9/v1'}\n"
    (root / "project.yaml").write_text(TINY_YAML + SMALL + hosted, encoding="utf-8")
    est = _estimate(root)
    assert est["cost"] is None
    text = run_cli("estimate", str(root))
    assert "cost unknown: openai-videos" in text.stdout and "rates.video.openai-videos" in text.stdout
    proc = run_cli("render", str(root), "--max-cost", "1000")
    assert proc.returncode == 2 and "cannot price 6 shot(s) on openai-videos" in proc.stderr, proc.stderr
    assert not (root / "build").exists()

    # Priced: per second of video, plus a keyframe per shot from the image backend (free here).
    (root / "project.yaml").write_text(TINY_YAML + SMALL + hosted + "rates:\n  video:\n    openai-videos: "
                                       "{cost_per_second: 0.1, seconds_per_shot: 60}\n", encoding="utf-8")
    est = _estimate(root)
    (video,) = _work(est, "video")
    assert est["cost"] == pytest.approx(round(0.1 * video["todo_s"], 4))
    assert video["time_s"] == 60 * 6 and est["concurrency"] == 4  # the backend's own concurrency
    (image,) = _work(est, "image")
    assert image["todo"] == 6 + 4 and image["cost"] == 0  # keyframes + two views of two characters


def test_price_and_duration_rules(tmp_path):
    rates = Rates.model_validate({"video": {"diffusers": {"seconds_per_second": 30}},
                                  "speech": {"openai": {"cost_per_1k_chars": 15, "cost_per_minute": 0.6,
                                                        "seconds_per_line": 2}},
                                  "image": {"openai": {"cost_per_image": 0.04}}})
    assert price("speech", rates, "openai", True, count=4, seconds=120, chars=2000) == pytest.approx(30 + 1.2)
    assert price("image", rates, "openai", True, count=3) == pytest.approx(0.12)
    assert price("video", rates, "openai-videos", True, count=2, seconds=8) is None  # billed, no rate
    assert price("video", rates, "animatic", False, count=2, seconds=8) == 0  # local, no rate
    assert price("video", rates, "openai-videos", True, count=0) == 0  # nothing to make
    assert duration("video", rates, "diffusers", None, count=3, seconds=10) == (300, "rate")
    assert duration("speech", rates, "openai", None, count=5) == (10, "rate")
    assert duration("video", rates, "animatic", None, count=2) == (None, "no rate")

    # No rate: the median of what this project's ledger measured for that backend.
    ledger = Ledger(tmp_path / "ledger.sqlite")
    for i, seconds in enumerate([1.0, 3.0, 100.0]):
        ledger.start(f"s{i}", kind="shot", episode=1, spec_hash="k", backend="animatic")
        ledger.done(f"s{i}", spec_hash="k", kind="shot", episode=1, artifact=tmp_path / "x", sha256=None)
        ledger._db().__enter__().execute("UPDATE units SET seconds=? WHERE id=?", (seconds, f"s{i}"))
    ledger.start("other", kind="shot", episode=1, spec_hash="k", backend="diffusers")
    assert duration("video", rates, "animatic", ledger, count=4) == (12.0, "measured here, median of 3")
    assert duration("video", Rates(), "chaos", ledger, count=4) == (None, "no rate")
    # Nothing measured yet: a local backend's built-in speed (per second of video), said to be that.
    assert duration("video", Rates(), "animatic", None, count=2, seconds=10, builtin=1.1) == (11.0, BUILTIN)
    assert duration("speech", Rates(), "espeak", None, count=4, builtin=0.05) == (0.2, BUILTIN)
    assert duration("video", Rates(), "animatic", ledger, count=4, builtin=1.1)[1].startswith("measured here")


def test_a_new_project_is_estimated_from_built_in_speeds(tmp_path):
    src = tmp_path / "s.fountain"
    src.write_text("INT. A - DAY\n\nANN (30s) waits.\n\nANN\nIs it ready?\n", encoding="utf-8")
    assert run_cli("new", str(tmp_path / "p"), "--from-script", str(src)).returncode == 0
    text = run_cli("estimate", str(tmp_path / "p")).stdout
    assert "time unknown" not in text and "built-in, measured on a 2-core laptop CPU" in text, text
    est = json.loads(run_cli("estimate", str(tmp_path / "p"), "--json").stdout)
    video = next(w for w in est["work"] if w["kind"] == "video")
    per_s = AnimaticBackend().capabilities.seconds_each
    assert video["time_s"] == pytest.approx(per_s * video["todo_s"]) and est["time_s"] > 0


def test_rates_are_validated_with_file_and_line(tiny_project):
    (tiny_project / "project.yaml").write_text(TINY_YAML + "rates:\n  video:\n    sora: {cost_per_second: 1}\n",
                                               encoding="utf-8")
    proc = run_cli("check", str(tiny_project))
    assert proc.returncode == 2 and "project.yaml:" in proc.stderr and "sora" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
