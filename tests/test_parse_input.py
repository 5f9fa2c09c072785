"""Unit tests of stages.parse_script on each bad input (file, line and a fix in the message), on
byte-order marks, line endings and encodings, and on folders of episode files."""

from __future__ import annotations

import codecs
import io
import zipfile
from pathlib import Path

import pytest

from parse_helpers import HEAD, elements, only, parse, refused
from stages.core.errors import InputError
from stages.parse_script import parse_script
from stages.schema import Script


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "line", "what"), [
    ("", 1, "empty"),
    ("   \n\t\n  \n", 1, "empty"),
    ("Title: Only a title\nAuthor: Me\n", 1, "only a title page"),
    ("# Act One\n\n= Just notes.\n", 1, "no scenes"),
    ("/* everything\nis cut */\n", 1, "no scenes"),
])
def test_nothing_to_film_is_refused(text: str, line: int, what: str) -> None:
    err = refused(text)
    assert err.line == line and what in err.message and err.hint


@pytest.mark.parametrize(("text", "line", "what"), [
    ("Title: X\n\nJOHN\nHello.\n\nINT. ROOM - DAY\n\nA.\n", 4, "dialogue before any scene heading"),
    ("She runs.\n\nINT. ROOM - DAY\n\nA.\n", 1, "action before any scene heading"),
    ("> TITLE CARD <\n\nINT. ROOM - DAY\n\nA.\n", 1, "on-screen text before any scene heading"),
])
def test_content_before_first_scene_becomes_an_opening_scene(text: str, line: int, what: str) -> None:
    s = parse(text)
    opening, room = s.episodes[0].scenes
    assert (opening.heading, opening.location, opening.line) == ("", "opening", line)
    assert room.heading == "INT. ROOM - DAY"
    (w,) = s.warnings
    assert w.line == line and what in w.message and "INT. PLACE - DAY" in w.message


@pytest.mark.parametrize(("text", "line", "what"), [
    ("She runs.\n\nHe stops.\n", 1, "action before any scene heading"),
    ("Title: X\n\nJOHN\nHello.\n\nMARY\nHi.\n", 4, "dialogue before any scene heading"),
])
def test_text_without_any_scene_heading_is_refused(text: str, line: int, what: str) -> None:
    err = refused(text)  # not one heading: prose, not a screenplay
    assert err.line == line and what in err.message and "a shot needs a place" in err.message
    assert "INT. PLACE - DAY" in err.hint and err.text


def test_unclosed_boneyard_names_its_opening_line() -> None:
    err = refused(f"{HEAD}Kept.\n\n/* cut from here\n\nMARY\nGone?\n")
    assert err.line == 5 and "/*" in err.message and "*/" in err.hint and err.text == "/* cut from here"


@pytest.mark.parametrize(("text", "line"), [
    (f"{HEAD}Kept [[a note that never ends\n\nMARY\nGone?\n", 3),
    (f"{HEAD}MARY\nHello [[oops\n", 4),
])
def test_unclosed_note_names_its_opening_line(text: str, line: int) -> None:
    err = refused(text)
    assert err.line == line and "[[" in err.message and "]]" in err.hint


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _docx_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w:document/>")
    return buf.getvalue()


@pytest.mark.parametrize(("data", "what"), [
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "PDF"),
    (_docx_bytes(), "Word document (.docx"),
    (b'<?xml version="1.0" encoding="UTF-8"?>\n<FinalDraft DocumentType="Script">', "Final Draft"),
    (b"{\\rtf1\\ansi hello}", "RTF"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64, ".doc"),
    (b"INT. ROOM - DAY\n\nA\x00B\x00\x01\x02", "binary"),
    (b"<!DOCTYPE html><html><body>x</body></html>", "HTML"),
])
def test_not_a_text_script_says_what_it_is_and_how_to_fix(tmp_path: Path, data: bytes, what: str) -> None:
    path = _write(tmp_path, "script.fountain", data)
    with pytest.raises(InputError) as err:
        parse_script(path)
    assert err.value.file == str(path)
    assert what in err.value.message
    assert "Fountain" in err.value.hint and "plain text" in err.value.hint.lower()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        parse_script(tmp_path / "nope.fountain")
    assert "not found" in err.value.message


# --- bytes and line endings --------------------------------------------------------------------

SAMPLE = ("Title: Sample\n\nINT. ROOM - DAY\n\nMARY\n(quietly)\nHello, 世界.\n\n/* cut\n*/\nShe leaves. [[wide]]\n")


def _dump(script: Script) -> dict:
    return script.model_dump()


@pytest.mark.parametrize("variant", ["bom", "crlf", "cr", "bom+crlf"])
def test_bom_and_line_endings_give_the_same_script(tmp_path: Path, variant: str) -> None:
    plain = parse_script(_write(tmp_path, "s.fountain", SAMPLE.encode()))
    text = SAMPLE.replace("\n", {"bom": "\n", "crlf": "\r\n", "cr": "\r", "bom+crlf": "\r\n"}[variant])
    data = (codecs.BOM_UTF8 if "bom" in variant else b"") + text.encode()
    other = parse_script(_write(tmp_path, "s.fountain", data))
    assert _dump(other) == _dump(plain)
    assert elements(plain)[-1].line == 11


