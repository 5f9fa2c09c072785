"""Helpers shared by the parse_script tests (test_parse_fountain, test_parse_chinese, test_parse_input)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stages.core.errors import InputError
from stages.parse_script import parse_text
from stages.schema import Element, Script

FIXTURES = Path(__file__).parent / "fixtures" / "scripts"
HEAD = "INT. ROOM - DAY\n\n"


def parse(text: str, **kw) -> Script:
    return parse_text(text, "t.fountain", **kw)


def elements(script: Script) -> list[Element]:
    return [el for ep in script.episodes for sc in ep.scenes for el in sc.elements]


def only(script: Script, kind: str) -> list[Element]:
    return [el for el in elements(script) if el.kind == kind]


def messages(script: Script) -> str:
    return "\n".join(w.message for w in script.warnings)


def refused(text: str, **kw) -> InputError:
    with pytest.raises(InputError) as err:
        parse(text, **kw)
    assert err.value.file == "t.fountain"
    return err.value
