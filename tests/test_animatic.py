import numpy as np

from stages.backends.animatic import AnimaticBackend, draw_still, layout, look_for
from stages.backends.base import Figure, ShotRequest
from stages.core.media import probe, video_validator

MARA = Figure("mara", "MARA", "a woman with short black hair in a red raincoat")
ELI = Figure("eli", "ELI", "an elderly man with grey hair and glasses in a navy coat")


def _req(**kw):
    base = dict(shot_id="ep01-sc01-sh001", prompt="p", size="medium", camera="push-in", location="DOCK",
                time="NIGHT", action="", caption="ep01-sc01-sh001", figures=(MARA,), duration_s=1.0,
                width=216, height=384, fps=24, seed=1)
    base.update(kw)
    return ShotRequest(**base)


def test_look_is_read_from_the_description_and_stable():
    a = look_for("mara", MARA.description)
    assert a == look_for("mara", MARA.description)
    assert a.clothing == (178, 34, 52) and a.hair_style == "short"
    e = look_for("eli", ELI.description)
    assert e.glasses and e.hair == (150, 150, 150)
    assert look_for("jun", "a nineteen-year-old with long brown hair").hair == (90, 60, 35)


def test_same_character_same_pixels_across_shots():
    """The portrait is identical wherever the character stands at the same scale."""
    a = np.asarray(draw_still(_req(location="DOCK")))
    b = np.asarray(draw_still(_req(location="DOCK", shot_id="ep02-sc03-sh007", caption="ep02-sc03-sh007")))
    h = a.shape[0]
    assert (a[h // 3:] == b[h // 3:]).all()  # below the caption, the frames match


def test_generate_clip_has_planned_frames_size_fps(tmp_path):
    out = tmp_path / "s.mp4"
    AnimaticBackend().generate(_req(duration_s=1.5, camera="pan-left", figures=(MARA, ELI), size="two-shot"), out)
    video_validator(width=216, height=384, min_duration_s=1.5)(out)
    info = probe(out)
    assert info.frames == 36 and info.fps == 24.0


def test_camera_moves_move(tmp_path):
    import av

    def first_last(camera):
        out = tmp_path / f"{camera}.mp4"
        AnimaticBackend().generate(_req(camera=camera), out)
        with av.open(str(out)) as c:
            frames = [f.to_ndarray(format="gray") for f in c.decode(video=0)]
        return frames[0].astype(int), frames[-1].astype(int)

    f0, f1 = first_last("push-in")
    assert np.abs(f0 - f1).mean() > 2
    s0, s1 = first_last("static")
    assert np.abs(s0 - s1).mean() < np.abs(f0 - f1).mean()


def _frames(path):
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24").astype(int) for f in c.decode(c.streams.video[0])]


def test_lips_move_only_while_the_line_is_spoken(tmp_path):
    from dataclasses import replace

    talker = replace(MARA, speaking=True)
    out = tmp_path / "talk.mp4"
    AnimaticBackend().generate(_req(camera="static", figures=(talker,), duration_s=2.0,
                                    extra={"speaking": [[0.5, 1.3]]}), out)
    frames = _frames(out)
    assert len(frames) == 48
    # pixels of the mouth's colour: many when it is open, a sliver when closed; where the face is, the
    # animatic's layout says (its box holds hair above the brow too: the mouth is in its lower half)
    (placed,) = layout(_req(camera="static", figures=(talker,), duration_s=2.0)).placed
    x0, y0, x1, y1 = placed.face
    face = (slice(int((y0 + y1) / 2), int(y1)), slice(int(x0), int(x1)))
    mouth = [int((np.abs(f[face] - (120, 40, 40)).max(axis=2) < 30).sum()) for f in frames]
    wide = 0.75 * max(mouth)
    open_at = [i / 24 for i, m in enumerate(mouth) if m > wide]
    assert len(open_at) >= 4, mouth
    assert all(0.45 <= t <= 1.35 for t in open_at), (open_at, mouth)  # never before or after the line
    assert any(m < wide / 2 for m in mouth[int(0.5 * 24): int(1.3 * 24)]), "it must also close"


def test_figures_move_against_the_set(tmp_path):
    """Parallax: on a pan the figures' layer travels further than the background behind them."""
    out = tmp_path / "pan.mp4"
    AnimaticBackend().generate(_req(camera="pan-right", size="medium", duration_s=1.0), out)
    first, last = (f[..., :].mean(axis=2) for f in (_frames(out)[0], _frames(out)[-1]))

    def shift(a, b, rows):
        best = min(range(-60, 61), key=lambda dx: np.abs(np.roll(a[rows], dx, axis=1) - b[rows])[:, 70:-70].mean())
        return best

    set_rows = slice(10, 60)  # sky and wall: the set only
    fig_rows = slice(250, 300)  # the figure's torso (its head is at about 0.42 of the height)
    assert abs(shift(first, last, fig_rows)) > abs(shift(first, last, set_rows)), \
        (shift(first, last, fig_rows), shift(first, last, set_rows))


def test_clean_overlays_and_one_set_per_place():
    from stages.backends.animatic import layout, scenery

    labelled = np.asarray(draw_still(_req(action="She waits.", size="wide", camera="static")))
    clean = np.asarray(draw_still(_req(action="She waits.", size="wide", camera="static",
                                       extra={"overlays": "clean"})))
    bare = np.asarray(draw_still(_req(action="", caption="", size="wide", camera="static")))
    assert (clean == bare).all() and (labelled != bare).any()  # no label, no action box: the picture only
    # one set per place whatever its spelling; the time of day lights it; EXT. is drawn outdoors
    a, b = layout(_req(location="Rosa's Diner", time="DAY")), layout(_req(location="ROSA'S  DINER", time="NIGHT"))
    assert a.set == b.set and scenery(a).top != scenery(b).top
    assert layout(_req(location="DINER", extra={"interior": "EXT"})).set.exterior
    assert not layout(_req(location="ROOFTOP", extra={"interior": "INT"})).set.exterior


def test_figures_land_where_the_camera_puts_their_layer(tmp_path):
    """Each figure layer is moved as a cut of just what it draws: in the first and last frames it sits
    (within the resampler's rounding) where the camera move puts the whole layer, parallax included."""
    from PIL import Image

    from stages.backends.animatic import PARALLAX, _view, draw_layers

    for camera in ("static", "push-in", "pull-out", "pan-left", "tilt-up"):
        req = _req(camera=camera, figures=(MARA, ELI), size="two-shot", duration_s=1.0)
        out = tmp_path / f"{camera}.mp4"
        AnimaticBackend().generate(req, out)
        frames, fig = _frames(out), draw_layers(req, talking=False)[1]
        for frame, t in ((frames[0], 0.0), (frames[-1], 1.0)):
            z, x, y = _view(camera, PARALLAX, fig.size, t)
            box = tuple(round(v) for v in (x, y, x + fig.width / z, y + fig.height / z))
            ref = np.asarray(fig.crop(box).resize((216, 384), Image.BICUBIC)).astype(int)

            def err(shift, frame=frame, ref=ref):  # the frame against the layer moved by `shift` (x, y)
                solid = np.roll(ref[..., 3] > 250, shift[::-1], (0, 1))
                return np.abs(frame[solid] - np.roll(ref[..., :3], shift[::-1], (0, 1))[solid]).mean()

            best = min(((dx, dy) for dx in range(-5, 6) for dy in range(-5, 6)), key=err)
            assert max(map(abs, best)) <= 2 and err(best) < 4, (camera, t, best, err(best))


def test_a_slow_drift_holds_each_pose_of_the_set_and_a_pan_does_not(tmp_path):
    """A layer is drawn at fps / hold when the camera moves no point of its part of the frame by over a
    pixel (HOLD_PX) in `hold` frames (`_camera.hold`): a static drift's set and figure are drawn at 10 fps
    and each pose shown three times, a pan's at every frame; either way the clip has every planned frame."""
    from stages.backends._camera import HOLD_PX, hold, view
    from stages.backends.animatic import _layer_graph, draw_layers

    still, frame = (1350, 2400), (1080, 1920)
    assert hold("static", 1.0, still, frame, (0, 0) + frame, 3.0, 30) == 3
    assert hold("pan-left", 1.0, still, frame, (0, 0) + frame, 3.0, 30) == 1
    assert hold("push-in", 1.0, still, frame, (0, 0) + frame, 3.0, 30) == 1
    # a held pose: the frame's farthest point (a corner) moves at most a pixel from one pose to the next
    (z0, x0, y0), (z1, x1, y1) = view("static", 1.0, still, 0.0), view("static", 1.0, still, 3 / 89)
    corner = (x0 + 1350 / z0, y0 + 2400 / z0)
    moved = np.hypot((corner[0] - x1) * z1 * 1080 / 1350 - 1080, (corner[1] - y1) * z1 * 1920 / 2400 - 1920)
    assert 0 < moved <= HOLD_PX == 1.0, moved

    for camera, layer_fps in (("static", "10"), ("pan-left", "30")):  # (a 3 s drift: a shorter one moves faster)
        req = _req(camera=camera, figures=(MARA,), size="medium", duration_s=3.0, width=1080, height=1920, fps=30)
        graph, _, _ = _layer_graph(draw_layers(req), req, 90, tmp_path)
        assert [part.split(":fps=")[1].split(",")[0].split("[")[0] for part in graph.split(";")
                if "zoompan" in part] == [layer_fps, layer_fps], graph  # the set's poses, then the figure's
        out = tmp_path / f"{camera}.mp4"
        AnimaticBackend().generate(req, out)
        assert probe(out).frames == 90
