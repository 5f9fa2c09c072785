"""Who is on screen follows the script (entrances, exits, voices heard off screen), in the rules
planner, the prompts and the LLM planner's checks; a wordless reaction is a shot; continuity and
the script's own ending are read; lint is strict where a render would be wrong."""

from __future__ import annotations

import pytest

from conftest import run_cli
from parse_helpers import parse
from stages.parse_script import parse_text
from stages.plan_shots import plan_shots
from stages.plan_shots_llm import validate
from stages.schema import Project

PROJECT = Project(title="t", width=270, height=480)


def _shots(text: str, project: Project = PROJECT):
    script = parse_text(text, "t.txt") if "第1集" in text else parse(text)
    return script, [s for ep in script.episodes for s in plan_shots(ep, project, characters=script.characters).shots]


def test_a_voice_heard_on_the_phone_is_never_in_the_picture():
    script, shots = _shots("INT. DINER - NIGHT\n\nThe phone rings. It is FRANK, calling from a pay phone. ROSA "
                           "answers.\n\nFRANK (V.O.)\nMa, it's me.\n\nROSA\nFrank? It's two in the morning!\n\n"
                           "FRANK (V.O.)\nDon't hang up.\n")
    assert all("frank" not in s.characters for s in shots)
    heard = [s for s in shots if s.lines and s.lines[0].character == "frank"]
    assert [s.characters for s in heard] == [["rosa"], ["rosa"]] and all(s.size != "close-up" for s in heard)
    assert "FRANK is not in the picture" in heard[0].prompt and "FRANK is speaking" not in heard[0].prompt


def test_an_entrance_brings_a_character_on_at_its_beat():
    script, shots = _shots("INT. KITCHEN - DAY\n\nROSA stirs a pot.\n\nROSA\nWhere is she?\n\n"
                           "The door bangs open. DANI walks in, soaked.\n\nDANI\nHere.\n\n"
                           "DANI leaves without a word.\n\nROSA\nTypical.\n")
    assert [(s.action.split(".")[0], s.characters) for s in shots] == [
        ("ROSA stirs a pot", ["rosa"]), ("", ["rosa"]), ("The door bangs open", ["rosa", "dani"]),
        ("", ["dani", "rosa"]), ("DANI leaves without a word", ["rosa", "dani"]), ("", ["rosa"])]


def test_a_listed_character_who_enters_later_is_not_there_before():
    script, shots = _shots("第1集\n\n1-1 夜 内 客厅\n人物：林母、林晓\n△林母坐在沙发上。\n林母：喂？\n"
                           "△门开了，林晓端着汤走进来。\n林晓：妈，谁的电话？\n")
    # a reaction close-up on the mother follows the question
    assert [s.characters for s in shots] == [["林母"], ["林母"], ["林母", "林晓"], ["林晓", "林母"], ["林母"]]


def test_a_listed_character_thinking_aloud_is_there():
    script, shots = _shots("第1集\n\n1-1 夜 内 客厅\n人物：陈大富\n陈大富（OS）：怎么会是她？\n")
    assert [s.characters for s in shots] == [["陈大富"], ["陈大富"]]
    script, shots = _shots("第1集\n\n1-1 夜 内 客厅\n人物：林母、陈默\n林母：喂？\n陈默（电话）：是我。\n")
    assert all("陈默" not in s.characters for s in shots)  # listed, but only ever on the phone


def test_an_inner_voice_keeps_its_speaker_in_the_picture_lips_still():
    script, shots = _shots("第1集\n\n1-1 夜 内 客厅\n△陈大富坐在沙发上看新闻。\n陈大富（OS）：怎么会是她？\n")
    (_, said) = shots
    assert said.characters == ["陈大富"] and not said.prompt.count("is speaking")
    from stages.generate_shot import _extra

    assert "speaking" not in _extra(said.model_copy(update={"lines": [said.lines[0].model_copy(
        update={"speech_s": 1.0})]}), PROJECT)  # the lips do not move for a thought


def test_a_wordless_reaction_is_a_close_up_shot_in_both_layouts():
    zh, zh_shots = _shots("第1集\n\n1-1 夜 内 客厅\n林母：你回来了？\n林晓：（怔住）\n林母：说话啊！\n")
    en, en_shots = _shots("INT. A - DAY\n\nMOM\nYou're back?\n\nJO\n(stunned)\n\nMOM\nSay something!\n")
    for script, shots, who, what in ((zh, zh_shots, "林晓", "怔住"), (en, en_shots, "jo", "stunned")):
        (react,) = [s for s in shots if s.action == what]
        assert react.size == "close-up" and react.characters == [who] and not react.lines
        assert not script.warnings
        # no automatic reaction close-up right before the scripted one
        assert [s.size for s in shots].count("close-up") == 1 + sum(1 for s in shots if s.size == "close-up" and s.lines)