@pytest.mark.parametrize(("codec", "name"), [("gb18030", "GB18030"), ("gbk", "GB18030"), ("big5", "Big5"),
                                             ("utf-16", "UTF-16"), ("utf-16-be", None)])
def test_other_encodings_are_converted_with_a_notice(tmp_path: Path, codec: str, name: str | None) -> None:
    text = "第1集 开始\n1-1 日 内 客厅\n△林美走进来。\n林美：我们的时间不多了，你快说吧。\n"
    if codec == "big5":  # Big5 is traditional Chinese
        text = "第1集 開始\n1-1 日 內 客廳\n△林美走進來。\n林美：我們的時間不多了，你快說吧。\n"
    data = text.encode(codec)
    if codec == "utf-16-be":
        data = codecs.BOM_UTF16_BE + data
        name = "UTF-16"
    path = _write(tmp_path, "s.txt", data)
    s = parse_script(path)
    assert only(s, "dialogue")[0].text == text.split("：")[-1].strip()
    (w,) = [w for w in s.warnings if "encoded" in w.message]
    assert name in w.message and "UTF-8" in w.message and w.file == str(path)


def test_utf16_without_bom_is_refused_naming_utf16(tmp_path: Path) -> None:
    path = _write(tmp_path, "s.fountain", "INT. ROOM - DAY\n\nHello.\n".encode("utf-16-le"))
    with pytest.raises(InputError) as err:
        parse_script(path)
    assert "UTF-16" in err.value.message and "UTF-8" in err.value.hint


def test_latin1_text_is_refused_with_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "s.fountain", "INT. CAFÉ - DAY\n\nA café.\n".encode("latin-1"))
    with pytest.raises(InputError) as err:
        parse_script(path)
    assert err.value.line == 1 and "not UTF-8" in err.value.message and "UTF-8" in err.value.hint


def test_utf8_is_never_reported_as_converted(tmp_path: Path) -> None:
    s = parse_script(_write(tmp_path, "s.fountain", SAMPLE.encode()))
    assert s.warnings == []


# --- episode folders ---------------------------------------------------------------------------


def _episode(title: str, extra: str = "") -> str:
    return f"Title: Show\n{extra}\nINT. {title} - DAY\n\nAction in {title}.\n"


def test_folder_natural_sort_and_numbers_from_file_names(tmp_path: Path) -> None:
    for n in range(1, 11):
        (tmp_path / f"ep{n}.fountain").write_text(_episode(f"PLACE {n}"))
    (tmp_path / "notes.md").write_text("ignored")
    s = parse_script(tmp_path)
    assert [ep.number for ep in s.episodes] == list(range(1, 11))
    assert [ep.scenes[0].location for ep in s.episodes][:3] == ["PLACE 1", "PLACE 2", "PLACE 3"]
    assert s.episodes[9].file == str(tmp_path / "ep10.fountain")


def test_folder_title_page_episode_key_wins_over_file_name(tmp_path: Path) -> None:
    (tmp_path / "a.fountain").write_text(_episode("SECOND", "Episode: 2\n"))
    (tmp_path / "b.txt").write_text(_episode("FIRST", "Episode: 1\n"))
    s = parse_script(tmp_path)
    assert [(ep.number, ep.scenes[0].location) for ep in s.episodes] == [(1, "FIRST"), (2, "SECOND")]


def test_folder_duplicate_and_missing_episodes_are_refused(tmp_path: Path) -> None:
    (tmp_path / "ep1.fountain").write_text(_episode("A"))
    (tmp_path / "ep3.fountain").write_text(_episode("C"))
    with pytest.raises(InputError) as err:
        parse_script(tmp_path)
    assert "episode 2 is missing" in err.value.message and err.value.file == str(tmp_path / "ep3.fountain")
    (tmp_path / "episode_3.fountain").write_text(_episode("C2"))
    with pytest.raises(InputError) as err:
        parse_script(tmp_path)
    assert "episode 3 appears twice" in err.value.message


def test_folder_file_with_two_episodes_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ep1.fountain").write_text("# Episode 1\n\n" + HEAD + "A.\n\n# Episode 2\n\n" + HEAD + "B.\n")
    with pytest.raises(InputError) as err:
        parse_script(tmp_path)
    assert err.value.line == 7 and "one file per episode" in err.value.hint


def test_folder_of_chinese_layout_episodes(tmp_path: Path) -> None:
    (tmp_path / "第2集.txt").write_text("第2集 交锋\n2-1 日 外 公司楼下\n△林美下车。\n林美：好久不见。\n")
    (tmp_path / "第1集.txt").write_text("《逆袭》\n第1集 归来\n1-1 日 内 机场\n△林美走出闸口。\n")
    s = parse_script(tmp_path)
    assert [(ep.number, ep.title) for ep in s.episodes] == [(1, "归来"), (2, "交锋")]
    assert s.title == "逆袭"


def test_empty_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        parse_script(tmp_path)
    assert "no episode files" in err.value.message


def test_folder_near_duplicate_names_across_episodes(tmp_path: Path) -> None:
    (tmp_path / "ep1.fountain").write_text(HEAD + "JOSEPHINE\nHi.\n")
    (tmp_path / "ep2.fountain").write_text(HEAD + "JOSEPHNE\nHi.\n")
    s = parse_script(tmp_path)
    (w,) = s.warnings
    assert w.file == str(tmp_path / "ep2.fountain") and "JOSEPHINE" in w.message
