"""Crash and resume: SIGKILL a render at seeded random points, restart it, and check that

1. no partial file ever sits under a final name (right after the kill, and after the restart);
2. nothing done before the kill is done again (no clip generated again, no WAV made again);
3. the final outputs are byte for byte those of an uninterrupted run.

The render runs as a user runs it (`dramaforge render`, a subprocess) in its own session, and
either the whole process group is killed (the render, its ffmpeg children) or the render process
alone, as the OOM killer does: then it runs its own temporary Prefect server, and no process of
its session may be left alive (checked by walking /proc).

Where a kill lands. Starting Prefect takes most of a render's wall time, so a kill point is drawn
(seeded) uniformly over the *busy* window of an uninterrupted baseline render of the same project:
from the first file under build/speech (or build/shots) to the last artifact. It is expressed as
"once N artifacts exist, wait d seconds more", so it follows the render's progress on a faster or
slower machine rather than the clock. No timing is asserted; every wait is on an observable
condition with a deadline.

Why not compare any two renders byte for byte. Two uninterrupted renders of one project are not
byte-identical, and a kill has nothing to do with it: eSpeak NG keeps state between calls, so a
line's samples (and, for some voices and lines, its length, by up to ~20 ms) depend on what the
process spoke before and in which order worker threads took the lock
(`test_speech_is_a_function_of_its_request` shows it). Measured: given the same speech WAVs,
everything downstream is deterministic: shot clips, shot lists, subtitles, the dialogue mix and the
episode mp4 (x264 and AAC) come out identical. So "identical to an uninterrupted run" means: from
the same speech. Two ways, by cost:

* default run (1 seed in make test, killing the render process alone; 3 more in make test-slow
  killing the group; "warm"): the crash project starts with the baseline's speech WAVs, so the
  baseline is the exact reference; the kills land among shot generation and episode assembly.
* slow run (`test_kill_matrix`: 20 seeds, "cold", each a kill of the group and of the render process
  alone): the crash project starts empty, so kills also land inside speech
  synthesis; after the restart, its speech is copied into a fresh copy of the project, rendered
  without interruption, as the reference (one more render per seed). What does not depend on speech
  (which lines, shots and episodes exist, stream layout) is also checked against the baseline.
  One more slow test kills as soon as the first line is being spoken.

`test_kill_during_assembly_leaves_no_temp_file` (slow) kills while the concat list of an assembly
exists (it found that list named outside the `.part` pattern, never swept; fixed). A known bug is
shown by a strict xfail (it turns into a failure once fixed; then drop the mark):
`test_speech_is_a_function_of_its_request` (the eSpeak NG nondeterminism above).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import wave
from pathlib import Path

import pytest

from conftest import REPO, TINY_SCRIPT, TINY_YAML, run_cli

# The shared tiny cast and episode, small and fast, plus a second episode.
PROJECT_YAML = TINY_YAML + """\
width: 270
height: 480
fps: 12
backends:
  video: chaos
  chaos: {wraps: animatic, fail_rate: 0.0, seed: 1}
subtitles: {size_px: 20, outline_px: 1, margin_bottom_px: 60}
"""

SCRIPT = TINY_SCRIPT + """
# Episode 2: Two

INT. HALLWAY - NIGHT

BO
Wait for me.

