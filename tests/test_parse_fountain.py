"""Unit tests of stages.parse_script on Fountain: every element kind, notes and boneyard, episodes,
warnings and the cast check, and line numbers. The Chinese layout is in test_parse_chinese.py, bad
input, encodings and episode folders in test_parse_input.py."""

from __future__ import annotations

import pytest

from parse_helpers import FIXTURES, HEAD, elements, messages, only, parse, refused
from stages.parse_script import parse_script
from stages.schema import normalize_name


# --- title page --------------------------------------------------------------------------------


def test_title_page_keys_and_multiline_values() -> None:
    s = parse("Title:\n    _**BIG**_\n    **NIGHT**\nCredit: Written by\nDraft date: 1/2/2026\nContact:\n"
              "\tme@example.com\n\t(555) 123\n\nINT. ROOM - DAY\n\nAction.\n")
    assert s.title == "BIG NIGHT"
    assert s.title_page == {"title": "BIG\nNIGHT", "credit": "Written by", "draft date": "1/2/2026",
                            "contact": "me@example.com\n(555) 123"}
    assert s.episodes[0].title == "BIG NIGHT"  # no episode sections: episode 1, titled from the title page
    assert elements(s)[0].line == 12


def test_all_caps_dialogue_first_line_is_not_a_title_page() -> None:
    s = parse("JOHN: hello there\n\nINT. ROOM - DAY\n\nAction.\n")
    assert not s.title_page  # read as action before any heading, not swallowed as a title page
    opening = s.episodes[0].scenes[0]
    assert (opening.heading, opening.line, opening.elements[0].text) == ("", 1, "JOHN: hello there")
    assert s.warnings[0].line == 1 and "before any scene heading" in s.warnings[0].message


# --- scene headings ----------------------------------------------------------------------------


@pytest.mark.parametrize(("heading", "interior", "location", "time"), [
    ("INT. HOUSE - DAY", "INT", "HOUSE", "DAY"),
    ("EXT. HOUSE - NIGHT", "EXT", "HOUSE", "NIGHT"),
    ("INT HOUSE DAY", "INT", "HOUSE", "DAY"),
    ("INT - HOUSE - DAY", "INT", "HOUSE", "DAY"),
    ("INT./EXT. CAR - MOVING", "INT/EXT", "CAR", "MOVING"),
    ("INT/EXT CAR - DAY", "INT/EXT", "CAR", "DAY"),
    ("I/E. HOUSE - DAY", "INT/EXT", "HOUSE", "DAY"),
    ("I./E. HOUSE - DAY", "INT/EXT", "HOUSE", "DAY"),
    ("EST. CITY - DAWN", "EXT", "CITY", "DAWN"),
    ("int. kitchen - day", "INT", "kitchen", "day"),
    ("INT. HOUSE - KITCHEN - DAY (1979)", "INT", "HOUSE - KITCHEN", "DAY (1979)"),
    ("INT. SAN FRANCISCO APARTMENT, DAY", "INT", "SAN FRANCISCO APARTMENT", "DAY"),
    (".KITCHEN", "", "KITCHEN", ""),
    (".SNIPER SCOPE POV", "", "SNIPER SCOPE POV", ""),
])
def test_scene_heading_variants(heading: str, interior: str, location: str, time: str) -> None:
    sc = parse(f"{heading}\n\nAction.\n").episodes[0].scenes[0]
    assert (sc.interior, sc.location, sc.time) == (interior, location, time)
    assert sc.heading == heading.lstrip(".")
    assert (sc.line, sc.number) == (1, 1)


@pytest.mark.parametrize("line", ["ESTABLISHING", "... not a heading", "INTERIOR DESIGN IS FUN"])
def test_not_scene_headings(line: str) -> None:
    s = parse(f"{HEAD}{line}\n")
    assert len(s.episodes[0].scenes) == 1
    assert only(s, "action")[0].text == line


