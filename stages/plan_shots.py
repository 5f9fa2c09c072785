"""Script episode -> ShotList, by rules (offline, deterministic).

An establishing shot opens each scene; action beats become wide or medium shots; each
dialogue line gets one shot on its speaker, with sizes varied across an exchange (single,
over-the-shoulder, close-up) so no run of shots looks the same; the episode ends on a push-in.
Durations are estimates here; `time_shots` replaces them with measured speech.
"""

from __future__ import annotations

import re
from pathlib import Path

from stages.core.paths import BuildPaths
from stages.core.text import estimate_speech_s, frames_ceil
from stages.plan_shots_llm import plan_shots_llm
from stages.parse_script.chinese import listed_names
from stages.presence import Presence, presence, spellings
from stages.schema import Element, Episode, Project, Scene, Shot, ShotLine, ShotList
from stages.shot_prompts import shot_prompt

# A note that asks for a picture (`[[close-up on the pendant]]`) becomes an insert shot.
INSERT_NOTE = re.compile(r"^\s*(extreme close[- ]?up|close[- ]?up|insert|detail|ecu|cu|pov|特写|近景|插入)\b",
                         re.IGNORECASE)
# Notes that cue sound: `[[music: cues/tense.mp3]]` scores its scene, `[[sfx: door.wav]]` plays with the next shot.
MUSIC_NOTE = re.compile(r"^\s*(?:music|score|音乐|音樂|配乐|配樂)\s*[:：]\s*(?P<file>\S.*?)\s*$", re.IGNORECASE)
SFX_NOTE = re.compile(r"^\s*(?:sfx|sound|音效)\s*[:：]\s*(?P<file>\S.*?)\s*$", re.IGNORECASE)
REACTION_S, INSERT_S = 1.4, 1.8


def plan_shots(episode: Episode, project: Project, *, project_dir: Path | None = None,
               characters: dict[str, str] | None = None, cached_only: bool = False) -> ShotList:
    """Plan an episode's shots with the project's planner, then fold in the user's edits on disk.

    `cached_only`: an LLM planner answers from its cache or raises `plan_shots_llm.NotPlanned`.
    """
    names = characters or {}
    if project.planner.kind == "llm":
        plan = plan_shots_llm(episode, project, project_dir=project_dir, names=names,
                              paths=BuildPaths.of(project_dir) if project_dir is not None else None,
                              cached_only=cached_only)
    else:
        plan = _plan_rules(episode, project, project_dir, names)
    plan = attach_cues(plan, episode)
    if project_dir is None:
        return plan
    from stages.write_shotlist import apply_edits

    path = BuildPaths.of(project_dir).shotlist(episode.id)
    return apply_edits(plan, path, lambda s: shot_prompt(s, project, project_dir, names),
                       known={*names, *(c.id for c in project.cast)})


def attach_cues(plan: ShotList, episode: Episode) -> ShotList:
    """Put each scene's on-screen text, music and sound effects on the shots they belong to.

    Works on any planner's output. A sound effect plays with the shot that films the next action
    or line after its note (the scene's last shot if none follows); a card shows over the shot
    planned from it, else the shot its line falls in.
    """
    shots = [s.model_copy() for s in plan.shots]
    for scene in episode.scenes:
        own = [s for s in shots if s.scene == scene.number]
        if not own:
            continue
        for i, el in enumerate(scene.elements):
            if el.kind == "note" and (m := MUSIC_NOTE.match(el.text)):
                for s in own:
                    s.music = m.group("file")
            elif el.kind == "note" and (m := SFX_NOTE.match(el.text)):
                nxt = next((e for e in scene.elements[i + 1:]
                            if e.kind in ("action", "dialogue", "centered", "reaction")), None)
                (_shot_at(own, nxt.line) if nxt else own[-1]).sfx.append(m.group("file"))
            elif el.kind == "centered":
                shot = _shot_at(own, el.line)
                shot.card = f"{shot.card}\n{el.text}" if shot.card else el.text
        # a transition written at a scene's end leads into the next scene's first shot
        into = next((s for s in shots if s.scene == scene.number + 1), None)
        kind = next((transition_kind(e.text) for e in reversed(scene.elements) if e.kind == "transition"), None)
        if into is not None and kind:
            into.transition = kind
    return plan.model_copy(update={"shots": shots})


