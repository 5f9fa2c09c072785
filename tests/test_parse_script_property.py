"""Property tests: on any text the parser either returns a consistent Script whose line numbers
point at the source, or raises InputError naming a line in the file; it never crashes or hangs.

Seeds are real scripts: the shared Fountain corpus when present, else our fixtures.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stages.core.errors import InputError
from stages.parse_script import parse_text
from stages.schema import Script

FIXTURES = Path(__file__).parent / "fixtures" / "scripts"
CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "fountain"
FILE = "prop.fountain"

SEEDS = sorted(p for p in FIXTURES.iterdir() if p.suffix in {".fountain", ".txt"})
if CORPUS.is_dir():
    SEEDS += sorted(p for p in CORPUS.rglob("*") if p.suffix in {".fountain", ".txt"}
                    and not p.name.startswith("LICENSE"))

# Bits of syntax that change how everything after them is read.
TOKENS = ["/*", "*/", "[[", "]]", "@", "#", "# Episode 2", "# Episode 1: Pilot", "=", "===", ">", "<", "!",
          ".", "~", "^", "(", ")", "（", "）", "*", "**", "_", "\\*", "  ", "\t", "INT. ", "EXT. HOUSE - DAY",
          "CUT TO:", "林美", "@林美", "林美：", "：", "。", "第1集", "第二集 重逢", "1-1 日 内 客厅", "2-1 夜 外 街",
          "△", "【字幕：三年后】", "人物：甲、乙", "MARY", "МАРY", "😂", "\r", "\r\n", "\ufeff", "Title: X", "#1#"]


@functools.cache
def _seed_text(path: Path) -> str:
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    if "Big" in path.name and "Fish" in path.name or "big_fish" in path.name:
        # Big Fish opens without a scene heading; give it one so mutations exercise the whole script.
        lines = text.split("\n")
        text = "\n".join(lines[:10] + ["EXT. A RIVER - DAY", ""] + lines[10:])
    return text


def _markup_free(s: str) -> str:
    return re.sub(r"[*_\\\s\ufeff]", "", s)  # the parser drops stray byte-order marks


def _source_variants(line: str) -> list[str]:
    """What of a source line can show up in element text: notes and boneyard may be cut out."""
    cut = re.sub(r"\[\[.*?(\]\]|$)", "", line)
    cut = re.sub(r"^.*?\]\]", "", cut)
    cut2 = re.sub(r"/\*.*?(\*/|$)", "", cut)
    cut2 = re.sub(r"^.*?\*/", "", cut2)
    return [_markup_free(v) for v in (line, cut, cut2)]


def _assert_consistent(script: Script, text: str) -> None:
    src = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    assert script.episodes, "a Script always has an episode"
    assert [ep.number for ep in script.episodes] == list(range(1, len(script.episodes) + 1))
    for ep in script.episodes:
        assert ep.scenes
        assert [sc.number for sc in ep.scenes] == list(range(1, len(ep.scenes) + 1))
        for sc in ep.scenes:
            assert 1 <= sc.line <= len(src)
            word = _markup_free(sc.heading.split()[0])[:10] if sc.heading.split() else ""
            assert any(word in v for v in _source_variants(src[sc.line - 1])), (sc.line, sc.heading)
            for el in sc.elements:
                assert el.file == FILE
                assert 1 <= el.line <= len(src), (el.kind, el.line)
                if el.kind == "page_break":
                    continue
                assert el.text.strip(), (el.kind, el.line)
                word = _markup_free(el.text.split()[0])[:10]
                assert any(word in v for v in _source_variants(src[el.line - 1])), (
                    el.kind, el.line, el.text[:60], src[el.line - 1][:80])
                if el.kind == "dialogue":
                    assert el.character in script.characters
    for w in script.warnings:
        assert 1 <= w.line <= len(src) + 1 and w.message


def _check(text: str) -> None:
    n_lines = text.replace("\r\n", "\n").replace("\r", "\n").count("\n") + 1
    try:
        script = parse_text(text, FILE)
    except InputError as e:
        assert e.file == FILE
        assert e.line is None or 1 <= e.line <= n_lines, (e.line, n_lines, e.message)
        assert e.message and e.hint
        return
    _assert_consistent(script, text)


@st.composite
def mutated_scripts(draw) -> str:
    lines = _seed_text(draw(st.sampled_from(SEEDS))).split("\n")
    for _ in range(draw(st.integers(0, 8))):
        if not lines:
            lines = [""]
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "insert_token", "insert_line", "blank"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "insert_token":
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + draw(st.sampled_from(TOKENS)) + lines[i][at:]
        elif op == "insert_line":
            lines.insert(i, draw(st.sampled_from(TOKENS) | st.text(max_size=20)))
        else:
            lines.insert(i, "")
    return "\n".join(lines)


script_lines = st.lists(st.sampled_from(TOKENS + ["", "", "", "Action.", "JOHN", "Hello.", "(beat)"])
                        | st.text(max_size=25), max_size=40).map("\n".join)

def fast(max_examples: int) -> settings:
    """A deadline per example catches a parser that loops; the counts keep the module ~10 s."""
    return settings(max_examples=max_examples, deadline=2000,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@fast(400)
@given(mutated_scripts())
def test_mutated_real_scripts(text: str) -> None:
    _check(text)


@fast(300)
@given(script_lines)
def test_random_script_like_text(text: str) -> None:
    _check(text)


@fast(300)
@given(st.text(max_size=600))
def test_random_text(text: str) -> None:
    _check(text)


@fast(60)
@given(st.sampled_from(SEEDS), st.sampled_from(["\r\n", "\r"]), st.booleans())
def test_line_endings_and_bom_never_change_the_result(path: Path, newline: str, bom: bool) -> None:
    text = _seed_text(path).replace("\r\n", "\n").replace("\r", "\n")
    try:
        plain = parse_text(text, FILE).model_dump()
    except InputError as e:
        plain = ("error", e.line, e.message)
    other_text = ("\ufeff" if bom else "") + text.replace("\n", newline)
    try:
        other = parse_text(other_text, FILE).model_dump()
    except InputError as e:
        other = ("error", e.line, e.message)
    assert other == plain


def test_seeds_are_real_scripts() -> None:
    """The property tests above only mean something if most seeds parse."""
    ok = 0
    for path in SEEDS:
        try:
            parse_text(_seed_text(path), FILE)
            ok += 1
        except InputError:
            pass
    assert len(SEEDS) >= 3 and ok >= len(SEEDS) // 2
