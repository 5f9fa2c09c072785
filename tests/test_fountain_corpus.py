"""Conformance of parse_script against the shared Fountain corpus (../shared/corpus/fountain).

Expected outputs come from two other parsers: screenplain's `.html` renderings and Jouvence's
YAML `in:`/`out:` cases. Both are mapped onto our element kinds (see `_screenplain_tokens` and
`_jouvence_tokens`). Deliberate differences between their semantics and ours:

* Action, dialogue and on-screen text before any scene heading become an opening scene with a
  warning, and sections, synopses and transitions there are dropped (nothing outside a scene is
  filmed); a file with no heading at all is refused. Most
  corpus snippets have no heading, so the harness puts `INT. CORPUS TEST - DAY` in front of every
  compared input (after the title page, if any) and leaves that one heading out of the
  comparison; everything the other parser renders is then compared.
* screenplain and Jouvence drop notes; we keep them as `note` elements, so notes are left out of
  the comparison (they are checked in test_parse_fountain.py).
* `EXT/INT.` starts a scene heading for us as `INT/EXT.` does; screenplain only knows the latter.
* `FADE IN:` / `FADE OUT.` are transitions for us (no shot of the words "FADE OUT."); screenplain
  renders them as action unless forced with `>`.
* A note `[[` that crosses a blank line is refused (InputError at the `[[` line); screenplain
  prints such text literally and afterwriting reads it as a note. Those cases assert the error,
  then compare the rest.
* Jouvence keeps emphasis markup and folds blank lines into action; we strip markup and split
  action at blank lines, so expected text is cleaned the same way before comparing.
"""

from __future__ import annotations

import html.parser
import re
import shutil
from pathlib import Path
from typing import ClassVar

import pytest

from stages.core.errors import InputError
from stages.parse_script import parse_script, parse_text
from stages.schema import Script

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "fountain"

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"Fountain corpus not found at {CORPUS}")

yaml = pytest.importorskip("yaml")

PLACE = "INT. CORPUS TEST - DAY"
FADES = re.compile(r"^(?:FADE IN|FADE OUT|FADE TO BLACK|CUT TO BLACK)\s*[:.]?$")


# --- helpers -----------------------------------------------------------------------------------


def _with_place(text: str, title_page: bool) -> str:
    """Put a scene heading before the body (after the title page)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    at = 0
    if title_page:
        while at < len(lines) and lines[at].strip():
            at += 1
    return "\n".join(lines[:at] + (["", PLACE, ""] if at else [PLACE, ""]) + lines[at:])


def _clean_markup(s: str) -> str:
    s = s.replace("\\*", "\ue000")
    for rx in (r"\*\*\*(?=\S)(.+?)(?<=\S)\*\*\*", r"\*\*(?=\S)(.+?)(?<=\S)\*\*", r"\*(?=\S)(.+?)(?<=\S)\*",
               r"(?<!\w)_(?=\S)(.+?)(?<=\S)_(?!\w)"):
        s = re.sub(rx, r"\1", s)
    return s.replace("\ue000", "*")


def _tokens(script: Script, *, skip_first_heading: bool) -> list[tuple]:
    """Our script as comparable tokens, notes left out."""
    out: list[tuple] = []
    for ep in script.episodes:
        for sc in ep.scenes:
            out.append(("heading", " ".join(sc.heading.split()), sc.scene_number))
            for el in sc.elements:
                if el.kind == "note":
                    continue
                if el.kind == "dialogue":
                    out.append(("dialogue", el.cue, el.parenthetical, el.text, el.dual))
                elif el.kind == "page_break":
                    out.append(("page_break",))
                elif el.kind == "transition":
                    out.append(("transition", el.text.casefold()))
                else:
                    out.append((el.kind, "\n".join(line.rstrip() for line in el.text.split("\n"))))
        if ep.end_text:  # `> THE END <` closing the script: read, and kept as the episode's end card
            out.append(("centered", ep.end_text))
    if skip_first_heading:
        assert out[0] == ("heading", PLACE, None)
        out = out[1:]
    return out


def _check_lines(script: Script, source: str) -> None:
    """Every element's line holds the start of its text in the original file."""
    src = source.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for ep in script.episodes:
        for sc in ep.scenes:
            if sc.heading:  # an opening scene has none
                assert sc.heading.split()[0].strip(".")[:6] in src[sc.line - 1], (sc.line, sc.heading)
            for el in sc.elements:
                if el.kind == "page_break":
                    continue
                word = _clean_markup(el.text).split()[0][:10]
                assert word in _clean_markup(src[el.line - 1]), (el.line, el.kind, el.text[:40])