def test_scene_numbers_and_numbering_within_episode() -> None:
    s = parse("INT. A - DAY #12#\n\nOne.\n\nEXT. B - NIGHT #12A#\n\nTwo.\n\nINT. C - DAY\n\nThree.\n")
    scenes = s.episodes[0].scenes
    assert [(sc.number, sc.scene_number, sc.heading) for sc in scenes] == [
        (1, "12", "INT. A - DAY"), (2, "12A", "EXT. B - NIGHT"), (3, None, "INT. C - DAY")]


def test_duplicate_forced_scene_numbers_warn() -> None:
    s = parse("INT. A - DAY #3#\n\nOne.\n\nINT. B - DAY #3#\n\nTwo.\n")
    (w,) = s.warnings
    assert w.line == 5 and "#3#" in w.message and "line 1" in w.message
    assert [sc.number for sc in s.episodes[0].scenes] == [1, 2]


def test_heading_directly_followed_by_action_line() -> None:
    s = parse("INT. HOUSE - DAY\nJohn enters.\n")
    assert s.episodes[0].scenes[0].location == "HOUSE"
    assert [(e.kind, e.text, e.line) for e in elements(s)] == [("action", "John enters.", 2)]


# --- action ------------------------------------------------------------------------------------


def test_action_multiline_indentation_and_forced() -> None:
    s = parse(f"{HEAD}A long beat.\nLonger than funny.\n\n    Four spaces in.\n\n!BANG\nBANG\n")
    assert [(e.text, e.line) for e in only(s, "action")] == [
        ("A long beat.\nLonger than funny.", 3), ("    Four spaces in.", 6), ("BANG\nBANG", 8)]


# --- dialogue ----------------------------------------------------------------------------------


def test_dialogue_cue_extension_parenthetical_and_character_ids() -> None:
    s = parse(f"{HEAD}MARY (V.O.)\n(softly)\nI'm here.\n\nBOB (CONT'D)\nStill?\n\nMARY (O.S.)\nYes.\n")
    a, b, c = only(s, "dialogue")
    assert (a.cue, a.character, a.extension, a.parenthetical, a.text, a.line) == (
        "MARY (V.O.)", "mary", "V.O.", "softly", "I'm here.", 5)
    assert (b.cue, b.character, b.extension) == ("BOB (CONT'D)", "bob", "CONT'D")
    assert (c.character, c.extension) == ("mary", "O.S.")
    assert s.characters == {"mary": "MARY", "bob": "BOB"}
    assert s.warnings == []


def test_two_extensions_and_lower_case_extension() -> None:
    s = parse(f"{HEAD}EDWARD (V.O.)(CONT'D)\nGold.\n\nHANS (on the radio)\nWhat?\n")
    a, b = only(s, "dialogue")
    assert (a.character, a.extension) == ("edward", "V.O., CONT'D")
    assert (b.character, b.cue, b.extension) == ("hans", "HANS (on the radio)", "on the radio")


def test_parenthetical_mid_dialogue_starts_a_new_line_element() -> None:
    s = parse(f"{HEAD}STEEL\nThey're coming!\n(pause)\nNo, everybody!\n(pause)\n(beat)\nSniper?\n")
    assert [(e.parenthetical, e.text, e.line) for e in only(s, "dialogue")] == [
        (None, "They're coming!", 4), ("pause", "No, everybody!", 6), ("pause beat", "Sniper?", 9)]


def test_a_parenthetical_with_no_words_after_it_is_a_reaction_never_spoken() -> None:
    s = parse(f"{HEAD}EVE\nOh, Adam.\n(kissing him)\n\nADAM\n(stunned)\n")
    assert [e.text for e in only(s, "dialogue")] == ["Oh, Adam."]
    assert [(e.character, e.text, e.line) for e in only(s, "reaction")] == [("eve", "kissing him", 5),
                                                                             ("adam", "stunned", 8)]
    assert s.warnings == [] and set(s.characters) == {"eve", "adam"}


