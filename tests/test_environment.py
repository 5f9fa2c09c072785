"""The machine under the render fails: a full disk, a read-only build folder, a corrupt ledger, a
second render of the same project beside the first. Each ends in one clear message (no traceback),
keeps what was made, and the same command resumes once the cause is gone.

The full disk and the read-only folder are real: a small tmpfs mounted in a user and mount namespace
(`unshare -rm`, no root needed where the kernel allows it; skipped, with the reason, where it does not).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SMALL, TINY_SCRIPT, TINY_YAML, chaos_calls, run_cli

COUNTING = "backends:\n  video: chaos\n  chaos: {wraps: animatic, fail_rate: 0.0, seed: 1}\n"


def _project(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "project.yaml").write_text(TINY_YAML + SMALL + COUNTING, encoding="utf-8")
    (root / "script.fountain").write_text(TINY_SCRIPT, encoding="utf-8")
    return root


def _cli() -> str:
    exe = Path(sys.executable).with_name("dramaforge")
    return str(exe) if exe.exists() else f"{sys.executable} -m flows.cli"


def _can_mount() -> str:
    """'' if this machine lets the test mount a tmpfs in its own namespace, else why not."""
    if not shutil.which("unshare"):
        return "no unshare(1)"
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k none /mnt 2>&1 || "
                            "mount -t tmpfs -o size=64k none /tmp 2>&1"], capture_output=True, text=True)
    return "" if probe.returncode == 0 else f"cannot mount a tmpfs in a user namespace: {probe.stderr.strip()[:200]}"


needs_mount = pytest.mark.skipif(bool(_can_mount()), reason=_can_mount() or "ok")


def _in_namespace(script: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["unshare", "-rm", "sh", "-ec", script], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=os.environ.copy())


def _one_clear_message(out: str, words: str) -> None:
    assert "Traceback" not in out, out[-3000:]
    assert out.count(words) == 1, out[-3000:]
    assert "hint:" in out and "run the same command again" in out, out[-3000:]


@needs_mount
def test_full_disk_is_one_clear_message(tmp_path):
    """A disk that fills up mid-render: exit 1 and one paragraph naming the path (it was a traceback,
    printed four times through Prefect); after space is freed the same command finishes the series,
    generating no shot twice."""
    _project(tmp_path / "src")
    disk = tmp_path / "disk"
    disk.mkdir()
    script = f"""
mount -t tmpfs -o size=12m none disk
cp -r src disk/p
used=$(du -sk disk | cut -f1)
dd if=/dev/zero of=disk/filler bs=1k count=$((12 * 1024 - used - 1500)) 2>/dev/null
set +e
{_cli()} render disk/p > first.log 2>&1; echo $? > first.rc
rm disk/filler
{_cli()} render disk/p > second.log 2>&1; echo $? > second.rc
{_cli()} status disk/p --json > status.json 2> status.err
cp disk/p/build/shots/calls.jsonl calls.jsonl
"""
    proc = _in_namespace(script, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, second = (tmp_path / "first.log").read_text(), (tmp_path / "second.log").read_text()
    assert (tmp_path / "first.rc").read_text().strip() == "1", first[-3000:]
    _one_clear_message(first, "the disk is full")
    assert "disk/p/build" in first, first[-2000:]
    assert (tmp_path / "second.rc").read_text().strip() == "0", second[-3000:]
    assert "Traceback" not in second
    shots = json.loads((tmp_path / "status.json").read_text())["episodes"][0]["shots"]
    assert shots and all(s["state"] == "done" for s in shots)
    calls = [json.loads(line)["shot"] for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert sorted(calls) == sorted({s["id"] for s in shots}), calls  # each shot generated once


@needs_mount
def test_read_only_build_is_one_clear_message(tmp_path):
    """A read-only build folder: `render` says so once, before starting any work, and `status` of a
    finished build on it still answers or says so (both were tracebacks)."""
    root = _project(tmp_path / "p")
    script = f"""
