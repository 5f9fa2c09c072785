"""Episode assembly: mismatched shots conformed, transitions, cards, sync over minutes, parallel
episodes, hostile folder names; every check decodes the real output."""

from __future__ import annotations

import threading
import wave

import numpy as np
import pytest

from conftest import TINY_SCRIPT, TINY_YAML, assemble_cut, run_cli
from stages.core.paths import BuildPaths
from stages.plan_work import plan_cut
from stages.units import Cut
from stages.core.media import decode_audio, probe, run_ffmpeg
from stages.schema import Project, Shot, ShotLine, ShotList

W, H, FPS = 144, 256, 30


def _clip(path, *, size: str, rate: int, seconds: float, audio: bool = False):
    args = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=300:duration={seconds}", "-c:a", "aac", "-shortest"]
    run_ffmpeg([*args, "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)])
    return path


def _beep(path, seconds: float = 0.25, hz: float = 1000.0):
    t = np.arange(int(22050 * seconds)) / 22050
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes((0.5 * np.sin(2 * np.pi * hz * t) * 32767).astype("<i2").tobytes())
    return path


def _project(**kw) -> Project:
    return Project.model_validate({"title": "Sync", "width": W, "height": H, "fps": FPS, **kw})


def _shot(i: int, duration: float, transition: str = "cut", lines=()) -> Shot:
    return Shot(id=f"ep01-sc01-sh{i:03d}", episode=1, scene=1, size="wide", location="DOCK", duration_s=duration,
                file="s", line=i + 1, transition=transition, lines=list(lines))


def _assemble(tmp_path, cut: Cut, project: Project, unit: str = "ep01"):
    return assemble_cut(cut, None, project, BuildPaths(tmp_path / "build"), unit)


def _decode_all(path) -> int:
    import av

    n = 0
    with av.open(str(path)) as c:
        for _ in c.decode(c.streams.video[0]):
            n += 1
    return n


def test_mismatched_shots_with_transitions_assemble_to_the_planned_length(tmp_path):
    clips = [_clip(tmp_path / "a.mp4", size="640x360", rate=24, seconds=1.0),
             _clip(tmp_path / "b.mp4", size="1080x1920", rate=25, seconds=2.0, audio=True),  # too long, has audio
             _clip(tmp_path / "c.mp4", size="720x1280", rate=30, seconds=0.5)]  # too short: held
    shots = [_shot(1, 1.0), _shot(2, 1.2, "dissolve"), _shot(3, 0.9, "dip")]
    project = _project()
    timed = ShotList(episode=1, title="One", shots=shots)
    cut = plan_cut(timed, ["a", "b", "c"], clips, {}, project, tmp_path, paths=BuildPaths(tmp_path / "build"),
                   series="Sync", episode_title="One")
    out = _assemble(tmp_path, cut, project)
    info = probe(out)
    planned = 1.5 + 3.1 + 2.0
    assert (info.width, info.height, info.fps) == (W, H, FPS)
    assert abs(info.frames - round(planned * FPS)) <= 1 and abs(info.duration_s - planned) <= 1 / FPS
    assert _decode_all(out) == info.frames  # decodes start to end
    # the dip: the frames either side of the cut into shot 3 are (nearly) black
    import av

    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="gray") for f in c.decode(c.streams.video[0])]
    cut_at = round((1.5 + 1.0 + 1.2) * FPS)
    assert frames[cut_at - 1].mean() < 20 and frames[cut_at].mean() < 20
    assert frames[cut_at + 15].mean() > 40 and frames[cut_at - 15].mean() > 40
    # the dissolve: the first frames of shot 2 mix shot 1's last frame with shot 2
    start2 = round((1.5 + 1.0) * FPS)
    d_mid = np.abs(frames[start2 + 7].astype(int) - frames[start2 - 1].astype(int)).mean()
    d_end = np.abs(frames[start2 + 20].astype(int) - frames[start2 - 1].astype(int)).mean()
    assert 0 < d_mid < d_end


def _solid(path, color: str, seconds: float):
    run_ffmpeg(["-f", "lavfi", "-i", f"color=c={color}:size={W}x{H}:rate={FPS}:duration={seconds}",
                "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-g", str(FPS), "-pix_fmt", "yuv420p",
                str(path)])
    return path


def _x264_encodes(monkeypatch) -> list[list[str]]:
    """Every ffmpeg command started from here on (run or in the background) that encodes video with x264."""
    import subprocess

    seen = []

    class Spy(subprocess.Popen):  # `subprocess.run` starts its command with it too
        def __init__(self, cmd, *a, **kw):
            if isinstance(cmd, list) and "libx264" in cmd:
                seen.append(list(cmd))
            super().__init__(cmd, *a, **kw)

    monkeypatch.setattr(subprocess, "Popen", Spy)
    return seen