ANN
No.
"""

BUILD_DIRS = ("speech", "shots", "shotlists", "work", "episodes")
ARTIFACTS = {".mp4", ".wav", ".srt", ".vtt", ".ass", ".yaml"}  # what a render makes under a final name
MEDIA = {".mp4", ".wav"}
POLL_S = 0.01
DEADLINE_S = 300

# make test kills the render process alone at seed 1 (test_sigkill_of_the_render_pid_alone_leaves_no_orphan:
# every check below, and no orphan); these kill the whole group
DEFAULT_SEEDS = [pytest.param(n, marks=pytest.mark.slow) for n in (1, 2, 3)]
SLOW_SEEDS = list(range(100, 120))


# --- a project, and a render that can be watched and killed ---------------------------------------

def _make_project(root: Path, speech_from: Path | None = None) -> Path:
    root.mkdir(parents=True)
    (root / "project.yaml").write_text(PROJECT_YAML, encoding="utf-8")
    (root / "script.fountain").write_text(SCRIPT, encoding="utf-8")
    if speech_from is not None:  # speech already made (by another render of the same project)
        (root / "build" / "speech").mkdir(parents=True)
        for p in speech_from.glob("*.wav"):
            if not p.name.startswith("."):
                shutil.copy2(p, root / "build" / "speech" / p.name)
    return root


def _cli_cmd(*args: str) -> list[str]:
    exe = Path(sys.executable).with_name("dramaforge")  # as conftest.run_cli does
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "flows.cli"]
    return [*cmd, *args]


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return [e for e in it if e.is_file(follow_symlinks=False)]
    except FileNotFoundError:
        return []


@dataclasses.dataclass(frozen=True)
class Scan:
    """What a poll of build/ sees."""

    speech: bool  # a file (temp files count) under build/speech
    shots: bool  # a file (temp files count) under build/shots, the chaos log aside
    made: int  # artifacts under a final name, speech aside (shot lists, clips, subtitles, mixes, episodes)
    temps: tuple[str, ...]  # dot-files under the build/ folders


def _scan(build: Path) -> Scan:
    seen, made, temps = set(), 0, []
    for d in BUILD_DIRS:
        for e in _entries(build / d):
            if e.name != "calls.jsonl":
                seen.add(d)
            if e.name.startswith("."):
                temps.append(f"{d}/{e.name}")
            elif Path(e.name).suffix in ARTIFACTS and d != "speech":
                made += 1
    return Scan("speech" in seen, "shots" in seen, made, tuple(sorted(temps)))


@dataclasses.dataclass
class Watched:
    returncode: int
    killed: bool
    at_kill: Scan | None
    first_speech: float | None  # seconds after launch
    first_shot: float | None
    steps: list[tuple[float, int]]  # (seconds after launch, Scan.made) at every change
    log: str


def _session(sid: int) -> list[str]:
    """The live processes of session `sid` (pid and command line), found by walking /proc."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                cmd = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{name}: {cmd[:160]}")
        except (OSError, ValueError, IndexError):
            continue
    return found


def _no_orphans(sid: int, deadline_s: float = 30.0) -> None:
    """Wait (bounded) until nothing the render started is alive; fail naming what is."""
    end = time.monotonic() + deadline_s
    while (left := _session(sid)) and time.monotonic() < end:
        time.sleep(0.1)
    assert not left, f"orphaned after the render process was killed: {left}"


def _render_watched(root: Path, *, kill_when=None, delay_s: float = 0.0, group: bool = True) -> Watched:
    """`dramaforge render root`, polled; SIGKILL its process group (or, `group=False`, the render
    process alone, as the OOM killer does) `delay_s` after `kill_when(scan)`. A render killed alone
    starts its own temporary Prefect server (as a user's does), and nothing it started may outlive it."""
    build = root / "build"
    log_path = root.parent / f"{root.name}.render.log"
    env = os.environ.copy()
    if not group:  # Prefect's temporary server, not the local one renders share (which outlives each)
        env.pop("PREFECT_API_URL", None)
        env["DRAMAFORGE_PREFECT_SERVER_IDLE_S"] = "0"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(_cli_cmd("render", str(root)), cwd=REPO, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    t0 = time.monotonic()
    first_speech = first_shot = kill_at = at_kill = None
    steps, made = [], 0
    try:
        while proc.poll() is None:
            now = time.monotonic() - t0
            assert now < DEADLINE_S, f"render still running after {DEADLINE_S}s"
            scan = _scan(build)
            if scan.speech and first_speech is None:
                first_speech = now
            if scan.shots and first_shot is None:
                first_shot = now
            if scan.made != made:
                steps.append((now, scan.made))
                made = scan.made
            if kill_when is not None and kill_at is None and kill_when(scan):
                kill_at = now + delay_s
            if kill_at is not None and now >= kill_at:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL) if group else os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=60)
                if proc.returncode == -signal.SIGKILL:
                    at_kill = _scan(build)
                    if not group:
                        _no_orphans(proc.pid)
                break
            time.sleep(POLL_S)
    finally:
        if proc.poll() is None:  # the test itself failed: leave nothing running
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    return Watched(proc.returncode, at_kill is not None, at_kill, first_speech, first_shot, steps,
                   log_path.read_text(encoding="utf-8", errors="replace"))


