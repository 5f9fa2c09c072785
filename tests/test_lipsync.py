"""Dialogue that moves the lips: the eligibility rules, the pieces a backend is sent, the sync figure on
the animatic (speech-driven mouths score high, the wrong or a shifted line low), a CLI render with
`dialogue: tts+lipsync` that syncs exactly the eligible shots once, and `dialogue: native` end to end
against a local provider whose clip has its own sound (the mix uses it, subtitles keep the line timing,
loudness holds)."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import fakes
from conftest import SMALL, TINY_YAML, run_cli
from fake_hosted import FakeHosted
from fake_openai import provider_mp4  # noqa: F401 (a fixture)
from stages.backends.base import LipSyncCapabilities
from stages.schema import Project, Shot, ShotLine
from stages.sync_lips import Turn, line_verdicts, native_lines, pieces_of, turns

CAST = {"title": "T", "cast": [
    {"id": "ann", "name": "ANN", "description": "a woman"},
    {"id": "bo", "name": "BO", "description": "a man", "dialogue": "tts"}]}


def project(**kw) -> Project:
    return Project.model_validate({**CAST, "dialogue": "tts+lipsync", **kw})


def shot(size="close-up", characters=("ann", "bo"), lines=(("ann", None),), duration_s=4.0, **kw) -> Shot:
    return Shot(id="ep01-sc01-sh001", episode=1, scene=1, size=size, location="KITCHEN", characters=list(characters),
                lines=[ShotLine(character=c, text=f"line {i}", extension=ext, file="s.fountain", line=3 + i,
                                speech_s=1.5) for i, (c, ext) in enumerate(lines)],
                duration_s=duration_s, file="s.fountain", line=1, **kw)


# --- who is synced, and why not ------------------------------------------------------------------

def test_a_speaker_on_screen_in_a_close_framing_is_synced():
    assert line_verdicts(shot(), project()) == [(0, True, "")]


@pytest.mark.parametrize("s, why", [
    (shot(size="wide"), "a wide does not show the face well enough"),
    (shot(characters=("bo",)), "ANN is not on screen"),
    (shot(lines=(("ann", "V.O."),)), "ANN is heard, not seen speaking (V.O.)"),
    (shot(lipsync=False), "lipsync: false in the shot list"),
])
def test_each_rule_names_why_a_line_is_not_synced(s, why):
    ((_, ok, said),) = line_verdicts(s, project())
    assert not ok and said.startswith(why)


def test_a_shot_can_force_sync_and_modes_override_project_character_shot():
    assert line_verdicts(shot(size="wide", lipsync=True), project()) == [(0, True, "")]
    assert line_verdicts(shot(lines=(("bo", None),)), project()) == []  # BO's own mode is tts
    assert line_verdicts(shot(lines=(("bo", None),), dialogue="tts+lipsync"), project())[0][1]
    assert line_verdicts(shot(), project(dialogue="tts")) == []
    assert native_lines(shot(lines=(("ann", None), ("bo", None), ("ann", "V.O."))), project(dialogue="native")) == [0]


def test_two_speakers_are_synced_per_span_split_where_their_words_meet():
    s = shot(lines=(("ann", None), ("bo", None), ("bo", None), ("ann", None)), duration_s=8.0)
    p = project(cast=[{**c, "dialogue": None} for c in CAST["cast"]])
    got = turns(s, p)
    assert [(t.character, t.lines) for t in got] == [("ann", (0,)), ("bo", (1, 2)), ("ann", (3,))]
    for a, b in zip(got, got[1:]):  # neighbouring pieces may not reach into each other's words
        assert a.hi_s == b.lo_s and a.end_s <= a.hi_s <= b.start_s


def test_pieces_grow_to_the_backends_shortest_split_at_its_longest_or_are_named():
    turn = Turn("ann", (0,), start_s=1.0, end_s=1.8, lo_s=0.0, hi_s=6.0)
    (piece,), why = pieces_of(turn, LipSyncCapabilities(min_s=2.0), 24)
    assert not why and 48 <= piece[1] <= 49 and piece[0] <= 24 <= 43 <= piece[0] + piece[1]
    pieces, _ = pieces_of(Turn("ann", (0,), 0.5, 14.0, 0.0, 15.0), LipSyncCapabilities(min_s=2, max_s=10), 24)
    assert len(pieces) == 2 and all(48 <= f <= 240 for _, f in pieces)
    assert pieces[0][0] + pieces[0][1] == pieces[1][0]  # back to back, nothing lost
    none, why = pieces_of(Turn("ann", (0,), 0.2, 0.9, 0.0, 1.2), LipSyncCapabilities(min_s=2.0), 24)
    assert none == [] and "takes pieces of 2 s or more" in why


# --- the sync figure, on the animatic ----------------------------------------------------------------

SYNC_YAML = TINY_YAML + "width: 540\nheight: 960\nfps: 24\ndialogue: tts+lipsync\n"  # the figure needs 24 fps
SYNC_SCRIPT = """\
Title: Sync

