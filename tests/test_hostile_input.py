"""Input that used to be accepted silently wrong (issue 20, item 5 and 6's WebVTT): each is refused with
the file, the line where there is one, what is wrong and how to fix it, and no traceback; or, for
subtitles, written so that a line's own text cannot break the file."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from conftest import TINY_SCRIPT, TINY_YAML, run_cli


def _project(tmp_path: Path, yaml_text: str = TINY_YAML, script: str = TINY_SCRIPT) -> Path:
    root = tmp_path / "p"
    root.mkdir()
    (root / "project.yaml").write_text(yaml_text, encoding="utf-8")
    (root / "script.fountain").write_text(script, encoding="utf-8")
    return root


def _edited_shotlist(tmp_path: Path, edit) -> Path:
    """A planned project whose episode 1 shot list the user edited by hand (`edit(shots)`)."""
    root = _project(tmp_path)
    assert run_cli("plan", str(root)).returncode == 0
    path = root / "build" / "shotlists" / "ep01.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    edit(data["shots"])
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return root


def _refused(proc, *words: str) -> None:
    assert proc.returncode == 2, proc.stdout[-1000:] + proc.stderr[-1000:]
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in proc.stderr, (w, proc.stderr[-1500:])


def test_two_characters_with_one_id_are_refused(tmp_path):
    twice = TINY_YAML + "  - id: ann\n    name: ANNA\n    description: another woman\n"
    root = _project(tmp_path, twice)
    _refused(run_cli("check", str(root)), "project.yaml", "the id 'ann' is given to 2 characters")
    _refused(run_cli("render", str(root)), "the id 'ann' is given to 2 characters")
    assert not (root / "build" / "episodes").exists()


def test_a_pasted_wall_of_text_as_one_line_is_refused_at_its_line(tmp_path):
    wall = "All work and no play makes Jack a dull boy. " * 20_000  # ~880 kB: once one shot of hours
    root = _project(tmp_path, script=TINY_SCRIPT.replace("Is it ready?", wall.strip()))
    proc = run_cli("check", str(root))
    _refused(proc, "script.fountain:", "no shot can hold it", "split it into lines of under 60 s")
    _refused(run_cli("render", str(root)), "no shot can hold it")


def test_an_episode_of_hours_is_refused_at_its_heading(tmp_path):
    """Eighty lines of 50 s under one heading (a series pasted without its episode headings) was
    planned as one episode of over an hour."""
    line = "We will talk about this again tomorrow, and the day after, and every day. " * 10
    body = "".join(f"\nANN\n{line.strip()}\n" for _ in range(80))
    root = _project(tmp_path, script=TINY_SCRIPT + "\nINT. HALL - DAY\n" + body)
    _refused(run_cli("check", str(root)), "script.fountain:3:", "minutes of dialogue", "episode heading")


def test_a_shot_list_edit_naming_someone_outside_the_cast_is_refused(tmp_path):
    root = _edited_shotlist(tmp_path, lambda shots: shots[1]["characters"].append("zed"))
    _refused(run_cli("plan", str(root)), "ep01.yaml", "'zed', who is not in the cast or the script", "ann, bo")


def test_a_locked_shot_of_a_billion_seconds_is_refused(tmp_path):
    root = _edited_shotlist(tmp_path, lambda shots: shots[0].update(locked=True, duration_s=1e9))
    _refused(run_cli("plan", str(root)), "ep01.yaml", "duration_s")


def test_ass_override_braces_in_a_line_are_text_not_tags(tmp_path):
    """A line (or its translation) holding `{\\fs200}` or `\\N` stays visible text in the burned-in ASS
    and in the SRT/WebVTT sidecars: no tag of the line reaches a renderer, nothing of it is lost."""
    import pysubs2

    from stages.make_subtitles import Cue, make_subtitles
    from stages.schema import SubtitleStyle

    line = r"{\fs200\c&H0000FF&}Big \N line {x}"
    style = SubtitleStyle.model_validate({"translation": {"language": "zh"}})
    make_subtitles([Cue(0.5, 2.0, line, "ann")], style, width=540, height=960, out_srt=tmp_path / "a.srt",
                   out_ass=tmp_path / "a.ass", translated=[line],
                   out_translated=(tmp_path / "a.zh.srt", tmp_path / "a.zh.vtt"))
    (event,) = [e for e in pysubs2.load(str(tmp_path / "a.ass")).events if e.style == "Default"]
    assert "{\\fs200" not in event.text and "{x}" not in event.text and "\\N line" not in event.text
    assert "Big" in event.plaintext and "fs200" in event.plaintext and "x" in event.plaintext
    for sidecar in ("a.srt", "a.vtt", "a.zh.srt", "a.zh.vtt"):
        text = (tmp_path / sidecar).read_text(encoding="utf-8")
        assert "fs200" in text and "Big" in text and "{" not in text, (sidecar, text)


def test_webvtt_cue_text_is_escaped_so_a_line_cannot_break_the_file(tmp_path):
    from stages.make_subtitles import Cue, make_subtitles
    from stages.schema import SubtitleStyle

    cues = [Cue(0.5, 2.0, "Bold <b>move</b> & then --> go", "ann"), Cue(2.5, 3.0, "Fine.", "bo")]
    make_subtitles(cues, SubtitleStyle(), width=540, height=960, out_srt=tmp_path / "a.srt",
                   out_ass=tmp_path / "a.ass")
    vtt = (tmp_path / "a.vtt").read_text(encoding="utf-8")
    assert vtt.startswith("WEBVTT\n\n")
    body = [ln for ln in vtt.splitlines()[2:] if ln]
    timings = [ln for ln in body if "-->" in ln]
    assert timings == ["00:00:00.500 --> 00:00:02.000", "00:00:02.500 --> 00:00:03.000"]  # the line's own arrow escaped
    assert "Bold &lt;b&gt;move&lt;/b&gt; &amp; then --&gt; go" in " ".join(body) and "<b>" not in vtt


def test_a_character_the_subtitle_font_cannot_draw_is_named_by_check(tmp_path):
    """The font's cmap was checked by a helper no command called: an Arabic line burned in as boxes."""
    root = _project(tmp_path, script=TINY_SCRIPT.replace("Is it ready?", "Is it ready? مرحبا"))
    proc = run_cli("check", str(root), "--json")
    warned = [w for w in json.loads(proc.stdout)["warnings"] if "has no glyph" in w["message"]]
    assert len(warned) == 1 and warned[0]["line"] == TINY_SCRIPT.splitlines().index("Is it ready?") + 1, warned
    assert "م (U+0645)" in warned[0]["message"] and "Noto Sans CJK SC" in warned[0]["message"]