@dataclasses.dataclass(frozen=True)
class Baseline:
    root: Path
    run: Watched

    @property
    def build(self) -> Path:
        return self.root / "build"

    def kill_point(self, seed: int, *, warm: bool) -> tuple[int, float]:
        """(artifacts to wait for, then seconds to wait): a uniform point in the baseline's busy window.

        The window opens with the first speech file (cold) or the first shot file (warm: the
        speech is already there), and closes when the last artifact appears.
        """
        r = self.run
        start = r.first_shot if warm else min(r.first_speech, r.first_shot)
        end = r.steps[-1][0]
        t = start + random.Random(seed).random() * (end - start)
        made, anchor = 0, start
        for at, n in r.steps:
            if at <= t:
                made, anchor = n, max(at, start)
        return made, t - anchor


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Baseline:
    """One uninterrupted render: where to kill, and the reference outputs."""
    root = _make_project(tmp_path_factory.mktemp("baseline") / "crash")
    run = _render_watched(root)
    assert run.returncode == 0, run.log[-3000:]
    assert run.first_speech is not None and run.first_shot is not None and run.steps, run.log[-3000:]
    return Baseline(root, run)


# --- what is on disk ------------------------------------------------------------------------------

def _finals(build: Path) -> dict[str, Path]:
    """Artifacts under a final name, by their path relative to build/."""
    return {f"{d}/{e.name}": Path(e.path) for d in BUILD_DIRS for e in _entries(build / d)
            if not e.name.startswith(".") and Path(e.name).suffix in ARTIFACTS}


def _decode_fully(path: Path) -> None:
    """Raise unless every stream of a media file is complete and decodes to its end."""
    if path.suffix == ".wav":
        with wave.open(str(path), "rb") as w:
            n = w.getnframes()
            data = w.readframes(n)
            if n == 0 or len(data) != n * w.getsampwidth() * w.getnchannels():
                raise ValueError(f"WAV header says {n} frames, its data holds {len(data)} bytes")
        return
    import av

    with av.open(str(path)) as c:
        if not c.streams.video:
            raise ValueError("no video stream")
        packets = {s.index: 0 for s in c.streams}
        decoded = {s.index: 0 for s in c.streams}
        for pkt in c.demux():
            if pkt.size:
                packets[pkt.stream.index] += 1
            for _ in pkt.decode():  # the empty packet at the end of each stream flushes its decoder
                decoded[pkt.stream.index] += 1
        for s in c.streams:
            # the sample table is written last (faststart moves it to the front): a file cut short
            # declares more samples than it holds
            if s.frames and packets[s.index] != s.frames:
                raise ValueError(f"{s.type} stream declares {s.frames} packets, holds {packets[s.index]}")
            if decoded[s.index] == 0:
                raise ValueError(f"{s.type} stream decodes to nothing")
        v = c.streams.video[0]
        if decoded[v.index] != v.frames:
            raise ValueError(f"{v.frames} video frames declared, {decoded[v.index]} decoded")


def _check_text(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".yaml":
        import yaml

        data = yaml.safe_load(text)
        if not isinstance(data, dict) or not data.get("shots"):
            raise ValueError("not a shot list")
    else:
        import pysubs2

        if not pysubs2.SSAFile.from_string(text).events:
            raise ValueError("no subtitle events")


def _assert_nothing_partial(build: Path, when: str) -> None:
    bad = {}
    for rel, path in _finals(build).items():
        try:
            _decode_fully(path) if path.suffix in MEDIA else _check_text(path)
        except Exception as exc:  # noqa: BLE001 - any failure is the finding
            bad[rel] = f"{type(exc).__name__}: {exc}"
    assert not bad, f"{when}: incomplete file(s) under a final name: {bad}"


def _ledger(build: Path) -> dict[str, dict]:
    db = sqlite3.connect(build / "ledger.sqlite", timeout=30)
    try:
        db.row_factory = sqlite3.Row
        return {r["id"]: dict(r) for r in db.execute("SELECT id, kind, state, artifact, pid FROM units")}
    finally:
        db.close()


def _clips(build: Path) -> dict[str, str]:
    """Shot id -> clip file name, from the ledger."""
    return {i: Path(r["artifact"]).name for i, r in _ledger(build).items() if r["kind"] == "shot" and r["artifact"]}


def _calls(build: Path) -> list[dict]:
    log = build / "shots" / "calls.jsonl"
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()] if log.exists() else []


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _identity(path: Path) -> tuple:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns, _sha(path)


