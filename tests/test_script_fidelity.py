"""What the script says is what the viewer sees and hears: two two-episode series (Fountain and the
Chinese layout), scaffolded with `new --from-script` and rendered with the default animatic, then
measured: voice pitch per character, who is in every frame, one set per place, one ending, and where
every subtitle lands against the faces and the safe area."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pysubs2
import pytest

from conftest import REPO, run_cli
from parse_helpers import FIXTURES
from stages.backends.animatic import layout, look_for, scenery
from stages.backends.registry import backends_for
from stages.core.fonts import fonts_dir
from stages.core.media import ffmpeg_exe, probe
from stages.core.paths import BuildPaths
from stages.core.text import segment
from stages.load_project import load_project
from stages.plan_work import plan_work
from test_voices import median_f0

W, H = 270, 480
SERIES = {
    "en": dict(script="night_shift.fountain", heard_only="frank",
               genders={"rosa": "female", "dani": "female", "frank": "male", "marcus": "male", "theo": "male"},
               entrances={"dani": "walks in", "theo": "joins him"}, ends=["TO BE CONTINUED...", "THE END"],
               places={"DINER": False, "ROOFTOP": True}),
    "zh": dict(script="late_call_zh.txt", heard_only="陈默",
               genders={"林母": "female", "林晓": "female", "小雨": "female", "陈默": "male", "王总": "male"},
               entrances={"林晓": "走进来", "小雨": "跑上天台"}, ends=["未完待续", "完"],
               places={"林家客厅": False, "天台": True},
               # the subtitle band raised to the middle of the frame, where the faces are: cues must move
               yaml="subtitles: {margin_bottom_px: 820}\n"),
}


# `dramaforge render` for each project in turn, in one process (one Prefect start for both)
RENDER_EACH = """
import sys
from flows.cli import main
for root in sys.argv[1:]:
    sys.argv = ["dramaforge", "render", root]
    try:
        main()
    except SystemExit as exc:
        if exc.code:
            raise
"""


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> dict[str, Path]:
    """Both series scaffolded from their scripts and rendered, as a new user would (half-size frames)."""
    out = {}
    for lang, spec in SERIES.items():
        folder = tmp_path_factory.mktemp(lang)
        src = folder / spec["script"]
        shutil.copy(FIXTURES / spec["script"], src)
        made = run_cli("new", str(folder / "p"), "--from-script", str(src))
        assert made.returncode == 0, made.stderr
        yaml = folder / "p" / "project.yaml"
        yaml.write_text(yaml.read_text(encoding="utf-8").replace("width: 1080\nheight: 1920\n",
                                                                 f"width: {W}\nheight: {H}\n")
                        + spec.get("yaml", ""), encoding="utf-8")
        out[lang] = folder / "p"
    proc = subprocess.run([sys.executable, "-c", RENDER_EACH, *map(str, out.values())], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("done in") == len(out), proc.stderr[-3000:]
    return out


def _works(root: Path):
    lp = load_project(root)
    backends = backends_for(lp.project, lp.root)
    return lp, [plan_work(lp, ep.number, backends) for ep in lp.script.episodes]


def _by_name(lp) -> dict[str, str]:
    """Cast id -> the character's name as the script writes it."""
    return {c.id: c.name.casefold() if c.name.isascii() else c.name for c in lp.project.cast}


@pytest.mark.parametrize("lang", list(SERIES))
def test_every_voice_is_on_its_side_of_165_hz(series, lang, tmp_path):
    lp, works = _works(series[lang])
    names = _by_name(lp)
    said: dict[str, list[Path]] = {}
    for work in works:
        for ln in work.lines:
            said.setdefault(names[_speaker(work, ln)], []).append(ln.path)
    assert set(said) == set(SERIES[lang]["genders"])
    for who, paths in said.items():
        pitch = median_f0(_joined(paths, tmp_path / f"{len(paths)}-{abs(hash(who))}.wav"))
        gender = SERIES[lang]["genders"][who]
        assert (pitch > 165) if gender == "female" else (pitch < 165), (who, gender, round(pitch))


