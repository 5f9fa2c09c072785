"""A new project folder: project.yaml with the cast inferred from a script, folders, a README stub."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from stages.core.artifacts import write_text_atomic
from stages.core.errors import InputError

DESCRIBE = "DESCRIBE ME:"  # `check` warns while a description still starts with this

# Distinct default voices, handed out in cast order so no two characters sound alike.
_VOICES_EN = [("en-us", "f2", 62, 165), ("en-gb", "m3", 32, 150), ("en-us", "m1", 70, 180),
              ("en-gb", "f4", 55, 160), ("en-us", "m7", 45, 160), ("en-us", "f5", 75, 170)]
_VOICES_ZH = [("cmn", "f2", 62, 165), ("cmn", "m3", 32, 150), ("cmn", "m1", 70, 175),
              ("cmn", "f4", 50, 160), ("cmn", "m7", 45, 160), ("cmn", "f5", 75, 170)]

SAMPLE_SCRIPT = """Title: Untitled
Author: you

# Episode 1: Pilot

INT. KITCHEN - NIGHT

A kettle screams. ALEX stares at a letter.

ALEX
It says we have one week.

SAM (O.S.)
Then we use it.
"""


def scaffold_project(folder: Path, from_script: Path | None = None) -> Path:
    """Create `folder` as a new project; refuses to touch an existing project.yaml."""
    from stages.parse_script import parse_script

    if (folder / "project.yaml").exists():
        raise InputError(f"{folder} already has a project.yaml", hint="choose a new folder, or edit the existing one")
    if from_script is not None and not from_script.is_file():
        raise InputError(f"no script at {from_script}", hint="pass the path of a .fountain or .txt script")
    # Parse before writing anything, so a bad script leaves no half-made project behind.
    if from_script is not None:
        script = parse_script(from_script)
        script_name = "script" + (from_script.suffix or ".fountain")
        script_text = from_script.read_bytes()
    else:
        script_name = "script.fountain"
        script_text = SAMPLE_SCRIPT.encode("utf-8")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / script_name).write_bytes(script_text)
        script = parse_script(folder / script_name)
    chinese = _is_chinese(script)
    voices = _VOICES_ZH if chinese else _VOICES_EN
    cast, used = [], set()
    for i, (cid, name) in enumerate(script.characters.items()):
        lang, variant, pitch, wpm = voices[i % len(voices)]
        cast.append({"id": _ascii_id(name, i, used), "name": name,
                     "description": f"{DESCRIBE} age, face, hair, build and clothing of {name}",
                     "voice": {"language": lang, "variant": variant, "pitch": pitch, "speed_wpm": wpm}})
    data = {"title": script.title or folder.name, "language": "zh" if chinese else "en",
            "style": "cinematic, vertical framing", "script": script_name,
            "width": 1080, "height": 1920, "fps": 30, "seed": 0, "cast": cast,
            "backends": {"video": "animatic", "speech": "espeak"}}
    folder.mkdir(parents=True, exist_ok=True)
    for sub in ("references", "music"):
        (folder / sub).mkdir(exist_ok=True)
    if from_script is not None:
        (folder / script_name).write_bytes(script_text)
    header = ("# dramaforge project. `dramaforge check .` lints it; `dramaforge schema` writes a JSON Schema\n"
              "# for editor completion. Fill in every DESCRIBE ME: it is used verbatim in every prompt.\n")
    write_text_atomic(folder / "project.yaml",
                      header + yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=110))
    write_text_atomic(folder / "README.md", f"# {data['title']}\n\nA dramaforge project.\n\n"
                      "- `dramaforge check .` — lint the script and project.yaml\n"
                      "- `dramaforge plan .` — see the shot list\n"
                      "- `dramaforge render .` — render to build/episodes/\n\n"
                      "Put character reference images in `references/` and music in `music/`.\n")
    return folder


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