# Episode 1: One

INT. KITCHEN - DAY

ANN and BO sit at the table.

ANN
I told you the kettle was broken, and you said it would be fine, and now look at the floor.

BO
It was working this morning. Somebody must have dropped it when they came in late.

EXT. GARDEN - DAY

ANN stands alone on the lawn.

BO (V.O.)
Fine.
"""


@pytest.fixture(scope="module")
def synced(tmp_path_factory):
    """The two-line project rendered once with the offline lip sync (the animatic's speech-driven mouths)."""
    root = tmp_path_factory.mktemp("sync") / "p"
    root.mkdir()
    (root / "project.yaml").write_text(SYNC_YAML, encoding="utf-8")
    (root / "script.fountain").write_text(SYNC_SCRIPT, encoding="utf-8")
    check = run_cli("check", str(root), "--json")
    proc = run_cli("render", str(root))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return root, json.loads(check.stdout)


def _work(root: Path):
    from stages.backends.registry import backends_for
    from stages.load_project import load_project
    from stages.plan_work import plan_work

    lp = load_project(root)
    return plan_work(lp, 1, backends_for(lp.project, lp.root))


def test_the_figure_is_high_for_speech_driven_lips_and_low_for_the_wrong_or_a_shifted_line(synced, tmp_path):
    from stages.core.media import run_ffmpeg
    from stages.core.sync_figure import sync_figure
    from stages.sync_lips import cut_frames, mouth_box

    work = _work(synced[0])
    units = {u.shot_id: u for u in work.syncs}
    assert len(units) == 2
    pieces = {u.shot_id: u.pieces[0] for u in units.values()}
    a, b = list(units)
    for sid, other in ((a, b), (b, a)):
        u, p = units[sid], pieces[sid]
        box = mouth_box(u.faces, p.character)
        right = sync_figure(p.path, p.audio, 24, box)["figure"]
        wrong = sync_figure(p.path, pieces[other].audio, 24, box)["figure"]
        late = tmp_path / f"{sid}-late.wav"  # the same line, a second late
        run_ffmpeg(["-i", str(p.audio), "-af", "adelay=1000:all=1", str(late)])
        shifted = sync_figure(p.path, late, 24, box)["figure"]
        flap = tmp_path / f"{sid}-flap.mp4"  # the animatic's fixed-rate flap, the same frames
        cut_frames(u.source, p.start, p.frames, 24, flap)
        fixed = sync_figure(flap, p.audio, 24, box)["figure"]
        assert right >= 0.45, (sid, right)
        assert wrong < 0.35 and shifted < 0.35, (sid, right, wrong, shifted)
        assert fixed < right - 0.15, (sid, right, fixed)
        report = json.loads(u.report.read_text(encoding="utf-8"))
        assert report["figure"] == pytest.approx(right, abs=1e-3) and report["pieces"][0]["region_from"] == "face"


def test_the_render_syncs_exactly_the_eligible_shots_and_the_cut_shows_them(synced):
    root, check = synced
    work = _work(root)
    eligible = {r["shot"] for r in check["lipsync"]["synced"]}
    assert eligible == {u.shot_id for u in work.syncs} == {s.id for s in work.plan.shots if s.lines
                                                           and s.scene == 1} and len(eligible) == 2
    skipped = {r["shot"]: r["why"] for r in check["lipsync"]["not_synced"]}
    assert list(skipped.values()) == ["BO is heard, not seen speaking (V.O.)"]  # the garden's "Fine."
    by_shot = {u.shot_id: u for u in work.syncs}
    for unit, clip in zip(work.shots, work.cut.clips):
        assert clip == (by_shot[unit.id].path if unit.id in by_shot else unit.path)
    for u in work.syncs:
        assert u.path.exists() and u.path.read_bytes() != u.source.read_bytes()
    status = json.loads(run_cli("status", str(root), "--json").stdout)["episodes"][0]
    assert [s["state"] for s in status["lipsync"]] == ["done"] * len(work.syncs)
    assert all(s["figure"] >= 0.4 and not s["low"] for s in status["lipsync"])
    page = (root / "build" / "review" / "ep01.html").read_text(encoding="utf-8")
    assert page.count("lips synced by animatic: done") == len(work.syncs)
    made = {u.id: u.path.stat().st_mtime_ns for u in work.syncs}
    (root / "build" / "episodes" / "ep01.mp4").unlink()
    again = run_cli("render", str(root))  # the episode cut again: nothing synced twice
    assert again.returncode == 0, again.stderr[-2000:]
    assert {u.id: u.path.stat().st_mtime_ns for u in work.syncs} == made
    data = json.loads(sorted((root / "build" / "reports").glob("*.json"))[-1].read_text(encoding="utf-8"))
    (lips,) = [w for w in data["made"] if w["kind"] == "lipsync"]
    assert (lips["todo"], lips["cached"]) == (0, len(work.syncs))
    with sqlite3.connect(root / "build" / "ledger.sqlite") as db:
        rows = db.execute("SELECT id FROM units WHERE kind = 'lipsync' AND state = 'done'").fetchall()
    assert sorted(i for i, in rows) == sorted(made)
    yaml = (root / "project.yaml").read_text(encoding="utf-8")  # a stricter bar: both shots are flagged
    (root / "project.yaml").write_text(yaml.replace("dialogue: tts+lipsync", "dialogue: {mode: tts+lipsync, "
                                                    "min_sync: 0.95}"), encoding="utf-8")
    try:
        text = run_cli("status", str(root)).stdout
        assert text.count("is below dialogue.min_sync 0.95") == len(work.syncs), text
        assert run_cli("review", str(root)).returncode == 0
        page = (root / "build" / "review" / "ep01.html").read_text(encoding="utf-8")
        assert page.count("below 0.95: look closely, or re-take it") == len(work.syncs)
    finally:
        (root / "project.yaml").write_text(yaml, encoding="utf-8")


# --- dialogue: native ----------------------------------------------------------------------------

TONE = 3150.0  # the fake model's "voice": a pure tone, easy to find in the mix


@pytest.fixture
def speaking_mp4(tmp_path) -> bytes:
    """What the fake model makes: 6 s of picture with a sound track of its own (its 'voice')."""
    from stages.core.media import run_ffmpeg

    out = tmp_path / "spoken.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc=size=480x832:rate=24:duration=6", "-f", "lavfi",
                "-i", f"sine=frequency={TONE:g}:duration=6", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
                "-shortest", str(out)])
    return out.read_bytes()


