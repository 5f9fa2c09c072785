"""`dramaforge render` through the direct providers, end to end (CLI, Prefect, assembly), against the
local server speaking each provider's protocol (`fakes/`): one paid job per shot, every character on
screen carried by a reference the provider received, the report's cost equal to what the provider
billed, a second render paying nothing. Two providers run in `make test`; every one in `make test-slow`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import fakes
from conftest import SMALL, TINY_YAML, run_cli
from fake_hosted import FakeHosted
from fake_openai import provider_mp4  # noqa: F401 (a fixture)

PRICE = 0.05  # what the fake provider bills per second asked for
TWO_SHOTS = """\
Title: One

# Episode 1: Kettle

INT. KITCHEN - DAY

ANN and BO stand by the stove.

ANN
Is it ready?

BO
Almost.
"""
FAST = ("kling", "seedance")  # in `make test`; the others in `make test-slow`


@pytest.fixture
def server(provider_mp4, monkeypatch):
    for proto in fakes.PROTOCOLS.values():
        for env, value in proto.ENV.items():
            monkeypatch.setenv(env, value)
    s = FakeHosted(provider_mp4, price_per_second=PRICE)
    yield s
    s.close()


def provider_job(server: FakeHosted, proto, job_id: str):
    """The server's job for the id the journal holds (a provider may name it by a path or a compound)."""
    if hasattr(proto, "job"):
        return proto.job(server, job_id)
    return next(j for j in server.jobs.values() if job_id == j.id or job_id.endswith(("/" + j.id, ":" + j.id)))


def project(tmp_path: Path, server: FakeHosted, which: str) -> Path:
    root = tmp_path / "p"
    root.mkdir()
    section = fakes.backend(server, which).section
    proto = fakes.PROTOCOLS[which]  # references for identity: what a reference mode needs of the provider
    opts = {**proto.options(server), "mode": "reference", **getattr(proto, "REFERENCE_OPTIONS", {}),
            "poll_s": 0.02, "request_timeout_s": 5}
    yaml = (TINY_YAML + SMALL + f"backends:\n  video: {which}\n  {section}: {json.dumps(opts)}\n"
            f"rates:\n  video:\n    {which}: {{cost_per_second: {PRICE}}}\n")
    (root / "project.yaml").write_text(yaml, encoding="utf-8")
    (root / "script.fountain").write_text(TWO_SHOTS, encoding="utf-8")
    return root


@pytest.mark.parametrize("which", [pytest.param(n, marks=() if n in FAST else pytest.mark.slow)
                                   for n in fakes.DIRECT])
def test_a_render_through_a_direct_provider_pays_once_per_shot_with_every_character_referenced(
        server, tmp_path, which):
    root = project(tmp_path, server, which)
    check = run_cli("check", str(root), "--json")
    refs = json.loads(check.stdout)["references"]
    assert refs["backend"] == which and refs["shots"], check.stdout
    proc = run_cli("render", str(root))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    proto = fakes.PROTOCOLS[which]
    status = json.loads(run_cli("status", str(root), "--json").stdout)
    shots = [s for e in status["episodes"] for s in e["shots"]]
    assert len(server.created()) == len(shots) and all(s["state"] == "done" for s in shots)
    import sqlite3

    with sqlite3.connect(root / "build" / "ledger.sqlite") as db:
        job_of = dict(db.execute("SELECT unit_id, job_id FROM jobs WHERE state = 'done'").fetchall())
    for row in refs["shots"]:  # each shot's create carried what check said it would
        job = provider_job(server, proto, job_of[row["shot"]])
        received = fakes.PROTOCOLS[which].references(server, job)
        assert received == len(row["sent"]) and received >= 1, (which, row, job.body)
    two = [r for r in refs["shots"] if {s.split(" ")[0] for s in r["sent"]} == {"ANN", "BO"}]
    if refs["limit"] >= 2:
        assert two, "a shot shows both characters, each with a reference"
    else:  # one reference a request (MiniMax's one subject): the other character is named as left out
        warnings = [w["message"] for w in json.loads(check.stdout)["warnings"]]
        assert any("gets no reference image in" in w for w in warnings)
    assert (root / "build" / "episodes" / "ep01.mp4").exists()
    data = json.loads(sorted((root / "build" / "reports").glob("*.json"))[-1].read_text(encoding="utf-8"))
    (video,) = [w for w in data["made"] if w["kind"] == "video"]
    assert video["jobs"] == len(shots) and data["cost"] == pytest.approx(server.billed())
    again = run_cli("render", str(root))  # up to date: nothing is paid for
    assert again.returncode == 0 and len(server.created()) == len(shots)
