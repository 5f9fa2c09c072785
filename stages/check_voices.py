"""What `check` says about the cast's voices: a cloning engine without a usable reference clip (an
error: a render would refuse it), a hosted speech provider without its key, and acting notes an engine
has no field for (a warning: they are not used)."""

from __future__ import annotations

from stages.core.errors import InputError
from stages.schema import Warning_


def voice_blockers(lp, backends, *, keys: bool = True) -> list[InputError]:
    """Each character whose voice cannot be made: no clip, a clip that is missing, unreadable, or too
    short or long for the engine; the engine's key, when `keys`."""
    from stages.core.media import probe

    project, yaml_file, out, asked = lp.project, str(lp.root / "project.yaml"), [], set()
    old = lp.root / "templates" / "speech_instructions.j2"
    if old.exists():  # renamed when every engine got its own acting template: never silently ignored
        out.append(InputError(f"{old} is no longer read: the OpenAI speech instructions template is now "
                              "templates/acting/openai.j2", file=str(old), line=1,
                              hint="rename it to templates/acting/openai.j2"))
    for c in project.cast:
        engine = c.voice.backend or project.backends.speech
        backend = backends.speech(engine)
        caps = backend.capabilities
        line = lp.cast_line(c.id, "voice")
        ref = c.voice.reference
        if ref is None:
            if getattr(caps, "cloning", False):
                out.append(InputError(f"cast {c.id}: {engine} speaks in a voice cloned from a clip, and {c.id} has "
                                      "no voice.reference", file=yaml_file, line=line, text=lp.text_at(line),
                                      hint="record 10-30 s of the actor (README, \"How to record a good reference "
                                           "clip\") and set voice.reference and voice.reference_text"))
        else:
            path = ref if ref.is_absolute() else lp.root / ref
            line = lp.cast_line(c.id, "voice", "reference")
            try:
                info = probe(path) if path.is_file() else None
            except Exception:  # noqa: BLE001 -- any decoder's complaint: not a clip we can use
                info = False
            if info is None:
                out.append(InputError(f"cast {c.id}: the reference clip {ref} is not there", file=yaml_file,
                                      line=line, text=lp.text_at(line),
                                      hint="voice.reference is relative to the project folder"))
            elif info is False or info.audio_codec is None or not info.duration_s:
                out.append(InputError(f"cast {c.id}: the reference clip {ref} has no sound that can be read",
                                      file=yaml_file, line=line, text=lp.text_at(line),
                                      hint="give a WAV or MP3 of the actor speaking"))
            elif getattr(caps, "clip_s", None) and not caps.clip_s[0] <= info.duration_s <= caps.clip_s[1]:
                lo, hi = caps.clip_s
                out.append(InputError(f"cast {c.id}: the reference clip {ref} is {info.duration_s:.1f} s; {engine} "
                                      f"takes {lo:g} to {hi:g} s", file=yaml_file, line=line, text=lp.text_at(line),
                                      hint=f"record or cut a clip of {max(lo, 10):g}-{min(hi, 30):g} s"))
        if engine not in asked and hasattr(backend, "missing") and getattr(caps, "cloning", False):
            asked.add(engine)
            for problem, fix in backend.missing(keys=keys):
                out.append(InputError(problem, file=yaml_file, hint=fix))
    return out


def acting_warnings(lp, backends) -> list[Warning_]:
    """One warning per character whose acting notes (parentheticals, V.O., voice.notes) their engine
    has no field for."""
    project, yaml_file = lp.project, str(lp.root / "project.yaml")
    noted: dict[str, list] = {}
    for ep in lp.script.episodes:
        for sc in ep.scenes:
            for el in sc.elements:
                if el.kind == "dialogue" and (el.parenthetical or el.extension):
                    noted.setdefault(el.character or "", []).append(el)
    out = []
    for c in project.cast:
        engine = c.voice.backend or project.backends.speech
        if getattr(backends.speech(engine).capabilities, "acting", None):
            out += _unmapped(lp, c, engine, [el for el in noted.get(c.id, []) if el.parenthetical], yaml_file)
            continue
        lines = noted.get(c.id, [])
        if lines or c.voice.notes:
            first = lines[0] if lines else None
            what = ([f"{len(lines)} line(s) with a parenthetical or extension (first: {first.file}:{first.line})"]
                    if lines else []) + (["voice.notes"] if c.voice.notes else [])
            out.append(Warning_(file=yaml_file, line=lp.cast_line(c.id, "voice"), message=(
                f"cast {c.id}: {engine} takes no acting notes, so {' and '.join(what)} are not used; "
                "a backend with an emotion or instruction field (README, Voices) acts them")))
    return out


def _unmapped(lp, c, engine: str, lines: list, yaml_file: str) -> list[Warning_]:
    """A warning for the parentheticals an acting engine's template turns into nothing (not acted)."""
    from stages.core.prompts import render_template

    silent = [el for el in lines if not render_template(
        f"acting/{engine}.j2", lp.root, character=c.name, notes=c.voice.notes,
        parenthetical=el.parenthetical.strip("()（） "), extension=el.extension or "", language=lp.project.language,
        text=el.text).strip()]
    if not silent:
        return []
    first = silent[0]
    return [Warning_(file=yaml_file, line=lp.cast_line(c.id, "voice"), message=(
        f"cast {c.id}: {len(silent)} acting note(s) give {engine} nothing to act (first: "
        f"({first.parenthetical}) at {first.file}:{first.line}); map them in templates/acting/{engine}.j2 "
        "(a project's own templates/ overrides it)"))]