def _band_share(x, lo: float, hi: float, rate: int = 48_000) -> float:
    spec = np.abs(np.fft.rfft(x.mean(axis=1))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / rate)
    return float(spec[(f >= lo) & (f <= hi)].sum() / max(spec.sum(), 1e-12))


def test_native_dialogue_is_asked_for_kept_mixed_at_loudness_and_subtitled_at_the_line_timing(
        speaking_mp4, tmp_path, monkeypatch):
    from stages.core.loudness import measure_ebur128
    from stages.core.media import decode_audio

    proto = fakes.PROTOCOLS["seedance"]
    for env, value in proto.ENV.items():
        monkeypatch.setenv(env, value)
    server = FakeHosted(speaking_mp4)
    try:
        root = tmp_path / "p"
        root.mkdir()
        opts = {**proto.options(server), "audio": True, "poll_s": 0.02, "request_timeout_s": 5}
        (root / "project.yaml").write_text(TINY_YAML + SMALL + "dialogue: native\n"
                                           f"backends:\n  video: seedance\n  seedance: {json.dumps(opts)}\n",
                                           encoding="utf-8")
        (root / "script.fountain").write_text(
            "Title: N\n\n# Episode 1: One\n\nINT. KITCHEN - DAY\n\nANN sits alone.\n\nANN\n(quietly)\nIs it ready yet?\n",
            encoding="utf-8")
        proc = run_cli("render", str(root))
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        jobs = server.created()
        prompts = [next(c["text"] for c in j.body["content"] if c["type"] == "text") for j in jobs]
        (prompt,) = [p for p in prompts if "Spoken dialogue" in p]  # only the shot where ANN speaks
        assert all(j.body["generate_audio"] is True for j in jobs)
        assert 'ANN, says (acting note: "quietly"): "Is it ready yet?"' in prompt and "No other speech" in prompt

        work = _work(root)
        (native,) = work.cut.native
        start, end, clip = native
        assert work.cut.by_model == [True]
        mix = decode_audio(root / "build" / "work" / "ep01.mix.wav")
        a, b = int(start * 48_000), int(end * 48_000)
        inside, outside = _band_share(mix[a:b], TONE - 20, TONE + 20), _band_share(mix[:a], TONE - 20, TONE + 20)
        assert inside > 0.5 and outside < 0.01, (inside, outside)  # the model's voice, only in its shot
        target, _ = work_target(root)
        assert measure_ebur128(root / "build" / "episodes" / "ep01.mp4").integrated_lufs == pytest.approx(target, abs=1.0)
        srt = (root / "build" / "episodes" / "ep01.srt").read_text(encoding="utf-8")
        (cue,) = re.findall(r"(\d\d:\d\d:\d\d,\d\d\d) --> (\d\d:\d\d:\d\d,\d\d\d)", srt)
        ln = work.cut.lines[0]
        assert [_seconds(t) for t in cue] == pytest.approx([ln.start_s, ln.end_s], abs=0.002)
        status = json.loads(run_cli("status", str(root), "--json").stdout)["episodes"][0]["lipsync"]
        assert [s["id"] for s in status] == [f"{work.shots[-1].id}-native"] and status[0]["figure"] is not None
        again = run_cli("render", str(root))
        assert again.returncode == 0 and len(server.created()) == len(jobs)
        # a second take of the speaking shot, chosen: its own sound is what the cut voices the line with
        import yaml

        listed = root / "build" / "shotlists" / "ep01.yaml"
        data = yaml.safe_load(listed.read_text(encoding="utf-8"))
        data["shots"][-1].update(takes=2, take=2)
        listed.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        work = _work(root)
        (two,) = [u for u in work.shots if u.take == 2]
        assert two.chosen and [p for _, _, p in work.cut.native] == [two.path] and work.cut.by_model == [True]
    finally:
        server.close()


