"""Step 4 of reading a script: episodes and scenes from the element stream, and the `Script`.

`_assemble` refuses what cannot be filmed; `_build_script` joins one or more files' episodes with
the cast check; the rest numbers the episode files of a script folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from stages.core.errors import InputError
from stages.core.text import cn_number
from stages.parse_script.cast import _check_cast
from stages.parse_script.model import _CN_NUM, CONTINUITY, _Doc, _EpisodeMark, _Heading, end_words
from stages.schema import Episode, Scene, Script, Warning_

OPENING_PLACE = "opening"  # the place of a scene written before any heading
FIX_SCENE = "add a scene heading such as `INT. PLACE - DAY` (or `1-1 日 内 客厅`) above it"


# --- step 4: episodes and scenes ---------------------------------------------------------------

_SPOKEN_OR_SHOWN = {"action": "action", "dialogue": "dialogue", "centered": "on-screen text",
                    "lyrics": "lyrics", "reaction": "a reaction"}


def _assemble(doc: _Doc, *, first_episode: int | None = 1) -> list[Episode]:
    """Turn the stream into episodes of scenes; refuse what cannot be filmed.

    `first_episode=None` lets the first episode heading carry any number: in a folder, each file
    is one episode and the folder checks the numbering across files.
    """
    episodes: list[Episode] = []
    marks = [it for it in doc.items if isinstance(it, _EpisodeMark)]
    if not marks:
        episodes.append(Episode(number=1, title=doc.title, file=doc.file, line=1))
    seen: dict[int, _EpisodeMark] = {}
    scene: Scene | None = None
    scene_numbers: dict[str, int] = {}
    dropped = False
    headless: InputError | None = None  # the first text filmed without a heading
    for item in doc.items:
        if isinstance(item, _EpisodeMark):
            expected = len(episodes) + 1
            if not episodes and first_episode is None:
                expected = item.number
            elif episodes:
                expected = episodes[-1].number + 1
            if item.number in seen:
                raise InputError(
                    f"episode {item.number} appears twice (first at {doc.file}:{seen[item.number].no})",
                    file=doc.file, line=item.no, text=item.text,
                    hint=f"number the episodes 1, 2, 3 ... in order; this one should be episode {expected}")
            if item.number != expected:
                after = f"follows episode {expected - 1}" if expected > 1 else "is the first episode"
                raise InputError(
                    f"episode {item.number} {after}: episodes must be numbered 1, 2, 3 ... in order, "
                    "without gaps", file=doc.file, line=item.no, text=item.text,
                    hint=f"renumber it as episode {expected}, or move it after episode {item.number - 1}")
            seen[item.number] = item
            episodes.append(Episode(number=item.number, title=item.title, file=doc.file, line=item.no))
            scene = None
            scene_numbers = {}
        elif isinstance(item, _Heading):
            if not episodes:
                raise InputError("scene heading before the first episode heading", file=doc.file,
                                 line=item.no, text=item.text,
                                 hint=f"put `{marks[0].text}` (or `# Episode 1`) above this scene")
            ep = episodes[-1]
            scene = Scene(number=len(ep.scenes) + 1, heading=item.text, location=item.location,
                          time=item.time, interior=item.interior, scene_number=item.scene_number,
                          file=doc.file, line=item.no)
            ep.scenes.append(scene)
            if item.scene_number is not None:
                if item.scene_number in scene_numbers:
                    doc.warn(item.no, f"scene number #{item.scene_number}# is used twice in episode "
                                      f"{ep.number} (first at line {scene_numbers[item.scene_number]}); "
                                      "scenes are still numbered by position")
                else:
                    scene_numbers[item.scene_number] = item.no
        elif scene is not None:
            scene.elements.append(item)
        elif item.kind in _SPOKEN_OR_SHOWN and episodes:
            # Real scripts open on an epigraph or a voice over black before any heading (Big Fish
            # does). Film it as an opening scene without a set place rather than refuse the script.
            ep = episodes[-1]
            what = _SPOKEN_OR_SHOWN[item.kind]
            hint = FIX_SCENE
            if item.kind == "action" and "\n" not in item.text and item.text == item.text.upper() \
                    and re.search(r"\s[-–—]\s", item.text):
                hint = "this looks like a scene heading: start it with `.` to force it, e.g. `." \
                       f"{item.text.strip()[:40]}`"
            where = f" of episode {ep.number}" if marks else ""
            if headless is None:
                headless = InputError(f"{what} before any scene heading{where}: a shot needs a place",
                                      file=doc.file, line=item.line, text=item.text.split("\n")[0],
                                      hint=hint)
            doc.warn(item.line, f"{what} before any scene heading{where}: filmed as an opening scene "
                                f"with no set place; to give it one, {hint}")
            scene = Scene(number=len(ep.scenes) + 1, heading="", location=OPENING_PLACE, time="",
                          file=doc.file, line=item.line)
            ep.scenes.append(scene)
            scene.elements.append(item)
        elif item.kind in _SPOKEN_OR_SHOWN:
            if not dropped:
                doc.warn(item.line, f"{_SPOKEN_OR_SHOWN[item.kind]} before the first episode heading "
                                    f"`{marks[0].text}` is not filmed (a synopsis or cast list belongs "
                                    "there); move it under an episode to film it")
            dropped = True
            doc.front.append(item)
        else:
            # Sections, synopses, notes, transitions and page breaks before the first scene are never
            # spoken or shown; casting reads them (a cast list says who everyone is).
            doc.front.append(item)
    if not any(sc.heading for ep in episodes for sc in ep.scenes):
        # Not one heading: this is prose, not a screenplay (or its headings are not recognised).
        if headless is not None:
            raise headless
        raise InputError("no scenes: the script has no scene headings", file=doc.file,
                         line=doc.body_start, hint=FIX_SCENE.replace(" above it", ""))
    for ep in episodes:
        if not ep.scenes:
            raise InputError(f"episode {ep.number} has no scenes", file=doc.file, line=ep.line,
                             hint="write its scenes under the episode heading, or remove the heading")
        ep.end_text = _take_end_text(ep)
    return episodes


_NOT_SHOWN = ("note", "page_break", "section", "synopsis", "transition")


def _take_end_text(ep: Episode) -> str | None:
    """The episode's closing words as the script writes them (`> TO BE CONTINUED <`, 【字幕：未完待续】,
    （完）), taken out of the last scene: they become the end card, so the ending is said once."""
    elements = ep.scenes[-1].elements
    for i in range(len(elements) - 1, -1, -1):
        el = elements[i]
        if el.kind in ("centered", "action", "transition") and (words := end_words(el.text)):
            if el.kind != "transition" or not any(e.kind == "transition" for e in elements[i + 1:]):
                del elements[i]
                return words
        if el.kind not in _NOT_SHOWN:
            return None
    return None


def _build_script(docs: list[_Doc], episodes_per_doc: list[list[Episode]],
                  aliases: Mapping[str, str]) -> Script:
    first = docs[0]
    episodes = [ep for eps in episodes_per_doc for ep in eps]
    characters, cast_warnings = _check_cast([c for d in docs for c in d.cues], aliases)
    warnings = [w for d in docs for w in d.warnings] + cast_warnings
    title = next((d.title for d in docs if d.title), "")
    _inherit_times(episodes)
    return Script(title=title, title_page=dict(first.title_page), episodes=episodes,
                  characters=characters, front_matter=[el for d in docs for el in d.front],
                  warnings=_dedupe(warnings))


def _inherit_times(episodes: list[Episode]) -> None:
    """CONTINUOUS, LATER, MOMENTS LATER, 同上 take the time of day of the scene before, across episodes
    too (an episode that opens CONTINUOUS goes on from the last one's night); the heading keeps the words."""
    before = ""
    for ep in episodes:
        for sc in ep.scenes:
            if CONTINUITY.match(sc.time.strip()):
                sc.time = before
            before = sc.time or before


def _dedupe(warnings: Iterable[Warning_]) -> list[Warning_]:
    seen: set[tuple[str, int, str]] = set()
    out = []
    for w in warnings:
        key = (w.file, w.line, w.message)
        if key not in seen:
            seen.add(key)
            out.append(w)
    return out


# --- a folder of episode files -----------------------------------------------------------------

_NAME_PATTERNS = (
    re.compile(r"[Ss]\d+[ ._-]?[Ee](\d+)"),
    re.compile(r"\d+[xX](\d+)"),
    re.compile(r"(?i)ep(?:isode)?[\s._-]*(\d+)"),
    re.compile(rf"第\s*([{_CN_NUM}]+)\s*集"),
)


def _natural_key(name: str) -> list[int | str]:
    return [int(t) if t.isdigit() else t.casefold() for t in re.split(r"(\d+)", name)]


def _number_from_name(stem: str) -> int | None:
    for rx in _NAME_PATTERNS:
        m = rx.search(stem)
        if m:
            return cn_number(m.group(1))
    nums = re.findall(r"\d+", stem)
    return int(nums[-1]) if nums else None


def _episode_number(doc: _Doc, episode: Episode, path: Path) -> int:
    """The title page's `Episode:`, else the file's `# Episode N` heading, else the file name's number."""
    key = doc.title_page.get("episode") or doc.title_page.get("集数")
    if key:
        m = re.search(rf"[{_CN_NUM}]+", key)
        if m and cn_number(m.group(0)) >= 1:
            return cn_number(m.group(0))
        raise InputError(f"the title page's `Episode: {key}` has no episode number", file=str(path), line=1,
                         hint="write `Episode: 2`")
    if any(isinstance(it, _EpisodeMark) for it in doc.items):
        return episode.number
    number = _number_from_name(path.stem)
    if number is None or number < 1:
        raise InputError("cannot tell which episode this file is", file=str(path), line=1,
                         hint="add `Episode: N` to its title page, or put the number in the file name (ep02.fountain)")
    return number