def transition_kind(text: str) -> str | None:
    """DISSOLVE TO: -> dissolve; FADE OUT. / FADE TO BLACK. / 淡出 -> dip; CUT TO: -> cut."""
    t = text.upper()
    if "DISSOLVE" in t or "叠化" in t or "溶" in t:
        return "dissolve"
    if ("FADE" in t and "FADE IN" not in t) or "BLACK" in t or "淡出" in t or "黑场" in t:
        return "dip"
    return "cut" if "CUT" in t or "切" in t else None


def _shot_at(shots: list[Shot], line: int) -> Shot:
    """The shot planned from script line `line`, else the last one that starts before it."""
    exact = [s for s in shots if s.line == line]
    before = [s for s in shots if s.line < line]
    return exact[-1] if exact else before[-1] if before else shots[0]


def _plan_rules(episode: Episode, project: Project, project_dir: Path | None, names: dict[str, str]) -> ShotList:
    shots: list[Shot] = []
    last_location = None
    spelled = spellings(names, project.cast)
    for scene in episode.scenes:
        shots.extend(_plan_scene(episode, scene, project, presence(scene, spelled),
                                 new_location=scene.location != last_location))
        last_location = scene.location
    if shots:
        last = shots[-1]
        shots[-1] = last.model_copy(update={"camera": "push-in",
                                            "duration_s": frames_ceil(last.duration_s + 0.5, project.fps)})
    shots = [s.model_copy(update={"prompt": shot_prompt(s, project, project_dir, names)}) for s in shots]
    return ShotList(episode=episode.number, title=episode.title, shots=shots)


def _plan_scene(episode: Episode, scene: Scene, project: Project, seen: Presence, *, new_location: bool) -> list[Shot]:
    """The scene's shots; who is in each comes from `seen` (entrances, exits, voices heard off screen)."""
    t = project.timing
    fps = project.fps
    out: list[Shot] = []
    pending: list[int] = []  # action beats not filmed yet, by element index

    def add(**kw) -> None:
        n = len(out) + 1
        out.append(Shot(id=f"ep{episode.number:02d}-sc{scene.number:02d}-sh{n:03d}", episode=episode.number,
                        scene=scene.number, location=scene.location, time=scene.time, **kw))

    elements = list(scene.elements)
    # 1. establishing shot, carrying the scene's opening action as its description; an action that
    #    brings someone on or takes them off gets a shot of its own
    opening, i = "", 0
    while i < len(elements) and len(opening) < 160 and (
            elements[i].kind == "action" and not _moves(seen, i)
            or elements[i].kind == "note" and listed_names(elements[i].text) is not None):  # 人物：… says who
        opening = (opening + " " + elements[i].text).strip() if elements[i].kind == "action" else opening
        i += 1
    first = _ordered(seen.before[0], scene) if elements else ()
    add(size="establishing" if new_location else "wide", camera="pan-right" if scene.number % 2 else "pan-left",
        characters=list(first[:3]), action=opening,
        duration_s=frames_ceil(max(t.establishing_s, _action_s(opening, t.action_s)), fps),
        file=scene.file, line=scene.line)
    previous_speaker = None
    for k in range(i, len(elements)):
        el = elements[k]
        if el.kind == "action":
            if pending and (_moves(seen, k) or _moves(seen, pending[-1])):  # an entrance or exit: its own shot
                _add_action(add, [elements[j] for j in pending], _anyone(seen, pending, scene), t.action_s, fps, out)
                pending = []
            pending.append(k)
            continue
        if pending:
            _add_action(add, [elements[j] for j in pending], _anyone(seen, pending, scene), t.action_s, fps, out)
            pending = []
        here = _ordered(seen.during[k], scene)
        if el.kind == "dialogue":
            speaker = el.character or "unknown"
            others = [c for c in here if c != speaker]
            est = estimate_speech_s(el.text)
            line = [ShotLine(character=speaker, text=el.text, parenthetical=el.parenthetical,
                             extension=el.extension, file=el.file, line=el.line)]
            duration = frames_ceil(t.lead_in_s + est + t.lead_out_s, fps)
            if speaker not in here:  # heard, not seen (V.O., a phone, off screen): the listeners hear it
                add(size="two-shot" if len(others) > 1 else "medium" if others else "wide", camera="static",
                    characters=others[:2], lines=line, duration_s=duration, file=el.file, line=el.line)
                continue
            n_said = sum(1 for s in out if s.lines)
            size, camera = _dialogue_coverage(n_said, el, others, previous_speaker)
            chars = [speaker] + (others[:1] if size in ("over-shoulder", "two-shot") else [])
            add(size=size, camera=camera, characters=chars, lines=line, duration_s=duration,
                file=el.file, line=el.line)
            previous_speaker = speaker
            # A question or an outburst lands on the listener: a short reaction close-up (unless the
            # script writes the reaction itself next).
            scripted = next((e.kind == "reaction" for e in elements[k + 1:] if e.kind != "note"), False)
            if others and el.text.rstrip().endswith(("?", "!", "？", "！")) and len(out) > 1 \
                    and out[-2].size != "close-up" and not scripted:
                add(size="close-up", camera="static", characters=[others[0]], action="",
                    duration_s=frames_ceil(REACTION_S, fps), file=el.file, line=el.line)
        elif el.kind == "reaction":  # 林晓：（怔住）: a close-up of the face, no words
            add(size="close-up", camera="push-in", characters=[el.character], action=el.text,
                duration_s=frames_ceil(max(REACTION_S, _action_s(el.text, REACTION_S) * 0.8), fps),
                file=el.file, line=el.line)
        elif el.kind == "note" and INSERT_NOTE.match(el.text):
            add(size="insert", camera="push-in", characters=[], action=el.text,
                duration_s=frames_ceil(INSERT_S, fps), file=el.file, line=el.line)
        elif el.kind == "centered":  # an on-screen text card: the words are burned in, the picture is the place
            add(size="wide", camera="static", action="",
                duration_s=frames_ceil(_action_s(el.text, t.action_s), fps), file=el.file, line=el.line)
    if pending:
        _add_action(add, [elements[j] for j in pending], _anyone(seen, pending, scene), t.action_s, fps, out)
    return out