def test_two_parentheticals_with_no_words_are_one_reaction_from_the_first_line() -> None:
    # found by the mutation property test: the reaction's text starts on the first parenthetical's line
    s = parse(f"{HEAD}MILLER\n(into phone)\n(grabbing shotgun)\n\nHe hangs up.\n")
    assert [(e.text, e.line) for e in only(s, "reaction")] == [("into phone grabbing shotgun", 4)]


def test_a_dual_dialogue_caret_on_its_own_line_is_never_said() -> None:
    s = parse(f"{HEAD}BRICK\nScrew retirement.\n\nSTEEL\n^\nScrew retirement.\n")
    said = only(s, "dialogue")
    assert [(e.character, e.text, e.dual) for e in said] == [("brick", "Screw retirement.", True),
                                                             ("steel", "Screw retirement.", True)]


def test_multiline_dialogue_and_two_space_line() -> None:
    s = parse(f"{HEAD}DEALER\nDealer gets a seven.\n  \nHit or stand, sir?\n\nAfter.\n")
    (d,) = only(s, "dialogue")
    assert d.text == "Dealer gets a seven.\n\nHit or stand, sir?"
    assert only(s, "action")[0].text == "After."


def test_cue_needs_a_blank_line_before_and_text_after() -> None:
    s = parse(f"{HEAD}He shouts.\nSTOP\n\nTHE END\n\nTHE BEGINNING\n")
    assert [e.kind for e in elements(s)] == ["action", "action", "action"]


def test_forced_cue_mixed_case_and_cjk() -> None:
    s = parse(f"{HEAD}@McDUCK\nI'm vegan.\n\n@林美\n你好。\n")
    a, b = only(s, "dialogue")
    assert (a.cue, a.character, a.text) == ("McDUCK", "mcduck", "I'm vegan.")
    assert (b.cue, b.character, b.text) == ("林美", "林美", "你好。")
    assert s.warnings == []


def test_numbers_only_cue_is_action() -> None:
    s = parse(f"{HEAD}23 (O.S.)\nCharacter name must include a letter\n")
    assert [e.kind for e in elements(s)] == ["action"]


def test_dual_dialogue_marks_both_sides() -> None:
    s = parse(f"{HEAD}BRICK\nScrew retirement.\n\nSTEEL ^\nScrew retirement.\n\nBRICK\nAgain.\n")
    assert [(e.character, e.dual) for e in only(s, "dialogue")] == [
        ("brick", True), ("steel", True), ("brick", False)]
    assert only(s, "dialogue")[1].cue == "STEEL"


def test_indented_dialogue() -> None:
    s = parse(f"{HEAD}\t\tEVE\n\t  (feeling cocky)\n\tWell, then I'll just indent!\n")
    (d,) = only(s, "dialogue")
    assert (d.cue, d.parenthetical, d.text) == ("EVE", "feeling cocky", "Well, then I'll just indent!")


def test_aliases_map_spellings_to_cast_ids() -> None:
    aliases = {normalize_name("Mary"): "mary_wong", normalize_name("Ms. Wong"): "mary_wong"}
    s = parse(f"{HEAD}MARY\nHi.\n\nMS. WONG\nHello.\n\nSTRANGER\nWho?\n", aliases=aliases)
    assert [e.character for e in only(s, "dialogue")] == ["mary_wong", "mary_wong", "stranger"]
    assert s.characters == {"mary_wong": "MARY", "stranger": "STRANGER"}
    assert "spelled 2 ways" in messages(s)


# --- other elements ----------------------------------------------------------------------------


def test_lyrics_transitions_centered_sections_synopses_page_breaks() -> None:
    s = parse(f"{HEAD}~Willy Wonka!\n~The amazing chocolatier!\n\nCUT TO:\n\n> fade to black\n\n"
              "NOT A TRANSITION TO:  \n\n>THE END<\n\n> Centered <\n>Two lines<\n\n## Act Two\n\n"
              "= The turn.\n\n===\n\nFADE OUT.\n")
    got = [(e.kind, e.text, e.line) for e in elements(s)]
    assert got == [
        ("lyrics", "Willy Wonka!\nThe amazing chocolatier!", 3),
        ("transition", "CUT TO:", 6),
        ("transition", "fade to black", 8),
        ("action", "NOT A TRANSITION TO:", 10),
        ("centered", "THE END", 12),
        ("centered", "Centered\nTwo lines", 14),
        ("section", "Act Two", 17),
        ("synopsis", "The turn.", 19),
        ("page_break", "===", 21),
        ("transition", "FADE OUT.", 23),
    ]


