"""Render a tiny project through the real CLI, Prefect flow, eSpeak NG and ffmpeg; check the files."""

from __future__ import annotations

import re

import numpy as np
import pytest
import yaml

from conftest import run_cli
from stages.core.media import probe


def _srt_cues(path):
    cues = []
    for m in re.finditer(r"(\d+):(\d+):(\d+),(\d+) --> (\d+):(\d+):(\d+),(\d+)\n(.+?)(?:\n\n|\Z)",
                         path.read_text(encoding="utf-8"), re.S):
        g = list(map(int, m.groups()[:8]))
        cues.append((g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000, g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000,
                     m.group(9)))
    return cues


def _audio_rms(path, hop_s=0.01):
    import av

    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        chunks = [f.to_ndarray().mean(axis=0) for f in c.decode(s)]
        rate = s.rate
    x = np.concatenate(chunks).astype(float)
    hop = int(rate * hop_s)
    n = len(x) // hop
    return np.sqrt((x[: n * hop].reshape(n, hop) ** 2).mean(axis=1)), hop_s


def _frame_at(path, t):
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        c.seek(int(max(0, t - 1) / s.time_base), stream=s)
        for f in c.decode(s):
            if f.time >= t:
                return f.to_ndarray(format="rgb24")
    raise AssertionError(f"no frame at {t}")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """A user's render: with no PREFECT_API_URL, so it starts the local Prefect server renders share
    (`flows.prefect_server`; stopped when the test session ends)."""
    import os

    from conftest import TINY_SCRIPT, TINY_YAML

    api = os.environ.pop("PREFECT_API_URL", None)

    root = tmp_path_factory.mktemp("e2e") / "tiny"
    root.mkdir()
    (root / "project.yaml").write_text(TINY_YAML, encoding="utf-8")
    (root / "script.fountain").write_text(TINY_SCRIPT, encoding="utf-8")
    try:
        proc = run_cli("render", str(root))
    finally:
        if api:
            os.environ["PREFECT_API_URL"] = api
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, proc


def test_episode_streams_size_and_duration(rendered):
    root, proc = rendered
    mp4 = root / "build" / "episodes" / "ep01.mp4"
    info = probe(mp4)
    assert (info.width, info.height, info.fps) == (1080, 1920, 30.0)
    assert info.video_codec == "h264" and info.pix_fmt == "yuv420p"
    assert info.audio_codec == "aac" and info.sample_rate == 48000 and info.channels == 2
    plan = yaml.safe_load((root / "build" / "shotlists" / "ep01.yaml").read_text(encoding="utf-8"))
    planned = 1.5 + sum(s["duration_s"] for s in plan["shots"]) + 2.0  # opening and end cards (defaults)
    assert abs(info.duration_s - planned) <= 0.5
    assert abs(info.frames - round(planned * 30)) <= 1
    assert "Traceback" not in proc.stderr


def test_every_line_is_spoken_and_subtitled_on_time(rendered):
    root, _ = rendered
    mp4 = root / "build" / "episodes" / "ep01.mp4"
    cues = _srt_cues(root / "build" / "episodes" / "ep01.srt")
    assert [c[2].replace("\n", " ") for c in cues] == ["Is it ready?", "Almost. Patience.", "Then I am leaving."]
    assert all(a[1] <= b[0] for a, b in zip(cues, cues[1:])), "cues overlap"
    rms, hop = _audio_rms(mp4)
    loud = rms > 0.05 * rms.max()
    for start, end, text in cues:
        i0 = int((start - 0.3) / hop)
        onset = (i0 + int(np.argmax(loud[i0:]))) * hop
        assert abs(onset - start) < 0.1, f"{text!r}: speech starts at {onset:.2f}s, cue at {start:.2f}s"
        assert loud[int(start / hop): int(end / hop)].mean() > 0.3, f"{text!r} is not audible under its cue"
    assert not loud[: int(cues[0][0] / hop) - 10].any(), "sound before the first line (a non-dialogue element spoken?)"


def test_subtitles_are_burned_in(rendered):
    root, _ = rendered
    mp4 = root / "build" / "episodes" / "ep01.mp4"
    cues = _srt_cues(root / "build" / "episodes" / "ep01.srt")
    band = slice(1920 - 360 - 200, 1920 - 360 + 10)

    def white(t):
        f = _frame_at(mp4, t)[band]
        return int((f.min(axis=2) > 235).sum())

    during = white((cues[0][0] + cues[0][1]) / 2)
    before = white(0.5)
    assert during > 800 and before < 200, (during, before)  # "Is it ready?" is about 1,400 white pixels


def test_second_render_reuses_everything(rendered):
    root, _ = rendered
    shots = sorted((root / "build" / "shots").glob("*.mp4"))
    mtimes = {p: p.stat().st_mtime_ns for p in shots}
    proc = run_cli("render", str(root))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted((root / "build" / "shots").glob("*.mp4")) == shots
    assert {p: p.stat().st_mtime_ns for p in shots} == mtimes


def test_deliverables_beside_the_episode(rendered):
    import json

    import opentimelineio as otio

    root, _ = rendered
    episodes = root / "build" / "episodes"
    mp4 = episodes / "ep01.mp4"
    info = probe(mp4)
    timeline = otio.adapters.read_from_file(str(episodes / "ep01.otio"))
    video = timeline.video_tracks()[0]
    frames = sum(c.source_range.duration.to_frames() for c in video)
    assert abs(frames - info.frames) <= 1  # the editor's timeline is the episode, frame for frame
    assert [c.name for c in video if isinstance(c, otio.schema.Clip)][1:-1] == [
        s["id"] for s in yaml.safe_load((root / "build" / "shotlists" / "ep01.yaml").read_text())["shots"]]
    from PIL import Image

    with Image.open(episodes / "ep01.jpg") as im:
        assert im.format == "JPEG" and im.size == (1080, 1920)
    series = json.loads((root / "build" / "series.json").read_text(encoding="utf-8"))
    (ep,) = series["episodes"]
    assert ep["episode"] == 1 and abs(ep["duration_s"] - info.duration_s) < 0.01 and ep["cut_key"]
    assert series["settings"]["preset"] == "vertical-1080"


def test_the_local_prefect_server_outlives_the_render_and_serves_the_next(rendered):
    """The server the render started is alive after it, recorded in PREFECT_HOME, and the next render's
    `connect` finds it instead of starting another."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from conftest import REPO
    from flows.prefect_server import RECORD, _healthy, _running

    record = json.loads((Path(os.environ["PREFECT_HOME"]) / RECORD).read_text(encoding="utf-8"))
    assert _running(record) and _healthy(record["url"], timeout_s=5)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    proc = subprocess.run([sys.executable, "-c", "from flows.prefect_server import connect; print(connect()[0])"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == record["url"]
    again = json.loads((Path(os.environ["PREFECT_HOME"]) / RECORD).read_text(encoding="utf-8"))
    assert again["pid"] == record["pid"]