def test_transitions_are_drawn_in_the_one_episode_encode(tmp_path, monkeypatch):
    """A dissolve and a dip between clips that match the project: nothing is re-encoded before the
    episode (no conformed file, one x264 run), and the frames are the planned transitions: the
    dissolve blends the outgoing shot's last frame into the incoming head, j/15 at its j-th frame."""
    import av

    clips = [_solid(tmp_path / f"{c}.mp4", c, 1.0) for c in ("white", "gray", "silver")]
    shots = [_shot(1, 1.0), _shot(2, 1.0, "dissolve"), _shot(3, 1.0, "dip")]
    project = _project(cards={"opening": False, "end": False})
    cut = plan_cut(ShotList(episode=1, title="One", shots=shots), ["w", "g", "s"], clips, {}, project, tmp_path,
                   paths=BuildPaths(tmp_path / "build"), series="Sync", episode_title="One")
    encodes = _x264_encodes(monkeypatch)
    out = _assemble(tmp_path, cut, project)
    assert len(encodes) == 1 and encodes[0][-1].endswith(".part.mp4"), encodes  # the episode's pictures, nothing else
    assert not list((tmp_path / "build").rglob("conformed/*.mp4"))
    with av.open(str(out)) as c:
        y = [f.to_ndarray(format="gray").astype(float).mean() for f in c.decode(c.streams.video[0])]
    assert len(y) == 3 * FPS
    white, gray, silver = y[FPS - 1], y[FPS + 20], y[-1]
    assert white > silver + 30 > gray + 60
    for j in range(15):  # the dissolve: white held, gray coming in
        assert abs(y[FPS + j] - (white + (gray - white) * j / 15)) < 3, (j, y[FPS + j])
    # the dip: 0.3 s (9 frames) of gray fading to black, then of silver fading in from it
    fade_out = [y[2 * FPS - 9 + k] / gray for k in range(9)]
    fade_in = [y[2 * FPS + k] / silver for k in range(10)]
    assert abs(y[2 * FPS - 10] - gray) < 3 and abs(y[2 * FPS + 9] - silver) < 3
    assert all(abs(f - (1 - k / 9)) < 0.05 for k, f in enumerate(fade_out)), fade_out
    assert all(abs(f - k / 9) < 0.05 for k, f in enumerate(fade_in)), fade_in


def test_conformed_clips_are_near_lossless_and_concatenate_exactly(tmp_path, monkeypatch):
    """A clip of another size is re-encoded once, near-losslessly (x264 QP 1; QP 0 is misdecoded
    after a lossy clip in one concat stream by FFmpeg's H.264 decoder), and in the concat stream it
    decodes exactly as on its own, after a clip of ours."""
    import av

    from stages.conform_shot import conform_clip

    project = _project()
    ours = _clip(tmp_path / "ours.mp4", size=f"{W}x{H}", rate=FPS, seconds=1.0)
    other = _clip(tmp_path / "other.mp4", size="320x180", rate=25, seconds=1.0)
    encodes = _x264_encodes(monkeypatch)
    conformed = conform_clip(other, 1.0, project, BuildPaths(tmp_path / "build"))
    assert conformed != other and conform_clip(ours, 1.0, project, BuildPaths(tmp_path / "build")) == ours
    assert len(encodes) == 1 and encodes[0][encodes[0].index("-qp") + 1] == "1", encodes
    assert b"qp=1" in conformed.read_bytes()[:200_000]  # x264's own record of its settings

    def decoded(path, *options):
        with av.open(str(path), *options) as c:
            return [f.to_ndarray(format="yuv420p") for f in c.decode(c.streams.video[0])]

    listed = tmp_path / "list.txt"
    listed.write_text(f"file '{ours}'\nfile '{conformed}'\n", encoding="utf-8")
    joined = decoded(listed, "r", "concat", {"safe": "0"})
    alone = decoded(ours) + decoded(conformed)
    assert len(joined) == len(alone) == 2 * FPS
    assert all(np.array_equal(a, b) for a, b in zip(joined, alone))


def test_sound_stays_in_sync_to_the_end_of_a_three_minute_episode(tmp_path):
    clip = _clip(tmp_path / "x.mp4", size=f"{W}x{H}", rate=FPS, seconds=3.0)
    shots = [_shot(i, 3.0) for i in range(1, 61)]
    shots[-1] = _shot(60, 3.0, lines=[ShotLine(character="a", text="beep", file="s", line=1, speech_s=0.25)])
    project = _project(timing={"lead_in_s": 2.0}, cards={"opening": True, "end": False})
    timed = ShotList(episode=1, shots=shots)
    beep = _beep(tmp_path / "beep.wav")
    cut = plan_cut(timed, ["x"] * 60, [clip] * 60, {(shots[-1].id, 0): ("k", beep)}, project, tmp_path,
                   paths=BuildPaths(tmp_path / "build"))
    out = _assemble(tmp_path, cut, project)
    info = probe(out)
    assert abs(info.duration_s - (1.5 + 180.0)) <= 1 / FPS
    audio = decode_audio(out).mean(axis=1)
    assert abs(len(audio) / 48000 - info.duration_s) < 0.04, "audio and video lengths drift apart"
    expected = 1.5 + 177.0 + 2.0  # the opening card, 59 shots, then the line's lead-in
    envelope = np.abs(audio) > 0.1 * np.abs(audio).max()
    onset = np.argmax(envelope) / 48000
    assert abs(onset - expected) < 0.04, f"the line starts at {onset:.3f}s, planned {expected:.3f}s"


