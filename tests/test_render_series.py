"""The `render_series` flow run on its own, as a Prefect deployment runs it (no CLI in front of it),
does what `dramaforge render` does: the same episodes, shots, report and review site, the same
up-to-date skip, and the same refusal of a render over `--max-cost`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import COUNTING, REPO, SMALL, TINY_YAML, TWO_EPISODES, chaos_calls, run_cli

FLOW = """
import json, sys
from flows.run import prefect_environment
prefect_environment()
from flows.render_series import render_series
from stages.core.errors import InputError
try:
    outcomes = render_series(sys.argv[1], max_cost=float(sys.argv[2]) if len(sys.argv) > 2 else None)
except InputError as exc:
    print("REFUSED", exc.message)
    sys.exit(2)
print(json.dumps(outcomes))
"""
RATED = "rates:\n  video:\n    chaos: {cost_per_shot: 1.0}\n"


def _flow(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", FLOW, str(root), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def _project(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    root.mkdir()
    (root / "project.yaml").write_text(TINY_YAML + SMALL + COUNTING + RATED, encoding="utf-8")
    (root / "script.fountain").write_text(TWO_EPISODES, encoding="utf-8")
    return root


def _made(root: Path) -> list[str]:
    build = root / "build"
    return sorted(str(p.relative_to(build)) for d in ("shots", "speech", "characters", "episodes", "shotlists")
                  for p in (build / d).rglob("*") if p.is_file() and p.name != "calls.jsonl"
                  and not any(part.startswith(".") for part in p.relative_to(build).parts))  # locks, parsed copies


def _report(root: Path) -> dict:
    (path,) = (root / "build" / "reports").glob("*.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    return {"made": [{k: w[k] for k in ("kind", "backend", "todo", "cached", "ids", "cost")} for w in data["made"]],
            "episodes": data["episodes"], "shots": [(s["shot"], s["outcome"]) for s in data["shots"]],
            "skipped": data["skipped"], "cost": data["cost"]}


def _series(root: Path) -> list:
    data = json.loads((root / "build" / "series.json").read_text(encoding="utf-8"))
    return [(e["episode"], e["cut_key"], [s["key"] for s in e["shots"]]) for e in data["episodes"]]


def test_the_flow_on_its_own_renders_what_the_cli_renders(tmp_path):
    cli, alone = _project(tmp_path, "cli"), _project(tmp_path, "flow")
    proc = run_cli("render", str(cli))
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = _flow(alone)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outcomes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [(o["episode"], bool(o["mp4"]), o["failed"]) for o in outcomes] == [(1, True, []), (2, True, [])]

    assert _made(alone) == _made(cli)  # the same shots, lines, sheets, episodes and shot lists, by key
    assert _series(alone) == _series(cli)
    reports = [_report(alone), _report(cli)]
    assert all(o["blocked"] is None for o in reports[1]["episodes"])  # only a blocked episode names problems
    for report in reports:
        for o in report["episodes"]:
            o["mp4"] = Path(o["mp4"]).name
    assert reports[0] == reports[1]
    pages = {p.name for p in (alone / "build" / "review").glob("*.html")}
    assert pages == {p.name for p in (cli / "build" / "review").glob("*.html")} == {"index.html", "ep01.html",
                                                                                    "ep02.html"}
    # run again on its own: everything is up to date, nothing is generated
    calls = len(chaos_calls(alone))
    again = _flow(alone)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout.strip().splitlines()[-1]) == [] and len(chaos_calls(alone)) == calls
    latest = max((alone / "build" / "reports").glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    assert json.loads(latest.read_text(encoding="utf-8"))["skipped"] == [1, 2]


def test_the_flow_on_its_own_refuses_a_render_over_max_cost(tmp_path):
    cli, alone = _project(tmp_path, "cli"), _project(tmp_path, "flow")
    by_cli = run_cli("render", str(cli), "--max-cost", "2")
    by_flow = _flow(alone, "2")
    assert by_cli.returncode == by_flow.returncode == 2, (by_cli.stderr[-1000:], by_flow.stderr[-2000:])
    assert "over --max-cost 2.00 (nothing was started)" in by_cli.stderr
    assert "over --max-cost 2.00 (nothing was started)" in by_flow.stdout
    assert not (cli / "build").exists() and not (alone / "build").exists()
