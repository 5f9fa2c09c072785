import pytest

from stages.core.text import estimate_speech_s, frames_ceil
from stages.plan_shots import plan_shots
from stages.schema import Character, Element, Episode, Project, Scene
from stages.time_shots import GAP_S, time_shots, timeline


def _project(**kw):
    return Project(title="T", cast=[Character(id="a", name="A", description="a tall woman in a red coat"),
                                    Character(id="b", name="B", description="a short man in a blue shirt")], **kw)


def _episode(n_lines=6):
    els = [Element(kind="action", text="Rain.", file="s", line=3)]
    for i in range(n_lines):
        els.append(Element(kind="dialogue", text=f"Line number {i}.", character="ab"[i % 2], file="s", line=5 + i))
    els.append(Element(kind="centered", text="THE END", file="s", line=40))
    return Episode(number=2, title="X", file="s", line=1, scenes=[
        Scene(number=1, heading="INT. ROOM - DAY", location="ROOM", time="DAY", interior="INT", file="s", line=2,
              elements=els)])


def test_plan_covers_every_line_once_in_order_with_stable_ids():
    sl = plan_shots(_episode(), _project())
    said = [ln.line for s in sl.shots for ln in s.lines]
    assert said == list(range(5, 11))
    assert [s.id for s in sl.shots][:2] == ["ep02-sc01-sh001", "ep02-sc01-sh002"]
    assert sl.shots[0].size == "establishing" and sl.shots[0].action == "Rain."
    assert sl.shots[-1].camera == "push-in"  # the episode ends on a push-in
    assert sl.shots[-1].card and not sl.shots[-1].action  # its centered text is a card, not an action
    assert plan_shots(_episode(), _project()) == sl  # deterministic


def test_plan_varies_sizes():
    sl = plan_shots(_episode(12), _project())
    sizes = [s.size for s in sl.shots]
    run = max_run = 1
    for a, b in zip(sizes, sizes[1:]):
        run = run + 1 if a == b else 1
        max_run = max(max_run, run)
    assert max_run <= 3 and len(set(sizes)) >= 4


def test_shot_prompt_carries_the_character_bible_verbatim():
    sl = plan_shots(_episode(), _project(style="noir"))
    dialogue_shot = next(s for s in sl.shots if s.lines)
    assert "a tall woman in a red coat" in dialogue_shot.prompt and "noir" in dialogue_shot.prompt


def test_durations_are_frame_aligned():
    assert frames_ceil(1.0001, 30) == pytest.approx(31 / 30)
    sl = plan_shots(_episode(), _project())
    for s in sl.shots:
        assert abs(s.duration_s * 30 - round(s.duration_s * 30)) < 1e-6


def test_time_shots_follows_measured_speech_and_timeline_agrees():
    p = _project()
    sl = plan_shots(_episode(2), p)
    speaking = [s for s in sl.shots if s.lines]
    timed = time_shots(sl, {s.id: [1.5] for s in speaking}, p)
    for s in timed.shots:
        if s.lines:
            assert s.lines[0].speech_s == 1.5
            assert s.duration_s == pytest.approx(frames_ceil(p.timing.lead_in_s + 1.5 + p.timing.lead_out_s, 30))
    tl = timeline(timed, p)
    start_of = {}
    t = 0.0
    for s in timed.shots:
        start_of[s.id] = t
        t += s.duration_s
    for ln in tl:
        assert ln.start_s == pytest.approx(start_of[ln.shot_id] + p.timing.lead_in_s, abs=1e-3)
        assert ln.end_s - ln.start_s == pytest.approx(1.5, abs=1e-3)
    assert GAP_S > 0


def test_estimate_speech_handles_cjk():
    assert estimate_speech_s("你好你好你好你好你好") > estimate_speech_s("hello hello")