def _moves(seen: Presence, k: int) -> bool:
    """Someone enters or leaves during element k."""
    return seen.during[k] != seen.before[k] or (k + 1 < len(seen.before) and seen.before[k + 1] != seen.during[k])


def _anyone(seen: Presence, indices: list[int], scene: Scene) -> list[str]:
    """Everyone on screen at some moment of these elements (those entering and leaving included)."""
    return _ordered(dict.fromkeys(c for k in indices for c in seen.during[k]), scene)


def _ordered(characters, scene: Scene) -> list[str]:
    """Those who speak in the scene first, in the order they first speak; then the others as they come."""
    speaking = list(dict.fromkeys(el.character for el in scene.elements if el.kind == "dialogue" and el.character))
    chars = list(characters)
    return sorted(chars, key=lambda c: (speaking.index(c), 0) if c in speaking else (len(speaking), chars.index(c)))


def _add_action(add, beats: list[Element], present: list[str], action_s: float, fps: int, out: list[Shot]) -> None:
    text = " ".join(b.text for b in beats)
    prev_size = out[-1].size if out else None
    size = "medium" if prev_size in ("wide", "establishing") else "wide"
    add(size=size, camera="static" if size == "medium" else "pull-out", characters=present[:3], action=text,
        duration_s=frames_ceil(_action_s(text, action_s), fps), file=beats[0].file, line=beats[0].line)


def _dialogue_coverage(n_said: int, el: Element, others: list[str], previous_speaker: str | None):
    """Vary size across an exchange: medium single, then OTS and close-up alternating."""
    paren = (el.parenthetical or "").lower()
    if any(w in paren for w in ("whisper", "quiet", "tear", "低声", "哭")):
        return "close-up", "push-in"
    if n_said == 0:
        return ("two-shot" if others else "medium"), "static"
    if not others:
        return ("close-up" if n_said % 2 else "medium"), ("push-in" if n_said % 3 == 2 else "static")
    if el.character != previous_speaker:
        return ("over-shoulder" if n_said % 2 else "close-up"), "static"
    return "medium", "push-in"


def _action_s(text: str, base: float) -> float:
    return min(base + estimate_speech_s(text) * 0.4, 8.0) if text else base
