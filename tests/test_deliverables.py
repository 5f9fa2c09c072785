"""Deliverables beside the mp4: the OTIO timeline, the poster and series.json, made from real
clips, WAVs and renders and read back with the libraries an editor or a publisher would use."""

from __future__ import annotations

import json
import wave
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from stages.backends.base import ShotRequest
from stages.units import Clip, Cut
from stages.export_otio import frame_bounds, to_frames, write_otio
from stages.make_poster import make_poster, poster_time
from stages.core.media import probe, run_ffmpeg
from stages.mix_audio import Effect, MusicSpan
from stages.schema import Shot, ShotLine, ShotList
from stages.time_shots import TimedLine
from stages.write_series import read_series_json, write_series_json

FPS, W, H = 30, 144, 256
SHOT_S = 1.05  # 31.5 frames: rounding each shot alone would drift from the episode's length
LEAD, TAIL = 0.5, 0.5  # opening and end cards


def _clip(path: Path, seconds: float) -> Path:
    run_ffmpeg(["-f", "lavfi", "-i", f"testsrc=size={W}x{H}:rate={FPS}:duration={seconds}",
                "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)])
    return path


def _wav(path: Path, seconds: float, hz: float = 440.0, rate: int = 48_000) -> Path:
    t = np.arange(int(round(seconds * rate))) / rate
    x = (0.3 * np.sin(2 * np.pi * hz * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(x.tobytes())
    return path


def _shot(n: int, *, characters=(), lines=(), duration_s: float = SHOT_S, card: str | None = None) -> Shot:
    return Shot(id=f"ep01-sc01-sh{n:03d}", episode=1, scene=1, size="medium", camera="push-in",
                location="KITCHEN", characters=list(characters), duration_s=duration_s, prompt=f"shot {n} prompt",
                file="script.fountain", line=n, card=card,
                lines=[ShotLine(character=c, text=t, file="script.fountain", line=n, speech_s=0.5) for c, t in lines])


def _card_request(name: str, seconds: float) -> ShotRequest:
    return ShotRequest(shot_id=f"ep01-{name}", prompt="", size="wide", camera="static", location="KITCHEN", time="",
                       action="", caption="", figures=(), duration_s=seconds, width=W, height=H, fps=FPS, seed=0)


@pytest.fixture
def episode(tmp_path):
    """A three-shot episode with opening and end cards, two spoken lines, music and two effects."""
    shotlist = ShotList(episode=1, title="重逢", shots=[
        _shot(1, characters=["ann"], lines=[("ann", "你好，世界")]),
        _shot(2, card="三年后"),
        _shot(3, characters=["bo"], lines=[("bo", "Is it ready?")]),
    ])
    clips = [_clip(tmp_path / f"shot{i}.mp4", SHOT_S) for i in (1, 2, 3)]
    speech = [_wav(tmp_path / "line1.wav", 0.5), _wav(tmp_path / "line2.wav", 0.5, 660)]
    music = _wav(tmp_path / "music.wav", 5.0, 220)
    sfx = [_wav(tmp_path / "door.wav", 0.4, 880), _wav(tmp_path / "rain.wav", 0.4, 990)]
    s2, s3 = LEAD + SHOT_S, LEAD + 2 * SHOT_S  # where shots 2 and 3 start on the episode's clock
    total = round(LEAD + 3 * SHOT_S + TAIL, 6)
    lines = [TimedLine("ep01-sc01-sh001", 0, "ann", "你好，世界", LEAD + 0.25, LEAD + 0.75),
             TimedLine("ep01-sc01-sh003", 0, "bo", "Is it ready?", round(s3 + 0.25, 4), round(s3 + 0.75, 4))]
    cards = [(0.0, LEAD, "小城故事\n第1集"), (round(s2, 4), round(s3, 4), "三年后"),
             (round(s3 + SHOT_S, 4), total, "未完待续")]
    cut = Cut(key="k" * 20, duration_s=total, clips=clips, durations=[s.duration_s for s in shotlist.shots],
              transitions=[s.transition for s in shotlist.shots], lines=lines, speech=speech, cards=cards,
              music=[MusicSpan(0.0, total, music)], effects=[Effect(s2, sfx[0]), Effect(s2, sfx[1])],
              opening=Clip(_card_request("opening", LEAD), "o" * 20, tmp_path / "opening.mp4"),
              ending=Clip(_card_request("end", TAIL), "e" * 20, tmp_path / "end.mp4"))
    return cut, shotlist


def test_otio_timeline_lines_up_with_the_episode(episode, tmp_path):
    import opentimelineio as otio

    cut, shotlist = episode
    out = tmp_path / "out" / "ep01.otio"
    write_otio(cut, shotlist, FPS, out, title="小城故事")
    tl = otio.adapters.read_from_file(str(out))
    assert "小城故事" in tl.name and "ep01" in tl.name
    total_f = to_frames(cut.duration_s, FPS)
    assert total_f == 125  # 4.15 s at 30 fps
    naive = sum(to_frames(d, FPS) for d in (LEAD, SHOT_S, SHOT_S, SHOT_S, TAIL))
    assert naive != total_f  # the fixture is one where rounding each shot alone would be wrong

    video = tl.video_tracks()[0]
    assert sum(item.duration().to_frames() for item in video) == total_f
    assert video.duration().to_frames() == total_f == tl.duration().to_frames()
    shots = [item for item in video if isinstance(item, otio.schema.Clip)]
    assert [c.name for c in shots] == [s.id for s in shotlist.shots]
    # cumulative: 0.5 s -> 15, 1.55 -> 47 (46.5 up), 2.6 -> 78, 3.65 -> 110 (109.5 up), 4.15 -> 125
    assert frame_bounds([LEAD, SHOT_S, SHOT_S, SHOT_S, TAIL], FPS) == [0, 15, 47, 78, 110, 125]
    assert [item.duration().to_frames() for item in video] == [15, 32, 31, 32, 15]
    for clip, a, path, shot in zip(shots, (15, 47, 78), cut.clips, shotlist.shots):
        assert clip.range_in_parent().start_time.to_frames() == a
        assert clip.media_reference.target_url == path.resolve().as_uri()
        meta = clip.metadata["dramaforge"]
        assert (meta["id"], meta["size"], meta["camera"], meta["prompt"]) == (shot.id, "medium", "push-in", shot.prompt)
        assert list(meta["characters"]) == shot.characters

    audio = {t.name: t for t in tl.audio_tracks()}
    dialogue = [c for c in audio["dialogue"] if isinstance(c, otio.schema.Clip)]
    assert len(dialogue) == len(cut.lines)
    for clip, line, wav in zip(dialogue, cut.lines, cut.speech):
        assert clip.range_in_parent().start_time.to_frames() == to_frames(line.start_s, FPS)
        assert clip.duration().to_frames() == to_frames(line.end_s, FPS) - to_frames(line.start_s, FPS)
        assert clip.media_reference.target_url == wav.resolve().as_uri()
    music = [c for c in audio["music"] if isinstance(c, otio.schema.Clip)]
    assert [c.duration().to_frames() for c in music] == [total_f]
    # the two effects start together: one lane each, each as long as its file
    for name in ("sfx", "sfx 2"):
        (fx,) = [c for c in audio[name] if isinstance(c, otio.schema.Clip)]
        assert fx.range_in_parent().start_time.to_frames() == to_frames(LEAD + SHOT_S, FPS)
        assert fx.duration().to_frames() == to_frames(0.4, FPS)

    markers = {m.name: m for m in tl.tracks.markers}
    for line in cut.lines:
        m = markers[line.text]
        assert m.marked_range.start_time.to_frames() == to_frames(line.start_s, FPS)
        assert m.marked_range.end_time_exclusive().to_frames() == to_frames(line.end_s, FPS)
    for start, end, text in cut.cards:
        assert markers[text].marked_range.start_time.to_frames() == to_frames(start, FPS)
    assert not list(out.parent.glob(".*part*"))  # the temp file was moved in, not left beside it


def test_otio_refuses_a_shot_list_that_does_not_match_the_cut(episode, tmp_path):
    cut, shotlist = episode
    short = shotlist.model_copy(update={"shots": shotlist.shots[:2]})
    with pytest.raises(ValueError):
        write_otio(cut, short, FPS, tmp_path / "bad.otio", title="T")
    assert not (tmp_path / "bad.otio").exists()


def test_poster_time_prefers_a_central_shot_with_people():
    empty_middle = ShotList(episode=1, shots=[_shot(1, duration_s=2), _shot(2, duration_s=2),
                                              _shot(3, characters=["bo"], duration_s=2)])
    assert poster_time(empty_middle) == 5.0  # the middle shot is empty: its neighbour with bo
    assert poster_time(empty_middle, lead_s=1.5) == 6.5
    peopled = ShotList(episode=1, shots=[_shot(1, characters=["a"], duration_s=1), _shot(2, characters=["b"],
                                         duration_s=3), _shot(3, characters=["c"], duration_s=1)])
    assert poster_time(peopled) == 2.5
    nobody = ShotList(episode=1, shots=[_shot(i, duration_s=1) for i in range(1, 8)]
                      + [_shot(8, characters=["far"], duration_s=1)])
    assert poster_time(nobody) == 4.5  # nobody within two shots of the middle: the middle itself


def _frame_as_jpeg(mp4: Path, at_s: float, out: Path) -> np.ndarray:
    """The raw frame through the same JPEG encoder, so only the drawing can tell the two apart."""
    from PIL import Image

    run_ffmpeg(["-ss", f"{at_s:.4f}", "-i", str(mp4), "-frames:v", "1", str(out)])
    with Image.open(out) as im:
        im.convert("RGB").save(out.with_suffix(".jpg"), "JPEG", quality=88, optimize=True)
    with Image.open(out.with_suffix(".jpg")) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32)


def test_poster_is_a_titled_jpeg_frame_of_the_video(tmp_path):
    from PIL import Image

    mp4 = _clip(tmp_path / "ep01.mp4", 2.0)
    out = tmp_path / "posters" / "ep01.jpg"
    make_poster(mp4, 1.0, "小城故事：重逢之后的那个冬天", "第1集", out)
    with Image.open(out) as im:
        assert im.format == "JPEG"
        assert im.size == (probe(mp4).width, probe(mp4).height) == (W, H)
        poster = np.asarray(im.convert("RGB"), dtype=np.float32)
    raw = _frame_as_jpeg(mp4, 1.0, tmp_path / "raw.png")
    diff = np.abs(poster - raw).mean(axis=(1, 2))  # per row
    assert diff[: H // 4].max() < 1  # the top of the frame is that frame, untouched
    assert diff[int(H * 0.55): int(H * 0.88)].mean() > 25  # the title band is drawn on
    assert not list(out.parent.glob(".*part*"))

    plain = tmp_path / "posters" / "plain.jpg"
    make_poster(mp4, 99.0, "", "", plain)  # past the end: the last frame, not a missing one
    with Image.open(plain) as im:
        assert im.size == (W, H)


def test_a_poster_is_made_again_only_when_its_frame_or_words_change(tmp_path):
    mp4 = _clip(tmp_path / "sh.mp4", 2.0)
    out = tmp_path / "ep01.jpg"
    make_poster(mp4, 1.0, "Title", "EP01", out)
    made = out.stat().st_mtime_ns
    make_poster(mp4, 1.0, "Title", "EP01", out)  # another line of the episode edited: the same poster
    assert out.stat().st_mtime_ns == made
    for args in ((mp4, 1.5, "Title", "EP01"), (mp4, 1.5, "Title", "EP01 · Dawn")):
        make_poster(*args, out)
        assert out.stat().st_mtime_ns != made
        made = out.stat().st_mtime_ns
    out.write_bytes(out.read_bytes()[:-100])  # damaged from outside: made whole again
    make_poster(mp4, 1.5, "Title", "EP01 · Dawn", out)
    assert out.read_bytes().endswith(b"\xff\xd9")


def test_series_json_round_trips_in_episode_order(tmp_path):
    out = tmp_path / "deliver" / "series.json"
    ep_dir = tmp_path / "deliver" / "episodes"

    def ep(n: int, seconds: float, shots: int) -> dict:
        return {"episode": n, "title": f"第{n}集", "mp4": ep_dir / f"ep{n:02d}.mp4", "duration_s": seconds,
                "shots": [{"id": f"ep{n:02d}-sc01-sh{i:03d}", "key": f"k{i}", "duration_s": 1.5}
                          for i in range(1, shots + 1)],
                "cut_key": f"cut{n}", "subtitles": [ep_dir / f"ep{n:02d}.srt", ep_dir / f"ep{n:02d}.vtt"],
                "poster": ep_dir / f"ep{n:02d}.jpg", "otio": ep_dir / f"ep{n:02d}.otio"}

    settings = {"preset": "vertical-1080", "width": 1080, "height": 1920, "fps": 30, "encoding": {"crf": 20}}
    write_series_json(out, title="小城故事", project_settings=settings,
                      episodes=[ep(3, 61.25, 4), ep(1, 90.5, 3), ep(2, 75.0, 2)])
    text = out.read_text(encoding="utf-8")
    assert "小城故事" in text  # ensure_ascii=False: readable, not \\u escapes
    doc = read_series_json(out)
    assert doc == json.loads(text)
    assert [e["episode"] for e in doc["episodes"]] == [1, 2, 3]
    assert doc["title"] == "小城故事" and doc["settings"] == settings
    assert doc["total_duration_s"] == pytest.approx(226.75)
    assert (doc["episode_count"], doc["shot_count"]) == (3, 9)
    assert doc["episodes"][0]["mp4"] == "episodes/ep01.mp4"  # relative to the manifest's folder
    assert doc["episodes"][1]["subtitles"] == ["episodes/ep02.srt", "episodes/ep02.vtt"]
    assert datetime.fromisoformat(doc["generated_at"].replace("Z", "+00:00")).utcoffset().total_seconds() == 0
    assert doc["dramaforge_version"]
    assert list(json.loads(text)) == sorted(json.loads(text))  # sorted keys

    with pytest.raises(ValueError):
        write_series_json(tmp_path / "dupe.json", title="T", project_settings={}, episodes=[ep(1, 1, 1), ep(1, 2, 1)])
    assert not (tmp_path / "dupe.json").exists()