def _speaker(work, line) -> str:
    shot = next(s for s in work.plan.shots if s.id == line.shot_id)
    return shot.lines[line.index].character


def _joined(paths: list[Path], out: Path) -> Path:
    """All of a character's lines as one WAV (a short line alone has too few voiced frames to measure)."""
    frames, rate = [], None
    for p in paths:
        with wave.open(str(p)) as w:
            rate = w.getframerate()
            frames.append(w.readframes(w.getnframes()))
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(frames))
    return out


def _first_frame(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24").astype(int)


@pytest.mark.parametrize("lang", list(SERIES))
def test_who_is_on_screen_follows_the_script(series, lang):
    """The V.O. character is in no frame; an entering character in no frame before the entrance;
    where the layout puts a face, the clip shows that character's skin there."""
    spec = SERIES[lang]
    lp, works = _works(series[lang])
    names = _by_name(lp)
    seen_entering = set()
    for work in works:
        for unit in work.shots:
            assert unit.path.exists(), unit.id  # measuring what was rendered, under the render's own keys
            placed = layout(unit.request).placed
            who = {names[p.figure.id] for p in placed}
            assert spec["heard_only"] not in who, unit.id
            frame = _first_frame(unit.path)
            for p in placed:
                if p.back:
                    continue
                skin = np.array(look_for(p.figure.id, p.figure.description).skin)
                x0, y0, x1, y1 = (int(v) for v in p.face)
                near = (np.abs(frame[y0:y1, x0:x1] - skin).max(axis=2) < 24).sum()
                assert near > 0.05 * (x1 - x0) * (y1 - y0), (unit.id, p.figure.id)
        scenes = {sc.number: sc for sc in lp.script.episode(work.number).scenes}
        for name, words in spec["entrances"].items():
            for sc in scenes.values():
                entrance = next((el.line for el in sc.elements if el.kind == "action" and words in el.text), None)
                if entrance is None:
                    continue
                seen_entering.add(name)
                for unit, shot in zip(work.shots, work.plan.shots):
                    if shot.scene != sc.number:
                        continue
                    who = {names[p.figure.id] for p in layout(unit.request).placed}
                    if shot.line < entrance:
                        assert name not in who, (unit.id, name, "before the entrance")
                    elif shot.line == entrance:
                        assert name in who, (unit.id, name, "at the entrance")
    assert seen_entering == set(spec["entrances"])


@pytest.mark.parametrize("lang", list(SERIES))
def test_one_set_per_place_and_one_ending(series, lang):
    spec = SERIES[lang]
    lp, works = _works(series[lang])
    looks: dict[str, set] = {}
    for work in works:
        for unit in work.shots:
            lay = layout(unit.request)
            lit = scenery(lay)
            looks.setdefault(unit.request.location, set()).add((lay.set, lit.top, lit.bottom, lit.floor))
    for place, exterior in spec["places"].items():
        (only,) = looks[place]  # one set, one light: the CONTINUOUS / 同上 scene took the night before it
        assert only[0].exterior is exterior, place
    ep2 = lp.script.episodes[1].scenes[0]
    assert re.search(r"CONTINUOUS|同上", ep2.heading) and ep2.time == lp.script.episodes[0].scenes[-1].time
    for work, end in zip(works, spec["ends"]):
        ass = pysubs2.load(str(BuildPaths(lp.build).episode_ass(work.id)))
        cards = [e for e in ass if e.style == "Card"]
        story_end = work.cut.duration_s - lp.project.cards.end_s
        after = [e for e in cards if e.start >= story_end * 1000 - 20]  # ASS keeps centiseconds
        assert [e.plaintext for e in after] == [end], work.id  # the script's own words, once
        endings = re.compile(r"to be continued|the end|未完待续|全剧终|^完$", re.I)
        assert sum(bool(endings.search(e.plaintext)) for e in cards) == 1, [e.plaintext for e in cards]
        assert abs(probe(work.mp4).duration_s - work.cut.duration_s) < 0.1


def _subtitle_boxes(ass_path: Path, duration_s: float, tmp: Path) -> tuple[dict, list]:
    """Where libass draws each dialogue cue, measured: its cues alone burned on black, one frame each."""
    subs = pysubs2.load(str(ass_path))
    cues = [e for e in subs if e.style == "Default"]
    only = pysubs2.load(str(ass_path))
    only.events = [e for e in only.events if e.style == "Default"]
    only.save(str(tmp / "cues.ass"))
    fps = 10
    proc = subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i",
                           f"color=c=black:s={W}x{H}:r={fps}:d={duration_s:.2f}", "-vf",
                           f"subtitles=cues.ass:fontsdir={fonts_dir()}", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                          cwd=tmp, capture_output=True, check=True)
    frames = np.frombuffer(proc.stdout, dtype=np.uint8).reshape(-1, H, W)
    boxes = {}
    for i, e in enumerate(cues):
        k = min(len(frames) - 1, round((e.start + e.end) / 2000 * fps))
        ys, xs = np.nonzero(frames[k] > 40)
        assert len(ys), e.plaintext
        boxes[i] = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    return boxes, cues


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("lang", list(SERIES))
def test_subtitles_clear_of_faces_inside_the_safe_area_and_broken_between_words(series, lang, tmp_path):
    lp, works = _works(series[lang])
    sub = lp.project.subtitles
    k = H / 1920
    top, floor = sub.margin_top_px * k, H - sub.margin_bottom_px * k
    left, right = W * (1 - sub.safe_width) / 2, W * (1 + sub.safe_width) / 2
    names = [c.name for c in lp.project.cast]
    cues_seen = 0
    for work in works:
        boxes, cues = _subtitle_boxes(BuildPaths(lp.build).episode_ass(work.id), work.cut.duration_s, tmp_path)
        for i, cue in enumerate(cues):
            box = boxes[i]
            assert top - 2 <= box[1] and box[3] <= floor + 2 and left - 2 <= box[0] and box[2] <= right + 2, \
                (work.id, cue.plaintext, box, (top, floor))
            for a, b, faces in work.cut.faces:
                if a * 1000 < cue.end and b * 1000 > cue.start:
                    for face in faces:
                        assert not _overlap(box, face), (work.id, cue.plaintext, box, face)
            lines = cue.plaintext.split("\n")
            if lang == "zh":
                joined = "".join(lines)
                bounds = set(np.cumsum([len(w) for w in segment(joined, names)]).tolist())
                cuts = np.cumsum([len(ln) for ln in lines])[:-1].tolist()
                assert set(cuts) <= bounds, (cue.plaintext, segment(joined, names))
                assert all(len(re.sub(r"[\W_]", "", ln)) >= 2 for ln in lines), cue.plaintext
            elif len(lines) > 1:
                assert all(len(ln.split()) >= 2 for ln in lines), cue.plaintext  # no one-word widow
            assert "^" not in cue.plaintext and "*" not in cue.plaintext
            cues_seen += 1
    assert cues_seen >= 8
    said = [c for w in works for c in pysubs2.load(str(BuildPaths(lp.build).episode_ass(w.id))) if c.style == "Default"]
    assert any("\n" in c.plaintext for c in said)  # some cues wrap: the line breaks were tested
    moved = [c for c in said if "\\pos(" in c.text]
    assert moved if "yaml" in SERIES[lang] else not moved  # the raised band met faces: those cues moved up


def test_accept_asks_for_force_before_replacing_a_made_shot_and_status_names_shots(series, tmp_path):
    root = Path(shutil.copytree(series["en"], tmp_path / "p"))
    shot = "ep01-sc01-sh002"
    proc = run_cli("accept", str(root), "--shot", shot, "--placeholder")
    assert proc.returncode == 2 and "--force" in proc.stderr and "is made" in proc.stderr
    assert run_cli("accept", str(root), "--shot", shot, "--placeholder", "--force").returncode == 0
    script = root / "script.fountain"
    script.write_text(script.read_text(encoding="utf-8").replace("She will come.", "She won't come."),
                      encoding="utf-8")
    status = run_cli("status", str(root)).stdout
    assert f"placeholder: {shot}" in status and f"rerun {root} --shot {shot}" in status
    assert "stale: ep02-sc02-sh002" in status and f"rerun {root} --stale" in status