def test_native_needs_a_video_backend_that_makes_sound(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    (root / "project.yaml").write_text(TINY_YAML + SMALL + "dialogue: native\n", encoding="utf-8")
    (root / "script.fountain").write_text("Title: N\n\n# Episode 1: One\n\nINT. ROOM - DAY\n\nANN\nHi.\n",
                                          encoding="utf-8")
    check = run_cli("check", str(root))
    assert check.returncode == 2 and "makes no sound of its own" in check.stderr
    render = run_cli("render", str(root))
    assert render.returncode != 0 and "Traceback" not in render.stderr and "makes no sound" in render.stderr


def work_target(root: Path) -> tuple[float, float]:
    from stages.load_project import load_project

    return load_project(root).project.audio.target


def _seconds(stamp: str) -> float:
    h, m, rest = stamp.split(":")
    s, ms = rest.split(",")
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


# --- tts+lipsync through the local servers: the done-when render ------------------------------------

LIPSYNC_PRICE = 0.04  # what the fake sync provider bills per second of video it is sent


def test_a_cli_render_syncs_exactly_the_eligible_shots_once_through_the_providers(provider_mp4, tmp_path,
                                                                                   monkeypatch):
    """Kling makes the shots and Sync Labs syncs the lips, both the local servers: each eligible shot's
    pieces are paid once, the cut shows the synced pieces and only those, a render again pays nothing,
    and a re-take of one shot pays for that shot and its sync only."""
    import fakes_lipsync
    from fakes_lipsync._media import mark_seen

    video, lips = fakes.PROTOCOLS["kling"], fakes_lipsync.PROTOCOLS["sync"]
    for env, value in {**video.ENV, **lips.ENV}.items():
        monkeypatch.setenv(env, value)
    server = FakeHosted(provider_mp4, price_per_second=LIPSYNC_PRICE)
    try:
        root = tmp_path / "p"
        root.mkdir()
        kling = {**video.options(server), "poll_s": 0.02, "request_timeout_s": 5}
        sync = {**lips.options(server), "poll_s": 0.02, "request_timeout_s": 5}
        (root / "project.yaml").write_text(
            TINY_YAML + SMALL + "dialogue: tts+lipsync\n"
            f"backends:\n  video: kling\n  kling: {json.dumps(kling)}\n  lipsync: sync\n  sync: {json.dumps(sync)}\n"
            f"rates:\n  lipsync:\n    sync: {{cost_per_second: {LIPSYNC_PRICE}}}\n", encoding="utf-8")
        (root / "script.fountain").write_text(SYNC_SCRIPT, encoding="utf-8")
        check = json.loads(run_cli("check", str(root), "--json").stdout)
        eligible = {r["shot"] for r in check["lipsync"]["synced"]}
        estimate = json.loads(run_cli("estimate", str(root), "--json").stdout)
        (priced,) = [w for w in estimate["work"] if w["kind"] == "lipsync"]
        assert priced["todo"] == len(eligible) and priced["cost"] == pytest.approx(LIPSYNC_PRICE * priced["todo_s"], abs=1e-4)
        assert priced["todo_s"] >= 2 * 0.15 * len(eligible)  # the lines' reading time and the pieces' padding
        proc = run_cli("render", str(root))
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

        def synced_jobs():
            return [j for j in server.created() if j.id.startswith("0d9b5e3c-")]

        work = _work(root)
        assert {u.shot_id for u in work.syncs} == eligible and eligible
        pieces = [p for u in work.syncs for p in u.pieces]
        assert len(synced_jobs()) == len(pieces)  # one paid job per piece
        by_shot = {u.shot_id: u for u in work.syncs}
        for unit, clip in zip(work.shots, work.cut.clips):  # the cut shows the synced pieces, and only those
            assert mark_seen(clip) == (unit.id in by_shot), unit.id
        data = json.loads(sorted((root / "build" / "reports").glob("*.json"))[-1].read_text(encoding="utf-8"))
        (made,) = [w for w in data["made"] if w["kind"] == "lipsync"]
        billed = sum(j.billed for j in synced_jobs())
        assert made["jobs"] == len(pieces) and made["cost"] == pytest.approx(billed)

        (root / "build" / "episodes" / "ep01.mp4").unlink()
        again = run_cli("render", str(root))  # the cut made again: nothing paid for
        assert again.returncode == 0 and len(synced_jobs()) == len(pieces)

        retake = sorted(eligible)[0]
        shots_before = len(server.created()) - len(synced_jobs())
        proc = run_cli("rerun", str(root), "--shot", retake)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert len(server.created()) - len(synced_jobs()) == shots_before + 1
        assert len(synced_jobs()) == len(pieces) + len(by_shot[retake].pieces)  # its sync, again; no other
    finally:
        server.close()
