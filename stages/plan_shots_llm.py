"""Script episode -> ShotList through an LLM (any OpenAI-compatible `/v1/chat/completions`).

The model sees the episode as numbered items (L1 = a dialogue line, A1 = action, N1 = a note) and
answers with structured JSON that refers to lines by id, so it can never alter, invent or drop
spoken words unnoticed. Its answer is validated (every line once and in order, known characters,
sizes, durations within the backend's limit); violations go back to it for a bounded number of
repair rounds. Plans are cached by a hash of everything sent, so re-planning costs nothing until
the script, cast, templates or model change.
"""

from __future__ import annotations

import json
import os
import typing
from pathlib import Path

from stages.core.artifacts import spec_hash, write_text_atomic
from stages.core.errors import RenderError
from stages.core.paths import BuildPaths
from stages.core.prompts import render_template, template_source
from stages.core.text import estimate_speech_s, frames_ceil
from stages.schema import CameraMove, Episode, Project, Shot, ShotLine, ShotList, ShotSize
from stages.presence import presence, spellings
from stages.shot_prompts import shot_prompt

SIZES = list(typing.get_args(ShotSize))
CAMERAS = list(typing.get_args(CameraMove))

RESPONSE_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["shots"],
    "properties": {"shots": {"type": "array", "items": {
        "type": "object", "additionalProperties": False,
        "required": ["scene", "size", "camera", "characters", "action", "lines", "duration_s"],
        "properties": {
            "scene": {"type": "integer"}, "size": {"type": "string", "enum": SIZES},
            "camera": {"type": "string", "enum": CAMERAS},
            "characters": {"type": "array", "items": {"type": "string"}},
            "action": {"type": "string"}, "lines": {"type": "array", "items": {"type": "string"}},
            "duration_s": {"type": "number"}}}}},
}


class PlanningError(RenderError):
    """The planner could not produce a valid shot list (after its repair rounds)."""


def _items(episode: Episode, project: Project, names: dict[str, str] | None) -> tuple[list[dict], dict[str, tuple]]:
    """Scenes as numbered items for the prompt, each with who is on screen then, and line id ->
    (scene number, Element, who may be in its shot)."""
    scenes, lines, counters = [], {}, {"L": 0, "A": 0, "N": 0}
    spelled = spellings(names or {}, project.cast)
    for sc in episode.scenes:
        seen = presence(sc, spelled)
        items = []
        for el, here in zip(sc.elements, seen.during):
            prefix = {"dialogue": "L", "action": "A", "centered": "A", "reaction": "A", "note": "N"}.get(el.kind)
            if prefix is None:
                continue
            counters[prefix] += 1
            item_id = f"{prefix}{counters[prefix]}"
            said = el.kind in ("dialogue", "reaction")
            items.append({"id": item_id, "kind": {"L": "line", "A": "action", "N": "note"}[prefix]
                          if el.kind != "reaction" else "reaction",
                          "character": el.character if said else None,
                          "parenthetical": el.parenthetical if prefix == "L" else None, "text": el.text,
                          "on_screen": list(here), "heard": prefix == "L" and el.character not in here})
            if prefix == "L":
                lines[item_id] = (sc.number, el, here)
        scenes.append({"number": sc.number, "heading": sc.heading or "(opening)", "location": sc.location,
                       "time": sc.time, "items": items, "anyone": list(seen.anywhere())})
    return scenes, lines


