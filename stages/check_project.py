"""Lint a project without rendering: parse and schema errors, and warnings a writer can act on."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from stages.core.errors import InputError
from stages.core.text import CJK, estimate_speech_s
from stages.plan_shots import MUSIC_NOTE, SFX_NOTE
from stages.schema import Warning_

MAX_LINE_S = 12.0  # longer than this is hard to hold in one vertical shot
LATIN = re.compile(r"[A-Za-z]{2,}")


@dataclass
class CheckReport:
    episodes: int = 0
    scenes: int = 0
    lines: int = 0
    characters: list[dict] = field(default_factory=list)
    warnings: list[Warning_] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    # the references each shot carries to the video backend (`route_references`): backend, limit, shots
    references: dict = field(default_factory=dict)
    # which shots' lips are synced, and why the others' lines are not (`sync_lips.lipsync_plan`)
    lipsync: dict = field(default_factory=dict)
    takes: int = 1  # clips made of each shot (the project's, for its video backend; a shot list may differ)

    def to_dict(self) -> dict:
        return {"episodes": self.episodes, "scenes": self.scenes, "characters": self.characters,
                "lines": self.lines, "takes": self.takes, "references": self.references, "lipsync": self.lipsync,
                "warnings": [w.model_dump() for w in self.warnings], "errors": self.errors}


def check_project(root: Path) -> CheckReport:
    """Everything `render` would refuse (errors) or regret (warnings), found in about a second."""
    from stages.core.fonts import missing_glyphs

    from stages.cast_characters import DESCRIBE, voice_gender
    from stages.core.people import read_gender
    from stages.load_project import load_project

    report = CheckReport()
    try:
        lp = load_project(root)
    except InputError as exc:
        report.errors.extend(e.to_dict() for e in (exc, *exc.more))
        return report
    project, script = lp.project, lp.script
    report.warnings.extend(script.warnings)
    report.episodes = len(script.episodes)
    report.scenes = sum(len(ep.scenes) for ep in script.episodes)
    yaml_file = str(lp.root / "project.yaml")
    spoken: dict[str, int] = {}
    for c in project.cast:
        if c.description.startswith(DESCRIBE):
            report.warnings.append(Warning_(file=yaml_file, line=lp.cast_line(c.id, "description"), message=(
                f"cast {c.id}: the description is still a placeholder; describe their look "
                "(it is used verbatim in every prompt that shows them)")))
        engine = c.voice.backend or project.backends.speech
        if engine == "openai" and project.backends.openai.base_url is None \
                and not os.environ.get(project.backends.openai.api_key_env):
            report.warnings.append(Warning_(file=yaml_file, line=lp.cast_line(c.id, "voice"), message=(
                f"cast {c.id}: the openai speech backend needs ${project.backends.openai.api_key_env} "
                "(or backends.openai.base_url for a local server)")))
        said, _ = read_gender([c.description], name=c.name)
        sounds = voice_gender(c.voice.model_copy(update={"backend": engine}))
        if said and sounds and said != sounds:
            fix = {"female": "f2", "male": "m3"}[said]
            report.warnings.append(Warning_(file=yaml_file, line=lp.cast_line(c.id, "voice"), message=(
                f"cast {c.id}: the description says a {'woman' if said == 'female' else 'man'}, but the voice "
                f"({engine} {c.voice.variant or c.voice.voice or 'default'}) is a "
                f"{'woman' if sounds == 'female' else 'man'}'s; "
                + (f"set voice.variant to {fix} (or another {said} voice)" if engine == "espeak"
                   else "choose another voice"))))
    from stages.project_reach import endpoints

    for e in endpoints(project):  # a key sent somewhere the provider is not: the user should know
        report.warnings.append(Warning_(file=yaml_file, line=lp.line_of(*e.setting.split(".")), message=str(e)))
    report.errors.extend(e.to_dict() for e in blockers(lp, keys=False))
    shown = {e["message"] for e in report.errors}
    for e in blockers(lp, keys=True):  # an API key: a render refuses without it; checking needs none
        if e.message not in shown:
            report.warnings.append(Warning_(file=yaml_file, line=1, message=f"{e.message}: {e.hint}"))
    sub = project.subtitles
    if sub.margin_bottom_px < 192:  # 10% of 1920: where the platforms put caption, music and progress bar
        report.warnings.append(Warning_(file=yaml_file, line=1, message=(
            f"subtitles.margin_bottom_px {sub.margin_bottom_px} puts subtitles under the platform's caption "
            "and controls; keep it at least 192 (10% of the height; sizes are for a 1080x1920 frame)")))
    elif sub.margin_bottom_px + 3 * sub.size_px * 1.3 > 960:
        report.warnings.append(Warning_(file=yaml_file, line=1, message=(
            f"subtitles.margin_bottom_px {sub.margin_bottom_px} lifts three-line subtitles above the middle "
            "of the frame, over faces; 15-25% of the height is usual")))
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
                if lacking := missing_glyphs(el.text, project.subtitles.font):
                    report.warnings.append(Warning_(file=el.file, line=el.line, message=(
                        f"the subtitle font ({project.subtitles.font}) has no glyph for "
                        f"{', '.join(f'{c} (U+{ord(c):04X})' for c in lacking[:5])}: each shows as an empty box "
                        "in the burned-in subtitles; write it another way or drop it")))
                voice = project.voice_for(el.character or "")
                espeak = (voice.backend or project.backends.speech) == "espeak"
                if espeak and CJK.search(el.text) and not voice.language.lower().startswith(("cmn", "yue", "zh", "ja", "ko", "hak")):
                    report.warnings.append(Warning_(file=el.file, line=el.line, message=(
                        f"{voice.language} voice cannot speak the CJK text in this line; "
                        "set the character's voice language (e.g. cmn)")))
    if not report.errors:
        from stages.backends.registry import backends_for
        from stages.route_references import planned_shots, reference_warnings, shot_references
        from stages.sync_lips import lipsync_plan

        backends = backends_for(project, lp.root)
        report.lipsync = lipsync_plan(lp, list(planned_shots(lp)))
        video, limit, rows = shot_references(lp, backends)
        if rows:
            report.references = {"backend": video, "limit": limit,
                                 "shots": [{"shot": r.shot, "sent": list(r.sent), "dropped": list(r.dropped)}
                                           for r in rows]}
        report.warnings.extend(reference_warnings(lp, backends, rows, limit))
        from stages.check_voices import acting_warnings

        report.warnings.extend(acting_warnings(lp, backends))
        report.takes = project.takes_for(project.backends.video)
        if report.takes > 1 and not backends.video.capabilities.seeded:
            report.warnings.append(Warning_(file=yaml_file, line=lp.line_of("takes"), message=(
                f"takes: {report.takes} with the {project.backends.video} backend, which draws the same picture "
                "whatever the seed: its takes of a shot will look alike; set takes for a model backend "
                f"({{kling: 3}}) or leave them at 1")))
    for cid, name in script.characters.items():
        in_cast = any(c.id == cid for c in project.cast)
        report.characters.append({"id": cid, "name": name, "lines": spoken.get(cid, 0), "in_cast": in_cast})
    return report


def blockers(lp, *, keys: bool = True) -> list[InputError]:
    """What a render needs and lacks (an extra, Piper voices, music, effects, a hosted model and its
    API key): refused before any work. `keys`: check API keys too (a dry run needs none)."""
    out: list[InputError] = []
    project, root = lp.project, lp.root
    yaml_file = str(root / "project.yaml")
    from stages.backends.espeak import available_languages

    languages = None
    for c in project.cast:
        if (c.voice.backend or project.backends.speech) == "espeak":
            languages = languages or set(available_languages())
            if c.voice.language.lower() not in languages:  # eSpeak would speak it in some other voice
                line = lp.cast_line(c.id, "voice", "language")
                near = sorted(n for n in languages if n[:2] == c.voice.language.lower()[:2])[:6]
                out.append(InputError(
                    f"cast {c.id}: eSpeak NG has no language {c.voice.language!r}", file=yaml_file, line=line,
                    text=lp.text_at(line), hint="use a language eSpeak NG speaks, e.g. "
                    + ", ".join(near or ["en-us", "en-gb", "cmn", "yue", "es", "ja"])))
        if (c.voice.backend or project.backends.speech) != "piper":
            continue
        for need in ([c.voice.voice, c.voice.voice + ".json"] if c.voice.voice else [None]):
            if need is None or not (root / need).is_file():
                out.append(InputError(
                    f"cast {c.id}: Piper voice file {need or '(none given)'} not found", file=yaml_file,
                    hint="set voice.voice to a .onnx voice (its .onnx.json beside it), relative to the "
                         "project folder; voices: github.com/rhasspy/piper/blob/master/VOICES.md"))
    import importlib.util

    from stages.backends.registry import backends_for

    backends = backends_for(project, root)
    engines = dict.fromkeys(c.voice.backend or project.backends.speech for c in project.cast)
    needs: dict[str, str] = {}  # module -> how to install it, from each backend's capabilities
    for backend in (backends.video, backends.image, *(backends.speech(e) for e in engines)):
        caps = backend.capabilities
        needs.update(dict.fromkeys(caps.requires, caps.install or f"pip install 'dramaforge[{caps.extra}]'"))
    from stages.backends._jobs import HostedVideoBackend

    from stages.sync_lips import lipsync_blockers, modes_used

    from stages.check_voices import voice_blockers

    out.extend(voice_blockers(lp, backends, keys=keys))
    from stages.check_dubs import dub_blockers, translator_key

    out.extend(dub_blockers(lp, backends) + (translator_key(lp) if keys else []))
    for problem, fix in lipsync_blockers(project, backends.video, backends.lipsync):
        out.append(InputError(problem, file=yaml_file, hint=fix))
    hosted = [backends.video] + ([backends.lipsync] if "tts+lipsync" in modes_used(project) else [])
    for backend in hosted:
        if isinstance(backend, HostedVideoBackend):
            for problem, fix in backend.missing(keys=keys):
                out.append(InputError(problem, file=yaml_file, hint=fix))
    for module, how in needs.items():
        if importlib.util.find_spec(module) is None:
            out.append(InputError(f"this project uses {module}, which is not installed", file=yaml_file, hint=how))
    if project.identity.check:
        from stages.check_identity import available

        if (missing := available()) is not None:
            out.append(InputError(f"identity: {{check: true}}: {missing}", file=yaml_file,
                                  line=lp.line_of("identity", "check"), hint="or set identity.check to false"))
    music = project.audio.music
    for name in [music.file, *music.episodes.values()]:
        if name and name.lower() != "none" and not (root / name).is_file():
            out.append(InputError(f"music file not found: {name}", file=yaml_file,
                                  hint="audio.music paths are relative to the project folder"))
    for ep in lp.script.episodes:
        for sc in ep.scenes:
            for el in sc.elements:
                cue = (MUSIC_NOTE.match(el.text) or SFX_NOTE.match(el.text)) if el.kind == "note" else None
                if cue and cue.group("file").lower() != "none" and not (root / cue.group("file")).is_file():
                    out.append(InputError(
                        f"sound file not found: {cue.group('file')}", file=el.file, line=el.line, text=el.text,
                        hint="the path is relative to the project folder; add the file or fix the note"))
    return out