mkdir -p p/build
mount -t tmpfs -o size=8m none p/build
mount -o remount,ro p/build
set +e
{_cli()} render p > render.log 2>&1; echo $? > render.rc
"""
    proc = _in_namespace(script, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = (tmp_path / "render.log").read_text()
    assert (tmp_path / "render.rc").read_text().strip() == "1", out[-3000:]
    _one_clear_message(out, "read-only file system")
    assert "starting Prefect" not in out, out  # refused before any work
    assert not chaos_calls(root)

    # a finished build, then made read-only, its last rows still in the WAL (as a kill leaves them):
    # status reads them (a plain read-only open fails; an `immutable` one misses the WAL)
    made = run_cli("render", str(root))
    assert made.returncode == 0, made.stderr[-2000:]
    shot = json.loads(run_cli("status", str(root), "--json").stdout)["episodes"][0]["shots"][0]["id"]
    writer = sqlite3.connect(root / "build" / "ledger.sqlite", isolation_level=None)
    try:
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute("UPDATE units SET state='failed', message='only in the WAL' WHERE id=?", (shot,))
        assert (root / "build" / "ledger.sqlite-wal").stat().st_size > 0
        script = f"""
mount --bind p/build p/build
mount -o remount,bind,ro p/build
set +e
{_cli()} status p --json > status.json 2> status.log; echo $? > status.rc
{_cli()} render p > again.log 2>&1; echo $? > again.rc
"""
        proc = _in_namespace(script, tmp_path)
    finally:
        writer.close()
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = (tmp_path / "status.log").read_text()
    assert (tmp_path / "status.rc").read_text().strip() == "0" and "Traceback" not in log, log[-2000:]
    shots = {s["id"]: s for s in json.loads((tmp_path / "status.json").read_text())["episodes"][0]["shots"]}
    assert shots[shot]["state"] == "failed" and shots[shot]["reason"] == "only in the WAL", shots[shot]
    assert all(s["state"] == "done" for i, s in shots.items() if i != shot)
    again = (tmp_path / "again.log").read_text()
    assert (tmp_path / "again.rc").read_text().strip() == "1", again[-2000:]
    _one_clear_message(again, "read-only file system")


def test_corrupt_ledger_is_moved_aside_and_rebuilt_and_status_sees_a_cut_short_clip(tiny_project):
    """`status` called a truncated clip done (the render remakes it), and a shot the render reused
    counted as one more attempt. An unreadable ledger (`file is not a database` ended both status and render in a
    traceback) is moved aside, kept, and rebuilt from the files on disk, which are the truth: status
    shows every whole shot made, and the render makes only the clip that was cut short."""
    (tiny_project / "project.yaml").write_text(TINY_YAML + SMALL + COUNTING, encoding="utf-8")
    assert run_cli("render", str(tiny_project)).returncode == 0
    build = tiny_project / "build"
    rows = {r["id"]: r for r in json.loads(run_cli("status", str(tiny_project), "--json").stdout)
            ["episodes"][0]["shots"]}
    first = sorted(rows)[0]
    clip = Path(rows[first]["artifact"])
    calls = len(chaos_calls(tiny_project))
    data = clip.read_bytes()
    clip.write_bytes(data[: len(data) // 2])
    after = {r["id"]: r for r in json.loads(run_cli("status", str(tiny_project), "--json").stdout)
             ["episodes"][0]["shots"]}
    assert after[first]["state"] == "pending" and "changed since it was made" in after[first]["reason"], after[first]
    assert all(r["state"] == "done" for i, r in after.items() if i != first)

    (build / "ledger.sqlite").write_bytes(os.urandom(8192))
    for extra in ("ledger.sqlite-wal", "ledger.sqlite-shm"):
        (build / extra).unlink(missing_ok=True)
    status = run_cli("status", str(tiny_project), "--json")
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr[-2000:]
    assert "moved aside" in status.stderr and "rebuilt from the files on disk" in status.stderr
    assert "Paid jobs it recorded are not known" in status.stderr
    shots = {s["id"]: s for s in json.loads(status.stdout)["episodes"][0]["shots"]}
    assert shots[first]["state"] == "pending" and not clip.exists()  # the cut-short clip is not taken as made
    assert all(s["state"] == "done" for i, s in shots.items() if i != first), shots
    (aside,) = build.glob("ledger.corrupt-*.sqlite")
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(aside).execute("SELECT * FROM units").fetchall()
    assert not (build / "ledger.sqlite.rebuild").exists()

    again = run_cli("render", str(tiny_project))
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr[-2000:]
    assert [c["shot"] for c in chaos_calls(tiny_project)[calls:]] == [first]
    final = json.loads(run_cli("status", str(tiny_project), "--json").stdout)["episodes"][0]["shots"]
    assert {s["id"]: s["attempts"] for s in final} == {s["id"]: int(s["id"] == first) for s in final}  # reuse: no attempt


def test_a_second_render_sweeps_none_of_the_first_ones_files(tiny_project):
    """What a render finds in build/ as it starts: a live process's temp files and folders and its
    running units are left alone; a dead process's (or a reused pid's) are swept and marked
    interrupted, counted once in the banner (it always said 0: `status`, and the render's own
    checks before it, had reconciled first)."""
    from stages.core.artifacts import start_ticks, owner
    from stages.core.ledger import Ledger

    (tiny_project / "project.yaml").write_text(TINY_YAML + SMALL + COUNTING, encoding="utf-8")
    shots = tiny_project / "build" / "shots"
    shots.mkdir(parents=True)
    host = owner().split("-")[0]
    live = subprocess.Popen(["sleep", "300"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        live_id = f"{host}-{live.pid}-{start_ticks(live.pid)}"
        reused_id = f"{host}-{live.pid}-{start_ticks(live.pid) + 7}"  # same pid, another process's life
        dead_id = f"{host}-{dead.pid}-1"
        kept = [shots / f".abc.by-{live_id}-x1.part.mp4", shots / f".abc.download.by-{live_id}-x2.part.mp4",
                shots / f".animatic.by-{live_id}-x3.part"]
        swept = [shots / f".abc.by-{dead_id}-y1.part.mp4", shots / f".abc.by-{reused_id}-y2.part.mp4",
                 shots / f".animatic.by-{dead_id}-y3.part", shots / ".animatic-legacy1"]
        for p in kept + swept:
            if p.suffix == ".mp4":
                p.write_bytes(b"x")
            else:
                p.mkdir()
                (p / "0.png").write_bytes(b"x")
        ledger = Ledger(tiny_project / "build" / "ledger.sqlite")
        for uid, owner in (("u-live", live_id), ("u-dead", dead_id), ("u-reused", reused_id)):
            ledger.start(uid, kind="speech", episode=9, spec_hash="k")
            with sqlite3.connect(ledger.path) as db:
                db.execute("UPDATE units SET owner=?, pid=? WHERE id=?", (owner, int(owner.split("-")[1]), uid))

        status = run_cli("status", str(tiny_project))
        assert status.returncode == 0, status.stderr[-2000:]
        states = {r.id: r.state for r in ledger.rows(episode=9)}
        assert states == {"u-live": "running", "u-dead": "interrupted", "u-reused": "interrupted"}

        # what a render does as it starts (`flows.guards.start_render`, the numbers of its banner)
        from flows.guards import check_render, start_render
        from stages.load_project import load_project

        lp = load_project(tiny_project)
        assert start_render(lp, check_render(lp, [1])) == (2, 4)  # "resuming: 2 interrupted unit(s), 4 partial …"
        assert all(p.exists() for p in kept) and not any(p.exists() for p in swept)
        assert {r.id: r.state for r in ledger.rows(episode=9)}["u-live"] == "running"
    finally:
        live.send_signal(signal.SIGKILL)
        live.wait()