def test_sung_dialogue_is_lyrics_with_the_singer() -> None:
    s = parse(f"{HEAD}SINGER\n~These are the songs\n~That I sing.\n")
    (el,) = elements(s)
    assert (el.kind, el.character, el.text) == ("lyrics", "singer", "These are the songs\nThat I sing.")


def test_emphasis_stripped_and_escapes_kept() -> None:
    s = parse(f"{HEAD}*italic* **bold** ***both*** _under_ snake_case_name \\*literal\\* 5 \\_x\\_\n\n"
              "JOHN\n_Permanently_.\n")
    assert only(s, "action")[0].text == "italic bold both under snake_case_name *literal* 5 _x_"
    assert only(s, "dialogue")[0].text == "Permanently."


# --- notes and boneyard ------------------------------------------------------------------------


def test_notes_inline_standalone_and_multiline() -> None:
    s = parse(f"{HEAD}Before [[one]]after.\n\n[[Standalone\nnote]]\n\nMARY\nHello [[whisper]]there.\n"
              "[[beat]]\nStill here.\n")
    got = [(e.kind, e.text, e.line) for e in elements(s)]
    assert got == [
        ("action", "Before after.", 3),
        ("note", "one", 3),
        ("note", "Standalone\nnote", 5),
        ("dialogue", "Hello there.\nStill here.", 9),
        ("note", "whisper", 9),
        ("note", "beat", 10),
    ]


def test_note_opened_at_line_end_points_at_its_text() -> None:
    s = parse(f"{HEAD}Action. [[\nThe note text.]]\n")
    note = only(s, "note")[0]
    assert (note.text, note.line) == ("The note text.", 4)


def test_note_with_two_space_line_is_one_note() -> None:
    s = parse(f"{HEAD}Before [[multiline\nnote\n  \nwith a blank line]]After\n")
    assert only(s, "action")[0].text == "Before After"
    assert only(s, "note")[0].text == "multiline\nnote\n\nwith a blank line"


def test_boneyard_removed_and_line_numbers_kept() -> None:
    s = parse(f"{HEAD}Kept.\n\n/* Cut.\n\nJOHN\nCut too.\n*/\n\nThis is an /* internal */ boneyard.\n\n"
              "Line one.\n/*\nnope\n*/\nLine two.\n\nA /* one /* nested */ still */ B\n")
    got = [(e.text, e.line) for e in elements(s)]
    assert got == [("Kept.", 3), ("This is an  boneyard.", 11), ("Line one.\nLine two.", 13),
                   ("A  B", 19)]


def test_boneyard_spanning_paragraphs_keeps_them_apart() -> None:
    s = parse(f"{HEAD}CUT TO:\n/*\nINT. GARAGE - DAY\n\nThey drive.\n*/\nEXT. MANSION - DAY\n\nA man.\n")
    assert [sc.heading for sc in s.episodes[0].scenes] == ["INT. ROOM - DAY", "EXT. MANSION - DAY"]
    assert elements(s)[0].kind == "transition"


# --- episodes ----------------------------------------------------------------------------------


def test_episode_sections() -> None:
    s = parse_script(FIXTURES / "three_episodes.fountain")
    assert [(ep.number, ep.title, ep.line, len(ep.scenes)) for ep in s.episodes] == [
        (1, "The Stall", 4, 1), (2, "The Rival", 13, 2), (3, "和解", 27, 1)]
    assert [ep.id for ep in s.episodes] == ["ep01", "ep02", "ep03"]
    assert [sc.number for sc in s.episodes[1].scenes] == [1, 2]
    assert only(s, "section")[0].text == "Act One"  # `## Act One` is just a section
    assert s.title == "Night Market"