def messages(episode: Episode, project: Project, project_dir: Path | None, cast: list[dict],
             names: dict[str, str] | None = None) -> list[dict]:
    scenes, _ = _items(episode, project, names)
    system = render_template("plan_shots.system.j2", project_dir, keep_lines=True, sizes=SIZES, cameras=CAMERAS,
                             max_shot_s=project.planner.max_shot_s)
    user = render_template("plan_shots.user.j2", project_dir, keep_lines=True, style=project.style.prompt, cast=cast,
                           episode=episode.number, title=episode.title, scenes=scenes,
                           target_s=project.target_episode_s)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def validate(answer: dict, episode: Episode, project: Project, cast_ids: set[str],
             names: dict[str, str] | None = None) -> list[str]:
    """Everything wrong with a parsed answer, as sentences the model can act on."""
    scenes, lines = _items(episode, project, names)
    anyone = {sc["number"]: set(sc["anyone"]) for sc in scenes}
    errors: list[str] = []
    shots = answer.get("shots")
    if not isinstance(shots, list) or not shots:
        return ["`shots` must be a non-empty array"]
    scene_numbers = {sc.number for sc in episode.scenes}
    seen: list[str] = []
    last_scene = 0
    for n, shot in enumerate(shots, 1):
        where = f"shot {n}"
        sc = shot.get("scene")
        if sc not in scene_numbers:
            errors.append(f"{where}: scene {sc} does not exist (scenes: {sorted(scene_numbers)})")
        elif sc < last_scene:
            errors.append(f"{where}: scene {sc} comes after scene {last_scene}; keep scenes in order")
        else:
            last_scene = sc
        if shot.get("size") not in SIZES:
            errors.append(f"{where}: size {shot.get('size')!r} is not one of {SIZES}")
        if shot.get("camera") not in CAMERAS:
            errors.append(f"{where}: camera {shot.get('camera')!r} is not one of {CAMERAS}")
        for c in shot.get("characters") or []:
            if c not in cast_ids:
                errors.append(f"{where}: character {c!r} is not in the cast ({sorted(cast_ids)})")
        here: set[str] = set()
        for lid in shot.get("lines") or []:
            if lid not in lines:
                errors.append(f"{where}: {lid!r} is not a dialogue line id")
                continue
            if lines[lid][0] != sc:
                errors.append(f"{where}: line {lid} belongs to scene {lines[lid][0]}, not scene {sc}")
            seen.append(lid)
            here |= set(lines[lid][2])
        if not shot.get("lines"):
            here = anyone.get(sc, set())
        absent = [c for c in shot.get("characters") or [] if c in cast_ids and c not in here]
        if absent and sc in anyone:
            errors.append(f"{where}: {', '.join(absent)} not on screen then (a voice heard off screen, or not yet "
                          f"entered, or gone); show only who is on screen: {sorted(here) or 'nobody'}")
        said = [lines[lid][1] for lid in shot.get("lines") or [] if lid in lines]
        spoken = project.timing.lead_in_s + sum(estimate_speech_s(el.text) for el in said) + project.timing.lead_out_s
        if len(said) > 1 and spoken > project.planner.max_shot_s:
            errors.append(f"{where}: its {len(said)} lines take about {spoken:.1f} s, longer than the "
                          f"{project.planner.max_shot_s} s a shot can be; split them over more shots")
        dur = shot.get("duration_s")
        if not shot.get("lines") and not (isinstance(dur, (int, float)) and 1 <= dur <= project.planner.max_shot_s):
            errors.append(f"{where}: a shot without dialogue needs duration_s between 1 and "
                          f"{project.planner.max_shot_s}, not {dur!r}")
    order = list(lines)
    missing = [lid for lid in order if lid not in seen]
    if missing:
        errors.append(f"dialogue line(s) {', '.join(missing)} are in no shot; every line must be in exactly one")
    dupes = sorted({lid for lid in seen if seen.count(lid) > 1}, key=order.index)
    if dupes:
        errors.append(f"dialogue line(s) {', '.join(dupes)} are in more than one shot")
    if not missing and not dupes and seen != order:
        errors.append("dialogue lines are out of script order; keep L1, L2, ... in order")
    return errors