def test_two_episodes_assembled_at_once_do_not_collide(tmp_path):
    clip = _clip(tmp_path / "x.mp4", size="320x180", rate=25, seconds=1.0)  # needs conforming: shared temp dirs
    project = _project()
    outs, errors = {}, []

    def run(unit: str, n: int):
        try:
            shots = [_shot(i, 0.8, "dip" if i == 2 else "cut") for i in range(1, n + 1)]
            cut = plan_cut(ShotList(episode=1, shots=shots), ["x"] * n, [clip] * n, {}, project, tmp_path,
                           paths=BuildPaths(tmp_path / "build"))
            outs[unit] = _assemble(tmp_path, cut, project, unit)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(u, n)) for u, n in (("ep01", 3), ("ep02", 4))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for unit, n in (("ep01", 3), ("ep02", 4)):
        assert abs(probe(outs[unit]).duration_s - (1.5 + 0.8 * n + 2.0)) <= 1 / FPS
    assert not [p for p in (tmp_path / "build").rglob("*") if ".part" in p.name]


@pytest.mark.parametrize("name", ["Y'z 短剧 [ep 1]; $(x)"])
def test_a_hostile_project_folder_name_renders(tmp_path, name):
    root = tmp_path / name
    root.mkdir()
    (root / "project.yaml").write_text(TINY_YAML + "width: 144\nheight: 256\n", encoding="utf-8")
    (root / "script.fountain").write_text(TINY_SCRIPT, encoding="utf-8")
    proc = run_cli("render", str(root))
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = root / "build" / "episodes" / "ep01.mp4"
    assert _decode_all(out) == probe(out).frames > 0
    assert not (tmp_path / "x").exists()  # nothing was run by a shell


_RSS_CHILD = r"""
import json, os, resource, sys
sys.path.insert(0, sys.argv[3])
from pathlib import Path
from test_assembly import _assemble, _clip, _shot, _project
from stages.core.paths import BuildPaths
from stages.plan_work import plan_cut
from stages.schema import ShotList
tmp, n, transition = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[4]
clip = _clip(tmp / "x.mp4", size="144x256", rate=30, seconds=60 / n)
project = _project(cards={"opening": False, "end": False})
shots = [_shot(i, 60 / n, transition if i % 2 == 0 else "cut") for i in range(1, n + 1)]  # one minute either way
warm = plan_cut(ShotList(episode=1, shots=shots[:2]), ["x"] * 2, [clip] * 2, {}, project, tmp, paths=BuildPaths(tmp / "build"))
_assemble(tmp, warm, project, "ep09")  # opens what stays open by design (the ledger's connection)
fds = len(os.listdir("/proc/self/fd"))
cut = plan_cut(ShotList(episode=1, shots=shots), ["x"] * n, [clip] * n, {}, project, tmp, paths=BuildPaths(tmp / "build"))
_assemble(tmp, cut, project)
def parent(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]
    except OSError:
        return None  # it ended meanwhile (any process on the machine may)
children = [p for p in os.listdir("/proc") if p.isdigit() and parent(p) == str(os.getpid())]
print(json.dumps({"rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                  "fds_before": fds, "fds_after": len(os.listdir("/proc/self/fd")), "children": children}))
"""


@pytest.mark.parametrize("transition", ["cut", "dissolve"])
def test_assembly_memory_is_flat_and_nothing_leaks(tmp_path, transition):
    """A 300-shot episode's assembly peaks at about the memory of a 30-shot one (the concat demuxer
    reads one shot at a time; with a dissolve into every other shot, the filters that hold frames do
    not multiply with them), and leaves no process or file handle behind."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    tests = str(Path(__file__).resolve().parent)
    seen = {}
    for n in (30, 300):
        d = tmp_path / str(n)
        d.mkdir()
        proc = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(d), str(n), tests, transition],
                              capture_output=True, text=True, timeout=600, cwd=Path(tests).parent)
        assert proc.returncode == 0, proc.stderr[-2000:]
        seen[n] = json.loads(proc.stdout.strip().splitlines()[-1])
        assert seen[n]["fds_after"] <= seen[n]["fds_before"], seen[n]
        assert seen[n]["children"] == [], seen[n]
        assert abs(probe(d / "build" / "episodes" / "ep01.mp4").duration_s - 60) <= 1 / FPS
    assert seen[300]["rss_kb"] < 1.25 * seen[30]["rss_kb"], seen