@pytest.mark.parametrize("header", ["# Episode 1", "# EPISODE 1 - Pilot", "# Ep. 1: Pilot", "# 第1集 开端",
                                    "# 第一集：开端", "## Episode 1 Pilot"])
def test_episode_section_spellings(header: str) -> None:
    s = parse(f"{header}\n\n{HEAD}Action.\n")
    assert [ep.number for ep in s.episodes] == [1]


def test_sections_before_first_scene_are_dropped_not_refused() -> None:
    s = parse("# Act One\n\n= Synopsis.\n\n[[a note]]\n\n===\n\nCUT TO:\n\nINT. ROOM - DAY\n\nAction.\n")
    assert [e.kind for e in elements(s)] == ["action"]


@pytest.mark.parametrize(("text", "line", "what"), [
    ("# Episode 1\n\n" + HEAD + "A.\n\n# Episode 3\n\n" + HEAD + "B.\n", 7, "follows episode 1"),
    ("# Episode 1\n\n" + HEAD + "A.\n\n# Episode 1\n\n" + HEAD + "B.\n", 7, "appears twice"),
    ("# Episode 2\n\n" + HEAD + "A.\n", 1, "is the first episode"),
    ("# Episode 1\n\n" + HEAD + "A.\n\n# Episode 3\n\n" + HEAD + "C.\n\n# Episode 2\n\n" + HEAD + "B.\n", 7,
     "follows episode 1"),
])
def test_bad_episode_numbers(text: str, line: int, what: str) -> None:
    err = refused(text)
    assert (err.line, what in err.message) == (line, True)
    assert "number the episodes" in err.hint or "renumber" in err.hint


def test_scene_before_first_episode_section_is_refused() -> None:
    err = refused(HEAD + "A.\n\n# Episode 1\n\n" + HEAD + "B.\n")
    assert err.line == 1 and "Episode 1" in err.hint


def test_episode_without_scenes_is_refused() -> None:
    err = refused("# Episode 1\n\n" + HEAD + "A.\n\n# Episode 2\n\n## Act One\n")
    assert err.line == 7 and "no scenes" in err.message


def test_action_before_first_scene_of_a_later_episode_opens_that_episode() -> None:
    s = parse("# Episode 1\n\n" + HEAD + "A.\n\n# Episode 2\n\nStray action.\n\n" + HEAD + "B.\n")
    opening, scene = s.episodes[1].scenes
    assert (opening.location, opening.heading, [el.text for el in opening.elements]) == \
        ("opening", "", ["Stray action."])
    assert scene.number == 2 and scene.elements[0].text == "B."
    (w,) = s.warnings
    assert w.line == 9 and "episode 2" in w.message and "INT. PLACE - DAY" in w.message


def test_text_before_the_first_episode_heading_is_not_filmed_and_says_so() -> None:
    s = parse("She comes home after ten years.\n\nMore synopsis.\n\n# Episode 1\n\n" + HEAD + "A.\n")
    (w,) = s.warnings  # one warning for the whole preamble
    assert w.line == 1 and "not filmed" in w.message and "# Episode 1" in w.message
    assert [el.text for el in s.episodes[0].scenes[0].elements] == ["A."]


# --- warnings ----------------------------------------------------------------------------------


def test_cjk_cue_without_at_warns_and_explains() -> None:
    s = parse(f"{HEAD}林美\n你好。\n\n林美\n再见。\n")
    assert [e.character for e in only(s, "dialogue")] == ["林美", "林美"]
    (w,) = s.warnings
    assert w.line == 3 and "`@林美`" in w.message


def test_single_cjk_cue_like_line_is_action_with_a_warning() -> None:
    s = parse(f"{HEAD}深夜\n街上没有人。\n")
    assert [e.kind for e in elements(s)] == ["action"]
    assert "`@深夜`" in messages(s) and "read as action" in messages(s)


