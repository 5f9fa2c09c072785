"""An episode -> its work plan: every unit a render makes (reference sheets, keyframes, shots, spoken
lines, the subtitle translation, the cut) with its content key, its artifact path and its request.

`render`, `status`, `estimate`, `rerun` and the review site all read this one plan, so they agree on
every key by construction: the keys are computed here and nowhere else. The plan reads the project
and what is on disk (the speech already spoken times the shots, the user's shot-list edits, an LLM
planner's cached answer) and writes nothing. A key is a hash of everything that determines its
artifact (request, backend identity, format version); files count by their content-addressed names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from pathlib import Path
from typing import Mapping

from stages.backends.base import ImageRequest, ShotRequest, SpeechRequest
from stages.backends.registry import BackendSet, make_video_backend
from stages.core.artifacts import file_digest, file_sha256, spec_hash
from stages.core.errors import InputError
from stages.core.media import wav_duration_s
from stages.core.paths import BuildPaths
from stages.generate_shot import placeholder_request, shot_request
from stages.load_project import LoadedProject
from stages.make_keyframe import keyframe_request
from stages.make_references import sheet_requests
from stages.make_subtitles import LAYOUT as SUBTITLE_LAYOUT
from stages.mix_audio import NATIVE_LUFS, Effect, MusicSpan, cue_spec, sound_cues, voice_treatment
from stages.plan_shots import plan_shots
from stages.plan_shots_llm import NotPlanned
from stages.schema import Character, Planner, Project, ShotList
from stages.synthesize_speech import reference_clip, speech_engine, speech_request
from stages.time_shots import card_times, time_shots, timeline
from stages.units import (Clip, Cut, EpisodeWork, KeyframeUnit, LineUnit, LipSyncPiece, LipSyncUnit, SheetUnit,
                          ShotUnit, TranslationUnit, VoiceUnit)

END_TEXT = {"en": ("To be continued", "The End"), "zh": ("未完待续", "全剧终")}
_SPEECH_DEFAULTS = {f.name: f.default for f in dataclasses.fields(SpeechRequest)
                    if f.default is not dataclasses.MISSING}


# --- the plan ----------------------------------------------------------------------------------

def plan_work(lp: LoadedProject, episode: int, backends: BackendSet, *,
              placeholders: Mapping[str, str | None] | None = None, cached_only: bool = False) -> EpisodeWork:
    """Every unit of episode `episode` as a render would make it now.

    `placeholders`: shots the user accepted as a card -> the reason the card shows (the ledger's).
    `cached_only`: an LLM planner is never asked; an episode it has not planned yet gets the rules
    planner's shots, marked `provisional`.
    """
    project, root, paths = lp.project, lp.root, BuildPaths(lp.build)
    ep = lp.script.episode(episode)
    names = lp.script.characters

    # 1. the shots, as the planner (and the user's edits) have them
    try:
        shotlist, provisional = plan_shots(ep, project, project_dir=root, characters=names,
                                           cached_only=cached_only), False
    except NotPlanned:
        rules = project.model_copy(update={"planner": Planner(kind="rules")})
        shotlist, provisional = plan_shots(ep, rules, project_dir=root, characters=names), True

    # 2. every line: its voice and key; the shots timed from the speech already spoken
    lines, measured, voices = [], {}, {}
    for shot in shotlist.shots:
        durations = []
        for i, ln in enumerate(shot.lines):
            engine = speech_engine(project, ln.character)
            speaker = backends.speech(engine)
            try:
                request = speech_request(ln.text, ln.character, project, root, parenthetical=ln.parenthetical,
                                         extension=ln.extension, backend=speaker)
            except InputError as exc:
                if exc.file is None:  # the voice's problem, shown at the first line it would speak
                    exc.file, exc.line = ln.file, ln.line
                raise
            key = speech_key(request, speaker)
            if getattr(speaker.capabilities, "enrolls", False) and (ln.character, engine) not in voices:
                voices[ln.character, engine] = voice_unit(ln.character, request, project, speaker, paths)
            unit = LineUnit(f"{shot.id}-l{i + 1}", ep.number, shot.id, i, engine, request, key, paths.wav(key),
                            f"episode {ep.number}, scene {shot.scene}, {ln.file}:{ln.line}",
                            voices.get((ln.character, engine)), ln.character,
                            # measured against the clip where the engine speaks in it (another engine's
                            # voice is not meant to sound like it)
                            reference_clip(project, ln.character, root)
                            if getattr(speaker.capabilities, "cloning", False) else None)
            lines.append(unit)
            if unit.path.exists():
                durations.append(wav_duration_s(unit.path))
        if shot.lines and len(durations) == len(shot.lines):
            measured[shot.id] = durations
    timed = time_shots(shotlist, measured, project)

    # 3. reference sheets (where a shot uses them, or where they are free), then every shot's
    #    request, keyframe and key; a shot with an unspoken line has no key yet
    video, image = backends.video, backends.image
    sheets = {}
    if wants_references(backends):
        cast = {c.id: c for c in project.cast}
        for cid in dict.fromkeys(c for s in timed.shots for c in s.characters if c in cast):
            sheets[cid] = sheet_unit(cast[cid], ep.number, project, root, backends, paths)
    shots = []
    scenes = {sc.number: sc for sc in ep.scenes}
    for s in timed.shots:
        refs = {cid: list(sheets[cid].paths) for cid in s.characters if cid in sheets}
        request = shot_request(s, project, root, names, refs)
        if "staging" in video.capabilities.uses:  # a drawing backend: INT./EXT. and its overlays
            request = replace(request, extra={**request.extra, **staging(scenes[s.scene].interior, project)})
        keyframe = None
        if "keyframe" in video.capabilities.uses:
            kf = keyframe_request(request)
            keyframe = KeyframeUnit(kf, paths.keyframe(keyframe_key(kf, image)))
            request = replace(request, keyframe=keyframe.path)
        timed_known = s.id in measured or not s.lines
        takes = []  # (take, its key, its request)
        for take in range(1, takes_of(s, project, video, paths.shotlist(ep.id)) + 1):
            asked = request if take == 1 else replace(request, seed=take_seed(request.seed, take))
            takes.append((take, shot_key(asked, video) if timed_known else None, asked))
        chosen_take = s.take or 1
        if project.identity.check and s.take is None and timed_known:  # the best take the check has seen
            from stages.check_identity import choose

            chosen_take, retake = choose(takes, project.identity, paths.identity)
            if retake:  # every take drifted: one more (once: it is chosen only if it matches)
                asked = replace(request, seed=take_seed(request.seed, len(takes) + 1))
                takes.append((len(takes) + 1, shot_key(asked, video), asked))
                chosen_take, _ = choose(takes, project.identity, paths.identity)
        for take, key, asked in takes:
            uid = s.id if take == 1 else f"{s.id}-t{take}"
            card = None
            if placeholders and uid in placeholders and key is not None:
                card = clip(placeholder_request(asked, placeholders[uid]), paths)
            shots.append(ShotUnit(uid, ep.number, asked, key, paths.clip(key) if key else None, keyframe, card,
                                  take, take == chosen_take))
    chosen = [u for u in shots if u.chosen]  # one per shot, in order: what the episode is cut from

    # 4. lip sync: the shots whose speaker's lips follow our voice, piece by piece (tts+lipsync)
    syncs, unsynced = lipsync_units(timed, chosen, lines, project, backends, paths)
    synced = {u.shot_id: u for u in syncs}

    # 5. the subtitle translation (the lines in order), and the cut once every line is spoken
    translation = translation_unit([ln.text for s in timed.shots for ln in s.lines], project, backends, paths,
                                   lp.translations.glossary)
    cut = None
    final = ep.number == lp.script.episodes[-1].number
    if all(ln.path.exists() for ln in lines):
        spoken = {(ln.shot_id, ln.index): (ln.key, ln.path) for ln in lines}
        made = [(synced[u.shot_id].key, synced[u.shot_id].path) if u.shot_id in synced else u.clip for u in chosen]
        faces = [video.faces(u.request) if video.capabilities.faces and u.placeholder is None else []
                 for u in chosen]
        # dialogue: native: the model's own sound voices these lines (a placeholder card has none)
        from stages.sync_lips import native_lines

        native = {u.shot_id: (u.path, u.key, tuple(native_lines(s, project)))
                  for s, u in zip(timed.shots, chosen) if u.request.extra.get("dialogue") and u.placeholder is None}
        cut = plan_cut(timed, [k for k, _ in made], [p for _, p in made], spoken, project, root, paths=paths,
                       series=lp.script.title or project.title, episode_title=ep.title, final=final,
                       end_text=ep.end_text, faces=faces, native=native)
    return EpisodeWork(ep.number, ep.title, timed, tuple(lines), tuple(sheets.values()), tuple(shots),
                       translation, cut, paths.episode_mp4(ep.id), provisional, tuple(syncs), tuple(unsynced))


def takes_of(shot, project: Project, video, shotlist: Path) -> int:
    """How many takes of `shot` to make: its shot list's `takes`, else the project's for the video backend;
    a chosen `take` beyond them is refused where the user wrote it."""
    n = shot.takes or project.takes_for(video.name)
    if (shot.take or 1) > n:
        raise InputError(f"shot {shot.id} picks take {shot.take}, but {n} take{'s are' if n > 1 else ' is'} made of it",
                         file=str(shotlist), text=f"take: {shot.take}",
                         hint=f"pick 1 to {n} (`dramaforge takes PROJECT --shot {shot.id}` lists them), or raise "
                              f"`takes:` for it")
    return n


def take_seed(seed: int, take: int) -> int:
    """Take K's seed: the shot's own for take 1, the next ones after it (a model's noise differs)."""
    return (seed + take - 1) % 2**31


def voice_unit(character: str, request: SpeechRequest, project: Project, backend, paths: BuildPaths) -> VoiceUnit:
    """A character's voice at a cloning provider: enrolled once per clip (its content and transcript)
    and account (`backend.account()`), whichever episode first needs it."""
    from stages.backends._voices import VoiceClip

    who = next((c.name for c in project.cast if c.id == character), character)
    clip = VoiceClip(character, who, Path(request.reference), request.reference_text or "", request.reference_sha,
                     request.language)
    key = spec_hash("voice", {"clip": clip.sha256, "text": clip.text, "account": backend.account_for(character)})
    return VoiceUnit(f"voice-{character}-{backend.name}", character, backend.name, clip, key, paths.voice(key))


def lipsync_units(timed: ShotList, shots: list[ShotUnit], lines: list[LineUnit], project: Project,
                  backends: BackendSet, paths: BuildPaths) -> tuple[list[LipSyncUnit], list[tuple[str, str]]]:
    """The shots to sync (their pieces keyed on the shot's clip, the speech under each piece and the
    backend), and (shot id, why) for each line or turn of a tts+lipsync shot that is not synced."""
    from stages.sync_lips import line_verdicts, piece_key, pieces_of, turns
    from stages.time_shots import GAP_S

    syncs, unsynced = [], []
    by_line = {(ln.shot_id, ln.index): ln for ln in lines}
    video = backends.video
    for shot, unit in zip(timed.shots, shots):
        verdicts = line_verdicts(shot, project)
        if not verdicts:
            continue
        unsynced += [(shot.id, f"line {i + 1}: {why}") for i, ok, why in verdicts if not ok]
        if unit.placeholder is not None:
            unsynced.append((shot.id, "a placeholder card: nothing to sync"))
            continue
        if unit.key is None or not any(ok for _, ok, _ in verdicts):
            continue  # not timed yet (a line unspoken), or nothing eligible
        lipsync = backends.lipsync
        caps, identity = lipsync.capabilities, lipsync.identity()
        starts, at = [], project.timing.lead_in_s
        for ln in shot.lines:
            starts.append(round(at, 4))
            at += (ln.speech_s or 0.0) + GAP_S
        pieces, not_sent = [], []
        for turn in turns(shot, project):
            spans, why = pieces_of(turn, caps, project.fps)
            if not spans:
                not_sent.append(f"{turn.character}'s lines {', '.join(str(i + 1) for i in turn.lines)}: {why}")
                continue
            for start, frames in spans:
                a, b = start / project.fps, (start + frames) / project.fps
                heard = tuple((starts[i], by_line[shot.id, i].path, by_line[shot.id, i].key) for i in turn.lines
                              if starts[i] < b and starts[i] + (shot.lines[i].speech_s or 0.0) > a)
                key = piece_key(unit.key, start, frames, turn.character, heard, identity)[:24]
                pieces.append(LipSyncPiece(turn.character, start, frames, heard, key,
                                           paths.lipsync_file(key, ".mp4"), paths.lipsync_file(key, ".wav")))
        unsynced += [(shot.id, w) for w in not_sent]
        if not pieces:
            continue
        key = spec_hash("lipsync", {"source": unit.key, "pieces": [p.key for p in pieces], "backend": identity})
        faces = tuple(video.faces(unit.request)) if video.capabilities.faces else ()
        syncs.append(LipSyncUnit(f"{shot.id}-lips", unit.episode, shot.id, unit.key, unit.path, unit.request,
                                 tuple(pieces), tuple(not_sent), faces, key, paths.clip(key),
                                 paths.lipsync_file(key, ".json")))
    return syncs, unsynced


def staging(interior: str, project: Project) -> dict:
    """Drawing hints for a backend that draws the set and labels its shots (the animatic)."""
    return {**({"interior": interior} if interior else {}),
            **({"overlays": "clean"} if project.overlays == "clean" else {})}


def wants_references(backends: BackendSet) -> bool:
    """Sheets are made when a shot uses them (directly or through its keyframe), or when they are free."""
    return bool({"references", "keyframe"} & backends.video.capabilities.uses) or backends.image.capabilities.free


def sheet_unit(character: Character, episode: int, project: Project, project_dir: Path, backends: BackendSet,
               paths: BuildPaths) -> SheetUnit:
    """The sheet for `episode`'s look: the user's images (by content), or views the image backend makes."""
    _, own = character.look(episode)
    if own:
        sources = tuple(project_dir / p for p in own)
        out = []
        for p, src in zip(own, sources):
            try:
                digest = file_digest(src)
            except OSError as exc:
                raise InputError(f"cast {character.id}: reference image not found: {p}",
                                 hint="paths are relative to the project folder") from exc
            out.append(paths.own_reference(character.id, digest[:16], src.suffix.lower() or ".png"))
        return SheetUnit(character.id, episode, tuple(out), sources=sources)
    requests = tuple(sheet_requests(character, episode, project, project_dir))
    identity = backends.image.identity()
    keys = [spec_hash("reference", {"request": _image_spec(r), "backend": identity})[:20] for r in requests]
    return SheetUnit(character.id, episode, tuple(paths.sheet(character.id, r.view, k) for r, k in zip(requests, keys)),
                     requests)


def translation_unit(texts: list[str], project: Project, backends: BackendSet, paths: BuildPaths,
                     glossary=None, target: str | None = None) -> TranslationUnit | None:
    """The lines in the second subtitle language, or in the dub language `target`; `glossary`: the
    project's (`stages.glossary.Glossary`), whose terms in that language the translation must use."""
    options = project.subtitles.translation
    target = target or (options.language if options else None)
    if target is None:
        return None
    backend = backends.translation
    pairs = glossary.pairs(target) if glossary is not None else ()
    key = translation_key(texts, project.language, target, backend.identity(), pairs)
    return TranslationUnit(key, paths.translation(key), tuple(texts), project.language, target,
                           backend.calls(len(texts)), pairs)


def clip(request: ShotRequest, paths: BuildPaths) -> Clip:
    """A card or placeholder drawn by the animatic (offline, free)."""
    key = shot_key(request, make_video_backend(None, "animatic"))
    return Clip(request, key, paths.clip(key))


# --- keys: what determines each artifact -------------------------------------------------------

def speech_key(request: SpeechRequest, backend) -> str:
    # Fields at their defaults are left out (keys made before they existed stay valid), and a
    # voice file counts by content, not by where the project happens to live.
    fields = {k: v for k, v in request.__dict__.items() if k not in _SPEECH_DEFAULTS or v != _SPEECH_DEFAULTS[k]}
    if request.voice_sha:
        fields.pop("voice", None)
    # a reference clip counts by content; the voice id its enrollment got is the same voice by another name
    fields.pop("reference", None)
    fields.pop("voice_id", None)
    return spec_hash("speech", {"request": fields, "backend": backend.identity()})


def shot_key(request: ShotRequest, backend) -> str:
    """Everything that determines the clip. Fields the backend ignores are left out (the animatic
    draws no negative prompt), and files count by their content-addressed names, not their paths."""
    ignored = backend.capabilities.ignores
    spec = {k: v for k, v in request.__dict__.items() if k != "figures" and k not in ignored}
    if "keyframe" in spec:
        spec["keyframe"] = request.keyframe.name if request.keyframe else None
    figures = []
    for f in request.figures:
        fig = {"id": f.id, "name": f.name, "description": f.description, "speaking": f.speaking,
               "reference_sha256": file_sha256(f.reference_image) if f.reference_image
               and f.reference_image.exists() else None}
        if "references" not in ignored:
            fig["references"] = [p.name for p in f.references]
            mine = [a for b, a in f.assets if b == getattr(backend, "name", None)]
            if mine:  # a saved id the backend sends (absent: keys made before assets existed hold)
                fig["assets"] = mine
        voice = [v for b, v in f.voices if b == getattr(backend, "name", None)]
        if voice:  # the voice the model speaks them in (dialogue: native)
            fig["voice"] = voice
        if f.voice_clip is not None and "voice_clips" in backend.capabilities.uses:  # a clip it is sent, by content
            fig["voice_clip"] = file_digest(f.voice_clip)
        figures.append(fig)
    spec["figures"] = figures
    return spec_hash("shot", {"request": spec, "backend": backend.identity()})


def keyframe_key(request: ImageRequest, backend) -> str:
    """A keyframe by its request (references by their own content names) and the image backend."""
    spec = _image_spec(request)
    spec["references"] = [p.name for p in request.references]  # content-addressed names under build/characters
    return spec_hash("keyframe", {"request": spec, "backend": backend.identity()})


def fit_key(speech: str, tempo: float) -> str:
    """A dub line sped up to fit its place (`stages.plan_dub`): the spoken line's key and the tempo."""
    return speech if tempo == 1.0 else spec_hash("dub-fit", {"speech": speech, "tempo": tempo})


def translation_key(lines: list[str], source: str, target: str, identity: dict, glossary: tuple = ()) -> str:
    # the glossary counts only when it has terms for the language (keys made without one hold)
    return spec_hash("translation", {"lines": list(lines), "source": source, "target": target, "backend": identity,
                                     **({"glossary": [list(p) for p in glossary]} if glossary else {})})


def _image_spec(request: ImageRequest) -> dict:
    spec = {k: v for k, v in request.__dict__.items() if k not in ("figures", "references")}
    spec["figures"] = [[f.id, f.description] for f in request.figures]
    return spec


# --- the cut -----------------------------------------------------------------------------------

def plan_cut(timed: ShotList, clip_keys: list[str], clips: list[Path], speech: dict[tuple[str, int], tuple[str, Path]],
             project: Project, project_dir: Path, *, paths: BuildPaths, series: str = "", episode_title: str = "",
             final: bool = False, end_text: str | None = None, faces: list[list] | None = None,
             native: dict[str, tuple[Path, str, tuple[int, ...]]] | None = None,
             episode_label: str | None = None, second: tuple[str, list[str]] | None = None) -> Cut:
    """The cut of a timed shot list: `speech` maps (shot id, line index) to (speech key, wav).

    Adds the opening card (series title, episode number and title) and the end card, whose drawn
    backgrounds are clips under `paths`. The end card says the script's own `end_text` when it has one
    (then it is shown even with `cards.end: false`: the writer wrote it). `faces`: per shot, the
    (character, box) of each face its backend drew, for subtitles to keep clear of. `native`: shot id ->
    (its clip, key, the lines its own sound voices), for `dialogue: native` (still subtitled at our timing).
    """
    c = project.cards
    lead = c.opening_s if c.opening and timed.shots else 0.0
    tail = c.end_s if (c.end or end_text) and timed.shots else 0.0
    story = timed.duration_s
    lines = [replace(ln, start_s=round(ln.start_s + lead, 4), end_s=round(ln.end_s + lead, 4))
             for ln in timeline(timed, project)]
    music, effects = sound_cues(timed, project, project_dir)
    # the music runs under the cards too when the story starts or ends on it
    music = [MusicSpan(0.0 if sp.start_s == 0 else sp.start_s + lead,
                       sp.end_s + lead + (tail if abs(sp.end_s - story) < 1e-6 else 0.0), sp.file) for sp in music]
    effects = [Effect(e.start_s + lead, e.file) for e in effects]
    cards = [(round(a + lead, 4), round(b + lead, 4), t) for a, b, t in card_times(timed)]
    opening = ending = None
    first, last = (timed.shots[0], timed.shots[-1]) if timed.shots else (None, None)
    if lead:
        label = episode_label or (f"Episode {timed.episode}" if not project.language.lower().startswith("zh")
                                  else f"第{timed.episode}集")
        cards.insert(0, (0.0, lead, "\n".join(t for t in (series, label, episode_title) if t)))
        opening = clip(_card_background(f"ep{timed.episode:02d}-opening", first, lead, project), paths)
    if tail:
        words = END_TEXT.get(project.language.lower()[:2], END_TEXT["en"])
        cards.append((round(lead + story, 4), round(lead + story + tail, 4),
                      end_text or c.end_text or words[1 if final else 0]))
        ending = clip(_card_background(f"ep{timed.episode:02d}-end", last, tail, project), paths)
    total = round(lead + story + tail, 6)
    spans, at, voiced = [], lead, []  # each shot's faces and its own sound (native), on the episode's clock
    for shot, boxes in zip(timed.shots, faces or [[] for _ in timed.shots]):
        if boxes:
            spans.append((round(at, 4), round(at + shot.duration_s, 4),
                          [[round(v, 1) for v in box] for _, box in boxes]))
        if native and shot.id in native:
            voiced.append((round(at, 4), round(at + shot.duration_s, 4), *native[shot.id]))
        at += shot.duration_s
    by_model = {(s.id, i) for s in timed.shots for i in (native or {}).get(s.id, (None, None, ()))[2]}
    e = project.encoding
    key = spec_hash("episode", {
        "clips": clip_keys, "duration_s": total, "cards": [list(x) for x in cards],
        "transitions": [s.transition for s in timed.shots],
        "lines": [[ln.start_s, speech[ln.shot_id, ln.index][0], ln.text, ln.character,
                   voice_treatment(ln.extension, project)] for ln in lines],
        "sound": cue_spec(music, effects, project.audio.music),
        "picture": {"width": project.width, "height": project.height, "fps": project.fps,
                    "crf": e.crf, "preset": e.x264_preset, "audio_kbps": e.audio_kbps},
        "card_backgrounds": [r.request.location if r else None for r in (opening, ending)],
        "subtitles": _subtitle_spec(project), "faces": spans, "layout": SUBTITLE_LAYOUT,
        **({"second": [second[0], list(second[1])]} if second else {}),
        "loudness": list(project.audio.target), "voice_over": project.audio.voice_over,
        **({"native": [[a, b, k, list(idx)] for a, b, _, k, idx in voiced], "native_lufs": NATIVE_LUFS}
           if voiced else {})})
    return Cut(key, total, list(clips), [s.duration_s for s in timed.shots], [s.transition for s in timed.shots],
               lines, [speech[ln.shot_id, ln.index][1] for ln in lines], cards, music, effects, opening, ending,
               faces=spans, native=[(a, b, p) for a, b, p, _, _ in voiced],
               by_model=[(ln.shot_id, ln.index) in by_model for ln in lines],
               second=(second[0], list(second[1])) if second else None)


def _subtitle_spec(project: Project) -> dict:
    """The subtitle settings in a cut's key (`bilingual` only when set: keys made before it existed hold)."""
    spec = project.subtitles.model_dump(mode="json")
    if spec.get("bilingual") is None:
        spec.pop("bilingual", None)
    return spec


def _card_background(shot_id: str, near, duration_s: float, project: Project) -> ShotRequest:
    """A plain, drawn background for a title or end card: the place of the shot beside it."""
    return ShotRequest(shot_id=shot_id, prompt="", size="wide", camera="static", location=near.location,
                       time=near.time, action="", caption="", figures=(), duration_s=duration_s,
                       width=project.width, height=project.height, fps=project.fps, seed=0,
                       extra={"under_card": True})