# --- screenplain .html -------------------------------------------------------------------------


class _Node:
    def __init__(self, tag: str, attrs: dict[str, str]):
        self.tag, self.attrs, self.children = tag, attrs, []

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def text(self, skip: set[str] = frozenset()) -> str:
        parts = []
        for c in self.children:
            if isinstance(c, str):
                parts.append(c)
            elif c.tag == "br":
                parts.append("\n")
            elif not (c.classes & skip):
                parts.append(c.text(skip))
        return "".join(parts).replace("\xa0", " ")


class _TreeBuilder(html.parser.HTMLParser):
    VOID: ClassVar[set[str]] = {"br", "meta", "link", "img", "hr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = _Node("root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = _Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(_Node(tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        while len(self.stack) > 1:
            if self.stack.pop().tag == tag:
                break

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def _find(node: _Node, pred) -> _Node | None:
    for c in node.children:
        if isinstance(c, _Node):
            if pred(c):
                return c
            hit = _find(c, pred)
            if hit:
                return hit
    return None


def _dialog_tokens(div: _Node, dual: bool) -> list[tuple]:
    ps = [c for c in div.children if isinstance(c, _Node) and c.tag == "p"]
    cue = ps[0].text().strip()
    out, paren, lines = [], None, []
    for p in ps[1:]:
        if "parenthetical" in p.classes:
            if lines:
                out.append(("dialogue", cue, paren, "\n".join(lines), dual))
                lines = []
            paren = p.text().strip()[1:-1].strip()
        else:
            lines.append(p.text().strip())
    if lines:
        out.append(("dialogue", cue, paren, "\n".join(lines), dual))
    return out


def _screenplain_tokens(path: Path) -> list[tuple]:
    """screenplain's HTML rendering as our tokens."""
    tb = _TreeBuilder()
    tb.feed(path.read_text(encoding="utf-8"))
    wrapper = _find(tb.root, lambda n: n.attrs.get("id") == "wrapper") or tb.root
    out: list[tuple] = []
    for node in wrapper.children:
        if not isinstance(node, _Node) or node.tag == "br":
            continue
        if "page-break" in node.classes:
            out.append(("page_break",))
        if node.tag == "h6":
            num = _find(node, lambda n: "scnuml" in n.classes)
            out.append(("heading", " ".join(node.text(skip={"scnuml", "scnumr"}).split()),
                        num.text().strip() if num else None))
        elif node.tag in {"h1", "h2", "h3", "h4", "h5"}:
            out.append(("section", node.text().strip()))
        elif node.tag == "span" and any(c.endswith("-synopsis") for c in node.classes):
            out.append(("synopsis", node.text().strip()))
        elif "transition" in node.classes:
            out.append(("transition", node.text().strip().casefold()))
        elif "action" in node.classes:
            text = "\n".join(line.rstrip() for line in node.text().split("\n"))
            if "centered" in node.classes:
                out.append(("centered", text.strip()))
            elif FADES.match(text.strip()):
                out.append(("transition", text.strip().casefold()))  # a transition for us
            elif re.match(r"^EXT\.?/INT\.? ", text):
                out.append(("heading", " ".join(text.split()), None))  # EXT/INT is a heading for us
            else:
                out.append(("action", text))
        elif "dialog" in node.classes:
            out.extend(_dialog_tokens(node, dual=False))
        elif "dual" in node.classes:
            for side in node.children:
                if isinstance(side, _Node) and side.tag == "div":
                    out.extend(_dialog_tokens(side, dual=True))
        else:
            raise AssertionError(f"unmapped screenplain node {node.tag} {node.classes}")
    return out


SCREENPLAIN_CASES = sorted((CORPUS / "screenplain" / "tests" / "files").glob("*.html")) + sorted(
    (CORPUS / "screenplain" / "examples").glob("*.html"))


@pytest.mark.parametrize("expected", SCREENPLAIN_CASES, ids=lambda p: p.stem)
def test_screenplain_html(expected: Path) -> None:
    source_path = expected.with_suffix(".fountain")
    source = source_path.read_bytes().decode("utf-8-sig")
    want = _screenplain_tokens(expected)
    if expected.stem == "notes":
        # "This is not [[ ... blank line ... ]]": screenplain prints it; we refuse it, at the `[[`.
        with pytest.raises(InputError) as err:
            parse_script(source_path)
        assert err.value.line == 14 and "[[" in err.value.message
        lines = source.split("\n")
        source = "\n".join(lines[:13] + lines[19:])
        want = [t for t in want if "[[" not in t[-1] and "]]" not in t[-1]]
    if expected.stem == "Big-Fish":
        # Big Fish opens with an epigraph and a heading-less river scene: filmed as an opening
        # scene, with a warning that says how to give it a place.
        warnings = parse_script(source_path).warnings
        assert warnings[0].line == 11 and "INT. PLACE - DAY" in warnings[0].message
    # Always file the expected output under one inserted scene: screenplain also renders what
    # comes before a file's first heading (sections, synopses, action) and we must compare it.
    text = _with_place(source, title_page=source.startswith("Title:"))
    script = parse_text(text, str(source_path))
    got = _tokens(script, skip_first_heading=True)
    assert got == want
    _check_lines(script, text)


def test_screenplain_utf8_bom_crlf_equals_plain() -> None:
    files = CORPUS / "screenplain" / "tests" / "files"
    a = parse_script(files / "simple.fountain")
    b = parse_script(files / "utf-8-bom.fountain")
    assert _tokens(a, skip_first_heading=False) == _tokens(b, skip_first_heading=False)
    assert [w.message for w in b.warnings] == []


# --- Jouvence YAML -----------------------------------------------------------------------------


def _jouvence_cases() -> list:
    cases = []
    for path in sorted((CORPUS / "Jouvence" / "tests").glob("*.yaml")):
        for k, doc in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
            if doc:
                cases.append(pytest.param(doc, id=f"{path.stem}-{k}"))
    return cases


def _jouvence_tokens(out: list[str]) -> list[tuple]:
    """Jouvence's typed strings as our tokens."""
    tokens: list[tuple] = []
    cue, paren = None, None
    for item in out:
        kind, text = (item, "") if item == "<pagebreak>" else (item[0], item[1:])
        if kind == "!":
            if text.startswith("><"):
                tokens.append(("centered", _clean_markup(text[2:].strip())))
                continue
            for para in re.split(r"\n\s*\n", text):
                if para.strip():
                    tokens.append(("action", "\n".join(_clean_markup(l.rstrip()) for l in para.strip("\n").split("\n"))))
        elif kind == ".":
            tokens.append(("heading", " ".join(text.split()), None))
        elif kind == "@":
            cue, paren = text.strip(), None
        elif kind == "_":
            paren = _clean_markup(text.strip()[1:-1].strip())
        elif kind == "=":
            tokens.append(("dialogue", cue, paren, "\n".join(_clean_markup(l.strip()) for l in text.split("\n")), False))
            paren = None
        elif kind == ">":
            tokens.append(("transition", _clean_markup(text.strip()).casefold()))
        elif kind == "#":
            tokens.append(("section", text.strip()))
        elif kind == "+":
            tokens.append(("synopsis", text.strip()))
        elif kind == "~":
            tokens.append(("lyrics", text.strip()))
        elif item == "<pagebreak>":
            tokens.append(("page_break",))
        else:
            raise AssertionError(f"unmapped Jouvence token {item!r}")
    return tokens


@pytest.mark.parametrize("case", _jouvence_cases())
def test_jouvence_yaml(case: dict) -> None:
    source = case["in"]
    want = _jouvence_tokens(case.get("out") or [])
    title = case.get("title")
    if not want:
        # Nothing to film: empty input, or only a title page. We refuse it, saying what is missing.
        with pytest.raises(InputError) as err:
            parse_text(source, "case.fountain")
        assert err.value.file == "case.fountain"
        assert re.search(r"empty|title page|no scenes", err.value.message)
    text = _with_place(source, title_page=title is not None)
    script = parse_text(text, "case.fountain")
    assert _tokens(script, skip_first_heading=True) == want
    if title is not None:
        assert script.title_page == {k: _clean_markup(str(v)) for k, v in title.items()}
    _check_lines(script, text)


# --- whole scripts: counts and no errors -------------------------------------------------------

BIG = [
    ("screenplain/examples/Brick-and-Steel.fountain", 8, 22),
    ("Fountain/FountainTests/Brick And Steel.txt", 8, 22),
    ("afterwriting-labs/samples/brick_and_steel.fountain", 8, 22),
    ("betterfountain/src/test/scripts/brick_and_steel_lf.fountain", 8, 22),
    ("betterfountain/src/test/scripts/brick_and_steel_crlf.fountain", 8, 22),
    ("screenplain/examples/The-Last-Birthday-Card.fountain", 48, 138),
    ("afterwriting-labs/samples/my_living_memory.fountain", 9, 123),
    ("afterwriting-labs/samples/printing_trouble.fountain", 29, 62),
]


@pytest.mark.parametrize(("rel", "scenes", "dialogue"), BIG, ids=[b[0].split("/")[-1] for b in BIG])
def test_big_scripts_parse_with_sensible_counts(rel: str, scenes: int, dialogue: int) -> None:
    path = CORPUS / rel
    script = parse_script(path)
    all_scenes = [sc for ep in script.episodes for sc in ep.scenes]
    lines = [el for sc in all_scenes for el in sc.elements if el.kind == "dialogue"]
    assert len(script.episodes) == 1
    assert len(all_scenes) == scenes
    assert len(lines) == dialogue
    assert all(el.character in script.characters for el in lines)
    assert script.title
    _check_lines(script, path.read_bytes().decode("utf-8-sig"))


BIG_FISH = ["screenplain/examples/Big-Fish.fountain", "Fountain/FountainTests/Big Fish.fountain",
            "betterfountain/src/test/scripts/big_fish_lf.fountain",
            "betterfountain/src/test/scripts/big_fish_crlf.fountain"]


@pytest.mark.parametrize("rel", BIG_FISH, ids=lambda r: r.split("/")[0])
def test_big_fish_parses_with_an_opening_scene(rel: str) -> None:
    """Big Fish has action and V.O. dialogue before its first heading: an opening scene, warned."""
    path = CORPUS / rel
    script = parse_script(path)
    w = script.warnings[0]
    assert (w.file, w.line) == (str(path), 11) and "opening scene" in w.message
    scenes = [sc for ep in script.episodes for sc in ep.scenes]
    assert (scenes[0].heading, scenes[0].location, scenes[0].line) == ("", "opening", 11)
    assert any(el.kind == "dialogue" and el.character == "edward" for el in scenes[0].elements)
    dialogue = [el for sc in scenes for el in sc.elements if el.kind == "dialogue"]
    assert len(scenes) == 193  # screenplain: 190 headings + 2 `EXT/INT.` it reads as action; + opening
    assert 780 <= len(dialogue) <= 900
    assert {"edward", "will", "sandra", "josephine"} <= set(script.characters)
    assert script.title == "Big Fish"
    _check_lines(script, path.read_bytes().decode("utf-8"))


def test_the_last_birthday_card_sections_are_kept_inside_scenes() -> None:
    script = parse_script(CORPUS / "screenplain/examples/The-Last-Birthday-Card.fountain")
    kinds = {el.kind for ep in script.episodes for sc in ep.scenes for el in sc.elements}
    assert {"section", "synopsis", "transition", "dialogue", "action"} <= kinds
    assert script.episodes[-1].end_text == "THE END"  # its closing `> THE END <` is the end card


# --- afterwriting kitchen-sink scripts: a note across a blank line -----------------------------


@pytest.mark.parametrize(("name", "line"), [("test.fountain", 59), ("client.fountain", 54)])
def test_afterwriting_note_across_blank_line_is_refused_then_fixed(name: str, line: int) -> None:
    """afterwriting's kitchen-sink scripts: every element kind, nested boneyard, escapes."""
    path = CORPUS / "afterwriting-labs/test/data/screenplays" / name
    with pytest.raises(InputError) as err:
        parse_script(path)
    assert err.value.line == line and "[[" in err.value.message and "two spaces" in err.value.hint
    lines = path.read_bytes().decode("utf-8").replace("\r\n", "\n").split("\n")
    assert lines[line] == ""
    lines[line] = "  "  # the fix the hint gives
    script = parse_text("\n".join(lines), str(path))
    scenes = [sc for ep in script.episodes for sc in ep.scenes]
    assert [sc.heading for sc in scenes][:3] == ["INT. BASIC BLOCKS - DAY", "EXT. BASIC BLOCKS - NIGHT",
                                               "INT. FORMATTING - DAY"]
    els = [el for sc in scenes for el in sc.elements]
    assert any(el.kind == "note" and el.text.startswith("Long long") for el in els)
    assert any(el.kind == "note" and el.text == "(inline note)" for el in els)
    action = next(el.text for el in els if el.text.startswith("Action. Action. Action"))
    assert action == "Action. Action. Action. Action."  # inline note lifted out
    nested = next(el.text for el in els if "/*" in el.text or el.text.startswith("Action. action. action. action. action"))
    assert "ignored" not in nested  # nested boneyard removed
    assert any(el.kind == "lyrics" and el.character == "mccabe" for el in els)
    assert any(el.dual for el in els)
    if name == "test.fountain":
        escaped = next(el.text for el in els if el.text.startswith("What the"))
        assert escaped == "What the f*ck! Escape_escape*escape."


# --- CJK files ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("rel", "name", "words"), [
    ("afterwriting-labs/test/data/screenplays/sc.fountain", "约翰", "这是什么地方？"),
    ("afterwriting-labs/test/data/screenplays/jp.fountain", "ジョン", "この場所は何ですか？"),
])
def test_cjk_fountain_files_warn_and_keep_the_dialogue(rel: str, name: str, words: str) -> None:
    script = parse_script(CORPUS / rel)
    messages = " | ".join(w.message for w in script.warnings)
    assert f"@{name}" in messages  # CJK cue without @: explain
    assert "full-width `：`" in messages  # Title：
    assert "INT。" in messages or "full-width `。`" in messages
    (scene,) = script.episodes[0].scenes
    (line,) = [el for el in scene.elements if el.kind == "dialogue"]
    assert (line.character, line.text) == (name, words)
    assert line.parenthetical
    assert not any(el.kind == "action" and words in el.text for el in scene.elements)


def test_chinese_localised_fountain_sample() -> None:
    path = CORPUS / "afterwriting-Simplified-Chinese/samples/propaganda_writer.fountain"
    opening = parse_script(path)  # its synopsis pages come before any scene: an opening scene
    (w,) = [w for w in opening.warnings if "before any scene heading" in w.message]
    assert w.line == 9
    assert opening.episodes[0].scenes[0].location == "opening"
    lines = path.read_text(encoding="utf-8").split("\n")
    body = next(k for k, l in enumerate(lines) if l.startswith("# 第一幕"))
    text = "\n".join(lines[:8] + [""] * (body - 8) + lines[body:])
    script = parse_text(text, str(path))
    scenes = script.episodes[0].scenes
    assert script.title == "宣传作家"
    assert len(scenes) == 6
    # 连续 (continuous) takes the time of day of the scene before it; the heading keeps the word
    assert scenes[1].interior == "INT" and scenes[1].location == "地下室" and "连续" in scenes[1].heading
    assert scenes[1].time == scenes[0].time == "黎明"
    dialogue = [el for sc in scenes for el in sc.elements if el.kind == "dialogue"]
    assert len(dialogue) == 30
    assert {"陈大富", "王小明", "李记者"} <= set(script.characters)
    assert all(el.character == "陈大富" for el in dialogue if el.cue.startswith("陈大富"))  # 陈大富(续) too
    assert any(el.dual for el in dialogue)
    messages = " | ".join(w.message for w in script.warnings)
    assert "@陈大富" in messages and "@王小明" in messages
    _check_lines(script, text)


def test_cyrillic_heading_gets_a_fix_hint() -> None:
    path = CORPUS / "afterwriting-labs/test/data/screenplays/cyrillic.fountain"
    with pytest.raises(InputError) as err:
        parse_script(path)
    assert err.value.line == 4 and "start it with `.`" in err.value.hint


# --- episode folders ---------------------------------------------------------------------------

SERIES = CORPUS / "scriptrag/tests/fixtures/fountain/series"


def test_series_folder_numbered_by_title_page_and_file_name(tmp_path: Path) -> None:
    for name in ("S01E01_pilot.fountain", "S01E02_continuation.fountain", "mystery_show_2x03.fountain"):
        shutil.copy(SERIES / name, tmp_path / name)
    script = parse_script(tmp_path)
    assert [ep.number for ep in script.episodes] == [1, 2, 3]
    assert [ep.scenes[0].location for ep in script.episodes] == ["DETECTIVE OFFICE", "CRIME SCENE", "CITY STREETS"]
    assert script.title == "Mystery Show"


def test_whole_series_folder_is_refused_for_duplicate_episodes() -> None:
    with pytest.raises(InputError) as err:
        parse_script(SERIES)
    assert "appears twice" in err.value.message and err.value.hint


def test_not_a_script_is_refused() -> None:
    with pytest.raises(InputError) as err:
        parse_script(CORPUS / "scriptrag/tests/fixtures/fountain/not_a_script.txt")
    assert err.value.line == 1 and err.value.hint