def test_fullwidth_colon_in_fountain_warns() -> None:
    s = parse(f"Title：短剧\n\n{HEAD}林美：你好。\n")
    assert s.title == "短剧"
    msgs = [(w.line, w.message) for w in s.warnings]
    assert msgs[0][0] == 1 and "full-width `：`" in msgs[0][1]
    assert msgs[1][0] == 5 and "`@林美`" in msgs[1][1] and "角色：台词" in msgs[1][1]


def test_one_character_spelled_two_ways_gets_one_id() -> None:
    s = parse(f"{HEAD}MARY\nA.\n\nＭＡＲＹ\nB.\n\n@Mary (V.O.)\nC.\n\n@陈大富\nD.\n\n@陈大富（续）\nE.\n")
    assert [e.character for e in only(s, "dialogue")] == ["mary", "mary", "mary", "陈大富", "陈大富"]
    assert s.characters == {"mary": "MARY", "陈大富": "陈大富"}
    assert "spelled 3 ways" in messages(s) and "ＭＡＲＹ" in messages(s)


@pytest.mark.parametrize(("a", "b", "why"), [
    ("JOSEPHINE", "JOSEPHIN", "one letter"),
    ("MARCUS", "MARKUS", "one letter"),
    ("MAШA", "МАША", "different letters"),  # Latin M, A vs Cyrillic
    ("BOB", "B0B", "different letters"),  # zero vs O
])
def test_near_duplicate_names_warn_with_both_spellings_and_lines(a: str, b: str, why: str) -> None:
    s = parse(f"{HEAD}{a}\nOne.\n\n{b}\nTwo.\n")
    assert len({e.character for e in only(s, "dialogue")}) == 2
    (w,) = s.warnings
    assert w.line == 6 and a in w.message and b in w.message and why in w.message
    assert "t.fountain:3" in w.message and "two voices" in w.message


@pytest.mark.parametrize(("a", "b"), [("GUARD 1", "GUARD 2"), ("DAN", "JAN"), ("MARY", "MARCUS")])
def test_distinct_names_do_not_warn(a: str, b: str) -> None:
    assert parse(f"{HEAD}{a}\nOne.\n\n{b}\nTwo.\n").warnings == []


def test_near_duplicates_declared_in_the_cast_do_not_warn() -> None:
    aliases = {"marcus": "marcus", "markus": "markus"}
    assert parse(f"{HEAD}MARCUS\nOne.\n\nMARKUS\nTwo.\n", aliases=aliases).warnings == []


def test_emoji_in_dialogue_warns() -> None:
    s = parse(f"{HEAD}MARY\nI love it 😍!\n")
    (w,) = s.warnings
    assert w.line == 4 and "😍" in w.message and "cannot speak" in w.message


# --- line numbers ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["kitchen_sink.fountain", "three_episodes.fountain", "short_drama_zh.txt"])
def test_every_element_line_points_at_its_text(name: str) -> None:
    path = FIXTURES / name
    s = parse_script(path)
    src = path.read_text(encoding="utf-8").split("\n")
    count = 0
    for ep in s.episodes:
        for sc in ep.scenes:
            assert src[sc.line - 1].lstrip(".").startswith(sc.heading[:8])
            for el in sc.elements:
                if el.kind != "page_break":
                    word = el.text.split()[0][:8]
                    assert word in src[el.line - 1].replace("**", "").replace("\\", ""), (el.kind, el.line, el.text)
                    count += 1
    assert count >= 5


def test_kitchen_sink_fixture() -> None:
    s = parse_script(FIXTURES / "kitchen_sink.fountain")
    kinds = {el.kind for el in elements(s)}
    assert kinds == {"action", "dialogue", "note", "lyrics", "transition", "page_break", "centered", "section"}
    assert s.title == "THE LAST SHIFT"
    assert [sc.heading for sc in s.episodes[0].scenes] == ["INT. DINER - NIGHT", "ROOFTOP", "EXT. PARKING LOT - DAWN"]
    assert "flashback" not in str(elements(s)).lower()  # boneyard
    assert s.characters == {"mara": "MARA", "tom": "TOM", "mcgregor": "McGREGOR"}
