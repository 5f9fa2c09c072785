"""A new project folder: project.yaml with the cast read from a script (looks and voices), an original
music bed, folders, a README stub."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from stages.cast_characters import DESCRIBE, Casting, cast_characters, cast_with_llm
from stages.core.artifacts import write_text_atomic
from stages.core.errors import InputError

SAMPLE_SCRIPT = """Title: Untitled
Author: you

# Episode 1: Pilot

INT. KITCHEN - NIGHT

A kettle screams. ALEX (30s, a woman in a grey hoodie) stares at a letter.

ALEX
It says we have one week.

SAM (O.S.)
Then we use it.
"""
MUSIC = "music/bed.ogg"


@dataclass
class Scaffold:
    """What `new` made and read: the folder and each character's casting (`check` says the rest)."""

    folder: Path
    cast: list[Casting]


@dataclass(frozen=True)
class LLMCasting:
    """`new --llm MODEL`: cast with a model, and plan with it too (`planner: {kind: llm}`)."""

    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"


def scaffold_project(folder: Path, from_script: Path | None = None, *, llm: LLMCasting | None = None) -> Scaffold:
    """Create `folder` as a new project; refuses to touch an existing project.yaml, and writes nothing
    until the script is read and cast."""
    from stages.compose_music import compose_music
    from stages.parse_script import parse_script

    if (folder / "project.yaml").exists():
        raise InputError(f"{folder} already has a project.yaml", hint="choose a new folder, or edit the existing one")
    if from_script is not None and not from_script.is_file():
        raise InputError(f"no script at {from_script}", hint="pass the path of a .fountain or .txt script")
    if from_script is not None:
        script = parse_script(from_script)
        script_name = "script" + (from_script.suffix or ".fountain")
        script_text = from_script.read_bytes()
    else:
        script_name = "script.fountain"
        script_text = SAMPLE_SCRIPT.encode("utf-8")
        from stages.parse_script import parse_text

        script = parse_text(SAMPLE_SCRIPT, str(folder / script_name))
    chinese = _is_chinese(script)
    cast = cast_characters(script, chinese=chinese)
    if llm is not None:
        cast = cast_with_llm(script, cast, chinese=chinese, model=llm.model, base_url=llm.base_url,
                             api_key_env=llm.api_key_env)
    members, used = [], set()
    for i, c in enumerate(cast):
        members.append({"id": _ascii_id(c.name, i, used), "name": c.name,
                        "description": c.description or f"{DESCRIBE} age, face, hair, build and clothing of {c.name}",
                        "voice": c.voice})
    title = script.title or folder.name
    data = {"title": title, "language": "zh" if chinese else "en",
            "style": "cinematic, vertical framing", "script": script_name,
            "width": 1080, "height": 1920, "fps": 30, "seed": 0, "cast": members,
            "audio": {"music": {"file": MUSIC}},
            "backends": {"video": "animatic", "speech": "espeak"}}
    if llm is not None:
        data["planner"] = {"kind": "llm", "model": llm.model, "base_url": llm.base_url,
                           "api_key_env": llm.api_key_env}
    folder.mkdir(parents=True, exist_ok=True)
    for sub in ("references", "music"):
        (folder / sub).mkdir(exist_ok=True)
    (folder / script_name).write_bytes(script_text)
    compose_music(folder / MUSIC, seed=zlib.crc32(title.encode("utf-8")))
    header = ("# dramaforge project. `dramaforge check .` lints it; `dramaforge schema` writes a JSON Schema\n"
              "# for editor completion. Each description and voice was read from the script (`dramaforge new`\n"
              "# printed what it read); a DESCRIBE ME is one it could not read: fill it in, it is used verbatim\n"
              "# in every prompt. music/bed.ogg is an original bed made for this project.\n")
    write_text_atomic(folder / "project.yaml",
                      header + yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=110,
                                               default_flow_style=None))
    write_text_atomic(folder / "README.md", f"# {title}\n\nA dramaforge project.\n\n"
                      "- `dramaforge check .` — lint the script and project.yaml\n"
                      "- `dramaforge plan .` — see the shot list\n"
                      "- `dramaforge render .` — render to build/episodes/\n\n"
                      "Put character reference images in `references/` and music in `music/`.\n")
    return Scaffold(folder, cast)


def _is_chinese(script) -> bool:
    text = "".join(el.text for ep in script.episodes for sc in ep.scenes for el in sc.elements)
    cjk = len(re.findall(r"[\u4e00-\u9fff]", text))
    return cjk > 0.3 * max(1, len(re.sub(r"\s", "", text)))


def _ascii_id(name: str, i: int, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if not base or not base[0].isalpha():
        base = f"role{i + 1:02d}"
    cid, n = base, 2
    while cid in used:
        cid, n = f"{base}_{n}", n + 1
    used.add(cid)
    return cid
