"""Lint a project without rendering: parse and schema errors, and warnings a writer can act on."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from stages.errors import InputError
from stages.plan_shots import estimate_speech_s
from stages.schema import Warning_

MAX_LINE_S = 12.0  # longer than this is hard to hold in one vertical shot
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
LATIN = re.compile(r"[A-Za-z]{2,}")


@dataclass
class CheckReport:
    episodes: int = 0
    scenes: int = 0
    lines: int = 0
    characters: list[dict] = field(default_factory=list)
    warnings: list[Warning_] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"episodes": self.episodes, "scenes": self.scenes, "characters": self.characters,
                "lines": self.lines, "warnings": [w.model_dump() for w in self.warnings], "errors": self.errors}


def check_project(root: Path) -> CheckReport:
    """Everything `render` would refuse (errors) or regret (warnings), found in about a second."""
    from stages.load_project import load_project
    from stages.scaffold_project import DESCRIBE

    report = CheckReport()
    try:
        lp = load_project(root)
    except InputError as exc:
        report.errors.append(exc.to_dict())
        return report
    project, script = lp.project, lp.script
    report.warnings.extend(script.warnings)
    report.episodes = len(script.episodes)
    report.scenes = sum(len(ep.scenes) for ep in script.episodes)
    yaml_file = str(lp.root / "project.yaml")
    spoken: dict[str, int] = {}
    from stages.backends.espeak import available_languages

    languages = set(available_languages())
    for c in project.cast:
        if c.description.startswith(DESCRIBE):
            report.warnings.append(Warning_(file=yaml_file, line=1, message=(
                f"cast {c.id}: the description is still a placeholder; describe their look "
                "(it is used verbatim in every prompt that shows them)")))
        if c.voice.language.lower() not in languages:
            report.warnings.append(Warning_(file=yaml_file, line=1, message=(
                f"cast {c.id}: eSpeak NG has no language {c.voice.language!r} (try en-us, en-gb, cmn, yue)")))
    for ep in script.episodes:
        for sc in ep.scenes:
            for el in sc.elements:
                if el.kind != "dialogue":
                    continue
                report.lines += 1
                spoken[el.character or ""] = spoken.get(el.character or "", 0) + 1
                est = estimate_speech_s(el.text)
                if est > MAX_LINE_S:
                    report.warnings.append(Warning_(file=el.file, line=el.line, message=(
                        f"line is about {est:.0f}s long: too long for one vertical shot; split it")))
                voice = project.voice_for(el.character or "")
                if CJK.search(el.text) and not voice.language.lower().startswith(("cmn", "yue", "zh", "ja", "ko", "hak")):
                    report.warnings.append(Warning_(file=el.file, line=el.line, message=(
                        f"{voice.language} voice cannot speak the CJK text in this line; "
                        "set the character's voice language (e.g. cmn)")))
    for cid, name in script.characters.items():
        in_cast = any(c.id == cid for c in project.cast)
        report.characters.append({"id": cid, "name": name, "lines": spoken.get(cid, 0), "in_cast": in_cast})
    return report
