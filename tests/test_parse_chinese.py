"""Unit tests of stages.parse_script on the Chinese short-drama layout (第1集 / 1-1 日 内 客厅 / △ /
角色：台词)."""

from __future__ import annotations

import pytest

from parse_helpers import FIXTURES, elements, parse, refused
from stages.parse_script import parse_script


# --- the Chinese short-drama layout ------------------------------------------------------------


def test_chinese_layout_fixture() -> None:
    path = FIXTURES / "short_drama_zh.txt"
    s = parse_script(path)
    assert s.title == "逆袭千金"
    assert [(ep.number, ep.title, ep.line) for ep in s.episodes] == [(1, "归来", 9), (2, "交锋", 24)]
    sc1, sc2 = s.episodes[0].scenes
    assert (sc1.scene_number, sc1.location, sc1.time, sc1.interior, sc1.line) == ("1-1", "机场大厅", "日", "INT", 11)
    assert (sc2.location, sc2.time, sc2.interior) == ("客厅", "夜", "INT")  # 1-2 客厅 夜 内: any word order
    assert s.episodes[1].scenes[0].interior == "EXT"
    got = [(e.kind, e.text, e.line, e.character, e.extension, e.parenthetical) for e in sc1.elements + sc2.elements]
    assert got == [
        ("note", "人物：林美、助理", 12, None, None, None),
        ("action", "林美推着行李箱走出闸口，摘下墨镜。", 13, None, None, None),
        ("centered", "三年后", 14, None, None, None),
        ("dialogue", "陈大富，我回来了。", 15, "林美", None, "冷笑"),
        ("dialogue", "林总，车已经在外面等您了。", 16, "助理", None, None),
        ("action", "陈大富坐在沙发上看新闻。", 19, None, None, None),
        ("dialogue", "这个女人……怎么会是她？", 20, "陈大富", "OS", None),
        ("dialogue", "不可能。", 21, "陈大富", "续", None),
        ("dialogue", "我说过，我会回来的。", 22, "林美", None, None),  # half-width colon
    ]
    (last,) = [e for e in s.episodes[1].scenes[0].elements if e.kind == "dialogue"]
    assert (last.text, last.parenthetical, last.line) == ("你……", "愣住", 30)
    assert s.characters == {"林美": "林美", "助理": "助理", "陈大富": "陈大富"}
    assert "人物小传" not in str(elements(s))  # the bios before episode 1 are never filmed
    assert s.warnings == []


def test_chinese_layout_in_a_fountain_file_is_detected_and_named() -> None:
    s = parse("第1集\n\n1-1 夜 外 天台\n△风很大。\n林美：你来了。\n")
    assert [e.kind for e in elements(s)] == ["action", "dialogue"]
    assert s.warnings[0].line == 1 and "Chinese short-drama layout" in s.warnings[0].message
    sc = s.episodes[0].scenes[0]
    assert (sc.time, sc.interior, sc.location) == ("夜", "EXT", "天台")


@pytest.mark.parametrize(("line", "time", "interior", "location"), [
    ("1-1 日 内 客厅", "日", "INT", "客厅"),
    ("1-2 客厅 夜 内", "夜", "INT", "客厅"),
    ("1-3 黄昏 外 江边 码头", "黄昏", "EXT", "江边 码头"),
    ("1-4 日/内 办公室", "日", "INT", "办公室"),
    ("1-5 晨 内/外 车里", "晨", "INT/EXT", "车里"),
    ("１－６ 夜内 医院走廊", "夜", "INT", "医院走廊"),
    ("1-7 客厅（日/内）", "日", "INT", "客厅"),
])
def test_chinese_scene_lines(line: str, time: str, interior: str, location: str) -> None:
    s = parse(f"第一集\n{line}\n△动作。\n")
    sc = s.episodes[0].scenes[0]
    assert (sc.time, sc.interior, sc.location, sc.line) == (time, interior, location, 2)


def test_chinese_layout_without_episode_lines_numbers_episodes_from_scenes() -> None:
    s = parse("1-1 日 内 客厅\n△甲进门。\n2-1 夜 外 街道\n△乙跑过。\n")
    assert [(ep.number, len(ep.scenes)) for ep in s.episodes] == [(1, 1), (2, 1)]


def test_chinese_layout_episode_numbers_in_chinese_numerals_must_be_in_order() -> None:
    err = refused("第一集：开始\n1-1 日 内 甲\n△a。\n第二集\n2-1 日 内 乙\n△b。\n第十集\n10-1 日 内 丙\n△c。\n")
    assert err.line == 7 and "episode 10 follows episode 2" in err.message
    s = parse("第一集\n1-1 日 内 甲\n△a。\n第二集 重逢\n2-1 日 内 乙\n△b。\n")
    assert [(ep.number, ep.title) for ep in s.episodes] == [(1, ""), (2, "重逢")]


def test_chinese_layout_dialogue_before_scene_opens_the_episode() -> None:
    s = parse("第1集\n林美：我先说一句。\n1-1 日 内 客厅\n△动作。\n")
    opening, scene = s.episodes[0].scenes
    assert opening.elements[0].kind == "dialogue" and opening.elements[0].text == "我先说一句。"
    assert scene.location == "客厅"
    (w,) = [w for w in s.warnings if "before any scene heading" in w.message]
    assert w.line == 2 and "dialogue before any scene heading" in w.message and "1-1 日 内" in w.message


def test_chinese_layout_dialogue_name_on_its_own_line_and_notes() -> None:
    s = parse("第1集\n1-1 日 内 客厅\n时间：三年后\n【闪回】\n林美（冷笑）：\n（转身）\n你来了。\n字幕：一年后\n")
    got = [(e.kind, e.text, e.parenthetical) for e in elements(s)]
    assert got == [("note", "时间：三年后", None), ("note", "闪回", None),
                   ("dialogue", "你来了。", "冷笑 转身"), ("centered", "一年后", None)]


def test_chinese_layout_title_forms() -> None:
    for first in ("《逆袭》", "剧名：逆袭", "Title: 逆袭"):
        assert parse(f"{first}\n第1集\n1-1 日 内 客厅\n△动作。\n").title == "逆袭"


def test_a_cue_alone_then_its_acting_note_is_a_reaction_at_the_notes_line():
    """`陈大富：` then `（愣住）` on the next line, no words: the reaction is where its note is written
    (the mutation property test found it placed on the cue's line)."""
    from stages.parse_script import parse_text

    text = "第1集 归来\n\n1-1 日 外 公司楼下\n△林美下车。\n陈大富：\n（愣住）\n"
    (sc,) = parse_text(text, "x.txt").episodes[0].scenes
    assert [(e.kind, e.line, e.text, e.cue) for e in sc.elements][-1] == ("reaction", 6, "愣住", "陈大富")
