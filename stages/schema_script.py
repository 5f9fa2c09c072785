"""The script as parsed: episodes, scenes and their elements (`stages.schema` re-exports them)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stages.core.model import Model

# --- the script --------------------------------------------------------------------------------

ElementKind = Literal[
    "action",
    "dialogue",
    "transition",
    "centered",  # Fountain >text< and 【字幕：…】: on-screen text, never spoken
    "lyrics",
    "note",  # [[...]]: shot hints, never spoken
    "reaction",  # a cue with only a parenthetical (`林晓：（怔住）`): a wordless reaction shot
    "section",
    "synopsis",
    "page_break",
]


class Element(Model):
    kind: ElementKind
    text: str = Field(..., description="clean text: emphasis stripped, notes removed for dialogue")
    file: str
    line: int = Field(..., ge=1)
    character: str | None = Field(None, description="character id (dialogue only)")
    cue: str | None = Field(None, description="the cue as written, e.g. 'MARY (V.O.)'")
    extension: str | None = Field(None, description="V.O., O.S., CONT'D, 续 ...")
    parenthetical: str | None = None
    dual: bool = False


class Scene(Model):
    number: int = Field(..., ge=1, description="position within the episode, from 1")
    heading: str
    location: str
    time: str = ""
    interior: Literal["INT", "EXT", "INT/EXT", ""] = ""
    scene_number: str | None = Field(None, description="a forced scene number like #12#")
    file: str
    line: int
    elements: list[Element] = Field(default_factory=list)


class Episode(Model):
    number: int = Field(..., ge=1)
    title: str = ""
    file: str
    line: int
    scenes: list[Scene] = Field(default_factory=list)
    end_text: str | None = Field(None, description="the script's own closing words (TO BE CONTINUED, 未完待续): "
                                                   "the episode's end card, instead of the automatic one")

    @property
    def id(self) -> str:
        return f"ep{self.number:02d}"


class Warning_(Model):
    file: str
    line: int
    message: str


class Script(Model):
    title: str = ""
    title_page: dict[str, str] = Field(default_factory=dict)
    episodes: list[Episode] = Field(default_factory=list)
    characters: dict[str, str] = Field(default_factory=dict, description="character id -> display name")
    front_matter: list[Element] = Field(default_factory=list, description="text before the first scene that "
                                        "is never filmed (a synopsis, a cast list with each character's bio)")
    warnings: list[Warning_] = Field(default_factory=list)

    def episode(self, number: int) -> Episode:
        for ep in self.episodes:
            if ep.number == number:
                return ep
        raise KeyError(number)