def to_shotlist(answer: dict, episode: Episode, project: Project, project_dir: Path | None,
                names: dict[str, str]) -> ShotList:
    """The validated answer as a ShotList with the same stable ids as the rule planner's."""
    _, lines = _items(episode, project, names)
    t, fps = project.timing, project.fps
    scenes = {sc.number: sc for sc in episode.scenes}
    shots: list[Shot] = []
    per_scene: dict[int, int] = {}
    for raw in answer["shots"]:
        sc = scenes[raw["scene"]]
        per_scene[sc.number] = per_scene.get(sc.number, 0) + 1
        said = [lines[lid][1] for lid in raw["lines"]]
        shot_lines = [ShotLine(character=el.character or "unknown", text=el.text, parenthetical=el.parenthetical,
                               extension=el.extension, file=el.file, line=el.line) for el in said]
        if said:
            dur = t.lead_in_s + sum(estimate_speech_s(el.text) for el in said) + t.lead_out_s
        else:
            dur = float(raw["duration_s"])
        anchor = said[0] if said else sc
        shots.append(Shot(id=f"ep{episode.number:02d}-sc{sc.number:02d}-sh{per_scene[sc.number]:03d}",
                          episode=episode.number, scene=sc.number, size=raw["size"], camera=raw["camera"],
                          location=sc.location, time=sc.time, characters=list(dict.fromkeys(raw["characters"])),
                          action=raw["action"], lines=shot_lines, duration_s=frames_ceil(dur, fps),
                          file=anchor.file, line=anchor.line))
    shots = [s.model_copy(update={"prompt": shot_prompt(s, project, project_dir, names)}) for s in shots]
    return ShotList(episode=episode.number, title=episode.title, shots=shots)


class NotPlanned(Exception):
    """`cached_only` planning of an episode the LLM has not planned yet (asking would be a paid call)."""


def plan_shots_llm(episode: Episode, project: Project, *, project_dir: Path | None, names: dict[str, str],
                   paths: BuildPaths | None = None, client=None, cached_only: bool = False) -> ShotList:
    """Plan with the LLM (or reuse the cached answer for exactly this request); `cached_only` raises
    NotPlanned instead of asking."""
    cast = [{"id": c.id, "description": c.description} for c in project.cast]
    cast_ids = {c.id for c in project.cast} | set(names)
    for cid in names:
        if cid not in {c["id"] for c in cast}:
            cast.append({"id": cid, "description": names[cid]})
    msgs = messages(episode, project, project_dir, cast, names)
    cfg = project.planner
    key = spec_hash("llm-plan", {"messages": msgs, "model": cfg.model, "base_url": cfg.base_url,
                                 "schema": RESPONSE_SCHEMA,
                                 "templates": [template_source(n, project_dir) for n in
                                               ("plan_shots.system.j2", "plan_shots.user.j2")]})
    cached = paths.plan(key) if paths is not None else None
    if cached is not None and cached.exists():
        answer = json.loads(cached.read_text(encoding="utf-8"))
        if not validate(answer, episode, project, cast_ids, names):
            return to_shotlist(answer, episode, project, project_dir, names)
    if cached_only:
        raise NotPlanned(f"episode {episode.number} has no LLM plan yet")
    answer = _ask(msgs, episode, project, cast_ids, client, names)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(cached, json.dumps(answer, ensure_ascii=False, indent=1))
    return to_shotlist(answer, episode, project, project_dir, names)


def _client(project: Project):
    import openai

    cfg = project.planner
    key = os.environ.get(cfg.api_key_env)
    if not key and cfg.base_url is None:
        raise PlanningError(f"the LLM planner needs an API key in ${cfg.api_key_env}",
                            hint=f"export {cfg.api_key_env}=..., or set planner.base_url to a local "
                                 "OpenAI-compatible server, or use `planner: {kind: rules}`")
    # The client retries 429 and 5xx itself, honouring Retry-After, a bounded number of times.
    return openai.OpenAI(api_key=key or "not-needed", base_url=cfg.base_url, timeout=cfg.timeout_s, max_retries=3)


def _ask(msgs: list[dict], episode: Episode, project: Project, cast_ids: set[str], client,
         names: dict[str, str]) -> dict:
    from stages.backends._openai import ask_json

    cfg = project.planner
    return ask_json(client or _client(project), model=cfg.model, messages=msgs, schema=RESPONSE_SCHEMA,
                    name="shot_list", validate=lambda a: validate(a, episode, project, cast_ids, names),
                    max_repairs=cfg.max_repairs, error=PlanningError, what=f"the LLM planner (episode {episode.number})",
                    fix="try another model, raise planner.max_repairs, or use `planner: {kind: rules}`")