def test_continuous_takes_the_night_before_it_across_episodes():
    script = parse("# Episode 1\n\nINT. DINER - NIGHT\n\nRain.\n\n# Episode 2\n\nINT. DINER - CONTINUOUS\n\n"
                   "Still rain.\n\nEXT. ROOF - NIGHT - CONTINUOUS\n\nWind.\n\nINT. DINER - MOMENTS LATER\n\nDawn.\n")
    scenes = [sc for ep in script.episodes for sc in ep.scenes]
    assert [(sc.location, sc.time) for sc in scenes] == [("DINER", "NIGHT"), ("DINER", "NIGHT"), ("ROOF", "NIGHT"),
                                                         ("DINER", "NIGHT")]
    zh = parse_text("第1集\n\n1-1 夜 内 客厅\n△雨。\n\n第2集\n\n2-1 同上 内 客厅\n△还在下雨。\n", "t.txt")
    assert [sc.time for ep in zh.episodes for sc in ep.scenes] == ["夜", "夜"]


@pytest.mark.parametrize(("ending", "words"), [("> TO BE CONTINUED... <", "TO BE CONTINUED..."),
                                              ("THE END", "THE END"), ("> The End. <", "The End.")])
def test_the_scripts_own_ending_is_the_end_card(ending, words):
    script = parse(f"INT. A - DAY\n\nRain.\n\nTOM\nBye.\n\n{ending}\n")
    (ep,) = script.episodes
    assert ep.end_text == words and all(words not in el.text for el in ep.scenes[0].elements)


@pytest.mark.parametrize("ending", ["【字幕：未完待续】", "（未完待续）", "【本集完】", "（完）"])
def test_the_chinese_scripts_own_ending_is_the_end_card(ending):
    script = parse_text(f"第1集\n\n1-1 日 内 客厅\n林美：走吧。\n林晓：（摇头）\n{ending}\n", "t.txt")
    assert script.episodes[0].end_text == ending.strip("【】（）").replace("字幕：", "")
    assert [el.kind for el in script.episodes[0].scenes[0].elements] == ["dialogue", "reaction"]


def test_the_end_card_says_the_scripts_words_once(tmp_path):
    from stages.core.paths import BuildPaths
    from stages.plan_work import plan_cut
    from stages.time_shots import time_shots

    script = parse("INT. A - DAY\n\nTOM\nBye.\n\n> TO BE CONTINUED <\n")
    (ep,) = script.episodes
    shots = time_shots(plan_shots(ep, PROJECT, characters=script.characters), {"ep01-sc01-sh002": [1.0]}, PROJECT)
    speech = {("ep01-sc01-sh002", 0): ("k", tmp_path / "x.wav")}
    for end in (True, False):  # the script's words, even with the automatic end card turned off
        project = PROJECT.model_copy(update={"cards": PROJECT.cards.model_copy(update={"end": end})})
        cut = plan_cut(shots, ["k", "k"], [tmp_path / "x.mp4"] * 2, speech, project, tmp_path,
                       paths=BuildPaths(tmp_path / "build"), final=True, end_text=ep.end_text)
        texts = [t for _, _, t in cut.cards]
        assert texts[-1] == "TO BE CONTINUED" and "The End" not in texts and len(texts) == 2
    assert [t for _, _, t in plan_cut(shots, ["k", "k"], [tmp_path / "x.mp4"] * 2, speech, PROJECT, tmp_path,
                                      paths=BuildPaths(tmp_path / "build"), final=True).cards][-1] == "The End"


def test_the_llm_planner_may_not_show_a_voice_heard_off_screen(tiny_project):
    from stages.load_project import load_project

    script = tiny_project / "script.fountain"
    script.write_text(script.read_text().replace("BO\n(grumbling)", "BO (V.O.)\n(grumbling)"), encoding="utf-8")
    lp = load_project(tiny_project)
    ep = lp.script.episodes[0]
    answer = {"shots": [
        {"scene": 1, "size": "establishing", "camera": "static", "characters": ["ann"], "action": "", "lines": [],
         "duration_s": 2},
        {"scene": 1, "size": "medium", "camera": "static", "characters": ["ann"], "action": "", "lines": ["L1"],
         "duration_s": 0},
        {"scene": 1, "size": "close-up", "camera": "static", "characters": ["bo"], "action": "", "lines": ["L2"],
         "duration_s": 0},
        {"scene": 2, "size": "wide", "camera": "static", "characters": ["ann"], "action": "", "lines": ["L3"],
         "duration_s": 0}]}
    problems = validate(answer, ep, lp.project, {"ann", "bo"}, lp.script.characters)
    assert problems == ["shot 3: bo not on screen then (a voice heard off screen, or not yet entered, or gone); "
                        "show only who is on screen: ['ann']"]
    from stages.plan_shots_llm import messages

    user = messages(ep, lp.project, tiny_project, [], lp.script.characters)[1]["content"]
    assert 'L2 line bo (heard, not seen) ("grumbling"): "Almost. Patience." [on screen: ann]' in user


def test_an_unknown_voice_language_is_an_error_at_its_line(tiny_project):
    yaml = tiny_project / "project.yaml"
    yaml.write_text(yaml.read_text().replace("language: en-gb", "language: klingon"), encoding="utf-8")
    for cmd in ("check", "render"):
        proc = run_cli(cmd, str(tiny_project))
        assert proc.returncode == 2, (cmd, proc.stderr)
        line = yaml.read_text().splitlines().index("    voice: {language: klingon, variant: m3, pitch: 35}") + 1
        assert f"project.yaml:{line}: cast bo: eSpeak NG has no language 'klingon'" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (tiny_project / "build").exists()


def test_version():
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("dramaforge ")