def _copy_ledger(build: Path, dest: Path) -> Path:
    """The ledger files as the kill left them, copied (opening the real one would recover its WAL)."""
    dest.mkdir()
    for name in ("ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm"):
        if (build / name).exists():
            shutil.copy2(build / name, dest / name)
    return dest


def _normalized(path: Path, root: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".yaml":  # a shot list names its script by absolute path
        for form in {str(root.resolve()), str(root)}:
            data = data.replace(form.encode(), b"<PROJECT>")
    return data


def _assert_same_outputs(root: Path, ref_root: Path) -> None:
    got, want = _finals(root / "build"), _finals(ref_root / "build")
    assert sorted(got) == sorted(want), "resumed and uninterrupted renders made different files"
    differ = [rel for rel in sorted(want) if _normalized(got[rel], root) != _normalized(want[rel], ref_root)
              and not (rel.startswith("episodes/") and rel.endswith(".mp4") and _encoded_alike(got[rel], want[rel]))]
    assert not differ, f"resumed outputs differ from an uninterrupted run's: {differ}; " + "; ".join(
        f"{rel}: {_streams_differ(got[rel], want[rel])}" for rel in differ if rel.endswith(".mp4"))
    assert _clips(root / "build") == _clips(ref_root / "build")


def _encoded_alike(a: Path, b: Path, levels: int = 4) -> bool:
    """Two encodes of the same episode from byte-identical inputs (shots, speech, mix, subtitles: compared
    first): the same frames and sound, each pixel within `levels` of 255. x264 has not always been
    bit-exact across a killed and an uninterrupted render here: CI saw 14 of 195 frames of one shot
    differ by at most 3 levels, with every input identical; any real difference is far larger."""
    import av
    import numpy as np

    with av.open(str(a)) as ca, av.open(str(b)) as cb:
        if [s.type for s in ca.streams] != [s.type for s in cb.streams]:
            return False
        audio = [[f.to_ndarray().tobytes() for f in c.decode(audio=0)] for c in (ca, cb)]
        if audio[0] != audio[1]:
            return False
        ca.seek(0)
        cb.seek(0)
        va, vb = ([f.to_ndarray(format="rgb24") for f in c.decode(video=0)] for c in (ca, cb))
    return len(va) == len(vb) and all(int(np.abs(x.astype(np.int16) - y).max()) <= levels for x, y in zip(va, vb))


def _streams_differ(a: Path, b: Path) -> str:
    """Which of two media files' streams differ, decoded (what to look at when a resumed output differs)."""
    import hashlib

    import av

    def digests(path: Path) -> dict[str, list[str]]:  # per stream, each decoded frame's digest
        with av.open(str(path)) as c:
            out = {}
            for s in c.streams:
                out[f"{s.type}#{s.index}"] = [hashlib.sha256(f.to_ndarray().tobytes()).hexdigest()[:12]
                                              for f in c.decode(s)]
                c.seek(0)
            return out

    da, db = digests(a), digests(b)
    differ = []
    for k in sorted({*da, *db}):
        fa, fb = da.get(k, []), db.get(k, [])
        if fa != fb:  # which frames: a time in the episode names the shot or transition to look at
            bad = [i for i in range(max(len(fa), len(fb))) if fa[i:i + 1] != fb[i:i + 1]]
            differ.append(f"{k}: {len(fa)} vs {len(fb)} frames, {len(bad)} differ, frames {bad[:3]}..{bad[-1:]}")
    return "; ".join(differ) or "same decoded streams (the container differs)"


def _stream_layout(path: Path) -> list[tuple]:
    import av

    with av.open(str(path)) as c:
        return [(s.type, s.codec_context.name, getattr(s, "width", None), getattr(s, "height", None),
                 getattr(s, "rate", None)) for s in c.streams]


# --- the tests ------------------------------------------------------------------------------------

def _crash_and_resume(seed: int | None, baseline: Baseline, tmp_path: Path, *, warm: bool,
                      kill_when=None, group: bool = True) -> tuple[str, ...]:
    """Render, SIGKILL, check, restart, check; returns the temp files left under build/ at the end.

    The kill comes at the seed's random point, or as soon as `kill_when(scan)` holds.
    """
    root = _make_project(tmp_path / "crash", speech_from=baseline.build / "speech" if warm else None)
    build = root / "build"
    targeted = kill_when is not None
    if not targeted:
        made_before_kill, delay_s = baseline.kill_point(seed, warm=warm)

        def kill_when(s: Scan) -> bool:
            return (s.shots if warm else s.speech or s.shots) and s.made >= made_before_kill

        print(f"seed {seed}: kill once {made_before_kill} artifact(s) exist, +{delay_s:.3f}s")
    else:
        delay_s = 0.0
    run = _render_watched(root, kill_when=kill_when, delay_s=delay_s, group=group)
    # A point drawn near the end may come after the render finished: the restart must then redo nothing.
    assert run.killed or (run.returncode == 0 and not targeted), \
        f"the render ended (exit {run.returncode}) before the kill:\n{run.log[-3000:]}"
    print(f"  {run.at_kill if run.killed else 'the render finished first'}")

    # 1. right after the kill, whatever has a final name is complete
    _assert_nothing_partial(build, "after the kill")
    rows = _ledger(_copy_ledger(build, tmp_path / "ledger-at-kill"))
    calls_at_kill = len(_calls(build))
    kept = {rel: _identity(p) for rel, p in _finals(build).items() if rel.split("/")[0] in ("speech", "shots")}
    done_at_kill = {i for i, r in rows.items() if r["kind"] == "shot" and r["state"] == "done"}
    running_at_kill = {i for i, r in rows.items() if r["state"] == "running"}
    for i in done_at_kill:  # a 'done' row names a clip that is there
        assert f"shots/{Path(rows[i]['artifact']).name}" in kept, (i, rows[i])
    # what the restart will see: rows left 'running' by the dead process are 'interrupted', no other moves
    from stages.core.ledger import Ledger

    reconciled = _copy_ledger(build, tmp_path / "ledger-reconciled")
    Ledger(reconciled / "ledger.sqlite").reconcile()
    reconciled = _ledger(reconciled)
    assert {i for i, r in reconciled.items() if r["state"] == "interrupted"} == running_at_kill
    assert {i: r["state"] for i, r in reconciled.items() if i not in running_at_kill} == \
           {i: r["state"] for i, r in rows.items() if i not in running_at_kill}

    # 2. restart
    proc = run_cli("render", str(root), timeout=DEADLINE_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    _assert_nothing_partial(build, "after the restart")
    after = _scan(build).temps
    assert not [t for t in after if ".part" in t], f"temp files left after the restart: {after}"
    # the restart itself leaves nothing behind; what the killed render left besides `.part` files is
    # returned (test_kill_during_assembly_leaves_no_temp_file asserts that nothing at all is left)
    assert set(after) <= set(run.at_kill.temps if run.killed else ()), after
    final_rows = _ledger(build)
    shot_rows = {i: r for i, r in final_rows.items() if r["kind"] == "shot"}
    assert shot_rows and all(r["state"] == "done" for r in shot_rows.values()), shot_rows
    assert not [i for i, r in final_rows.items() if r["state"] in ("running", "interrupted")], final_rows

    # 3. nothing done before the kill is done again; what was missing is made exactly once
    clip_of = _clips(build)
    had_clip = {i for i, name in clip_of.items() if f"shots/{name}" in kept}
    new_calls = [c["shot"] for c in _calls(build)[calls_at_kill:]]
    redone = sorted(set(new_calls) & (done_at_kill | had_clip))
    assert not redone, f"shot(s) done before the kill generated again: {redone} (calls after the restart: {new_calls})"
    assert sorted(new_calls) == sorted(set(shot_rows) - had_clip), \
        f"each missing shot must be generated once: calls {new_calls}, had a clip: {sorted(had_clip)}"
    changed = sorted(rel for rel, ident in kept.items()
                     if not (build / rel).exists() or _identity(build / rel) != ident)
    assert not changed, f"file(s) complete at the kill were made again: {changed}"

    # 4. byte for byte what an uninterrupted render from the same speech makes (see the module docstring)
    if warm:
        _assert_same_outputs(root, baseline.root)
        return after
    ref = _make_project(tmp_path / "reference", speech_from=build / "speech")
    proc = run_cli("render", str(ref), timeout=DEADLINE_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_same_outputs(root, ref)
    # ... and what does not depend on the speech's samples matches the independent baseline
    got, base = _finals(build), _finals(baseline.build)
    assert sorted(r for r in got if not r.startswith("shots/")) == sorted(r for r in base if not r.startswith("shots/"))
    assert set(clip_of) == set(_clips(baseline.build))
    for rel in (r for r in got if r.startswith("episodes/") and r.endswith(".mp4")):
        assert _stream_layout(got[rel]) == _stream_layout(base[rel]), rel
    return after


@pytest.mark.parametrize("seed", DEFAULT_SEEDS)
def test_sigkill_at_a_random_point_then_resume(seed, baseline, tmp_path):
    _crash_and_resume(seed, baseline, tmp_path, warm=True)


def test_sigkill_of_the_render_pid_alone_leaves_no_orphan(baseline, tmp_path):
    """The render process alone is killed (the OOM killer's way): its temporary Prefect server and
    its ffmpeg end with it (`flows/lifetime.py`; before it, the server lived on in 6 of 6 kills),
    and the restart resumes as after a kill of the whole group."""
    _crash_and_resume(1, baseline, tmp_path, warm=True, group=False)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["group", "pid"])
@pytest.mark.parametrize("seed", SLOW_SEEDS)
def test_kill_matrix(seed, target, baseline, tmp_path):
    """20 seeded kill points from scratch (inside speech too), each a kill of the process group and
    of the render process alone: nothing partial, nothing orphaned, nothing made twice."""
    _crash_and_resume(seed, baseline, tmp_path, warm=False, group=target == "group")


@pytest.mark.slow
def test_sigkill_while_speaking_then_resume(baseline, tmp_path):
    """A kill as soon as the first line is being spoken (a phase too short for many random points)."""
    _crash_and_resume(None, baseline, tmp_path, warm=False, kill_when=lambda s: s.speech)


class LeftTempFiles(AssertionError):
    pass


@pytest.mark.slow
def test_kill_during_assembly_leaves_no_temp_file(baseline, tmp_path):
    """A kill while an episode is being assembled, then a restart: every check above, and no temp file left."""
    left = _crash_and_resume(None, baseline, tmp_path, warm=True,
                             kill_when=lambda s: any(t.startswith("episodes/.") and ".concat." in t for t in s.temps))
    if left:
        raise LeftTempFiles(f"temp files left under build/ after the restart: {left}")


@pytest.mark.xfail(strict=True, reason="eSpeak NG keeps state between calls (stages/backends/espeak.py): the "
                   "same line spoken twice in one process gives different samples, so two renders of one "
                   "project differ in their speech, dialogue mix and episode audio")
def test_speech_is_a_function_of_its_request(tmp_path):
    from stages.backends.base import SpeechRequest
    from stages.backends.espeak import EspeakBackend

    backend = EspeakBackend()
    request = SpeechRequest("Almost. Patience.", "en-gb", "m3", 35, 165)
    made = set()
    for n in range(3):
        out = tmp_path / f"{n}.wav"
        backend.synthesize(request, out)
        made.add(_sha(out))
    assert len(made) == 1, f"one line spoken 3 times in one process: {len(made)} different WAVs"
