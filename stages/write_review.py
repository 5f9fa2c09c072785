"""A project's state -> the review site in build/review/: a page for the series and one per episode.

Static files that open from disk (`file://`) and can be zipped and shared: every picture, clip and
the font are relative paths or inline, nothing is fetched from a network. The pages embed a subset
of the bundled Noto Sans CJK covering exactly the characters they show, so Chinese renders on a
machine without CJK fonts.
"""

from __future__ import annotations

import base64
import io
import os
import shlex
from collections import Counter
from pathlib import Path
from urllib.parse import quote

from stages.core.artifacts import atomic_path, is_done, spec_hash, write_text_atomic
from stages.core.ledger import NEEDS_RERUN, SHOWN, State
from stages.core.paths import BuildPaths
from stages.core.fonts import face_index, font_file
from stages.load_project import LoadedProject
from stages.core.media import probe
from stages.project_status import EpisodeStatus, ShotStatus
from stages.core.prompts import render_page

STATES = [str(s) for s in SHOWN]
THUMB_W = 360
FONT_FAMILY = "DF Noto Sans CJK"  # our own name, so a system font of the real name never stands in


def write_review(lp: LoadedProject, statuses: list[EpisodeStatus], paths: BuildPaths, *,
                 command_root: str) -> Path:
    """Write index.html and epNN.html for every episode in `statuses`; returns index.html.

    `command_root` is the project path as the user types it, for the re-run commands shown.
    """
    paths.thumbs.mkdir(parents=True, exist_ok=True)
    from stages.backends.registry import backends_for

    root = shlex.quote(command_root)
    series = lp.script.title or lp.project.title
    video = backends_for(lp.project, lp.root).video  # made, not loaded: its capabilities fit the references
    episodes = [_episode_view(e, lp, paths, root, video) for e in statuses]
    pages = {"index.html": ("review_index.html.j2", {"episodes": episodes})}
    for i, ep in enumerate(episodes):
        pages[f"{ep['id']}.html"] = ("review_episode.html.j2", {
            "episode": ep, "previous": episodes[i - 1] if i else None,
            "next": episodes[i + 1] if i + 1 < len(episodes) else None})
    common = {"series": series, "language": lp.project.language, "states": STATES,
              "width": lp.project.width, "height": lp.project.height, "font_family": FONT_FAMILY}
    # Two passes: the font is subset to every character the pages show, then linked from them.
    drafts = {name: render_page(t, lp.root, font_css=None, **common, **ctx) for name, (t, ctx) in pages.items()}
    fonts = font_css(paths.review_assets, "".join(drafts.values()), lp.project.subtitles.font)
    css = Path(os.path.relpath(fonts, paths.review)).as_posix()
    for name, (template, ctx) in pages.items():
        write_text_atomic(paths.review_page(name), render_page(template, lp.root, font_css=css, **common, **ctx))
    return paths.review_page("index.html")


def _episode_view(e: EpisodeStatus, lp: LoadedProject, paths: BuildPaths, root: str, video) -> dict:
    ep = lp.script.episode(e.number)
    mp4, poster = paths.episode_mp4(e.id), paths.poster(e.id)
    made = mp4.exists() and e.assembly in (State.DONE, State.STALE)
    syncs = {u.shot: u for u in e.syncs}
    skipped: dict[str, list[str]] = {}
    for shot_id, why in e.unsynced:
        skipped.setdefault(shot_id, []).append(why)
    spoken = {ln.id: ln for ln in e.speech}
    takes: dict[str, list] = {}
    for s in e.shots:
        takes.setdefault(s.shot or s.id, []).append(s)
    chosen = [s for s in e.shots if s.chosen]  # one per shot: the take the cut uses
    shots = [_shot_view(s, shot, e.number, lp, paths, root, video, syncs.get(s.shot or s.id),
                        skipped.get(s.shot or s.id, []), spoken, takes[s.shot or s.id])
             for s, shot in zip(chosen, e.plan.shots)]
    counts = Counter(s.state for s in e.shots)
    return {
        "id": e.id, "number": e.number, "title": ep.title, "cut": str(e.assembly),
        "mp4": _href(mp4, paths) if made else None,
        "poster": _href(poster, paths) if made and poster.exists() else
        next((s["thumb"] for s in shots if s["thumb"]), None),
        "duration_s": probe(mp4).duration_s if made else e.plan.duration_s,
        "duration_measured": made,
        "counts": {k: counts.get(k, 0) for k in STATES}, "shots": shots, "lines": e.lines,
        "render": f"dramaforge render {root} --episodes {e.number}",
        "dubs": [{"language": d.language, "state": str(d.state), "step": d.step, "held": d.held,
                  "mp4": _href(paths.episode_mp4(d.id), paths) if d.mp4 else None} for d in e.dubs],
    }


def _shot_view(s: ShotStatus, shot, episode: int, lp: LoadedProject, paths: BuildPaths, root: str,
               video, sync=None, unsynced: list[str] = (), spoken: dict | None = None, takes: list = ()) -> dict:
    from stages.route_references import shot_fit

    clip, current = None, False
    if sync is not None and sync.id.endswith("-lips") and sync.state == State.DONE and sync.artifact:
        clip, current = Path(sync.artifact), True  # what the cut shows: the lips synced
    elif s.key and paths.clip(s.key).exists():
        clip, current = paths.clip(s.key), True
    elif s.artifact and paths.clip(Path(s.artifact).stem).exists():
        clip = paths.clip(Path(s.artifact).stem)  # an earlier version: its inputs have changed since
    keyframe = Path(s.keyframe) if s.keyframe and Path(s.keyframe).exists() else None
    thumb = _thumb(keyframe or clip, paths) if (keyframe or clip) else None
    names = lp.script.characters
    if s.state in (*NEEDS_RERUN, State.PLACEHOLDER):
        command = f"dramaforge rerun {root} --shot {s.id}" + (" --new-job" if s.state == State.UNKNOWN_JOB else "")
    elif s.state in (State.PENDING, State.STALE):
        command = f"dramaforge render {root} --episodes {episode}"
    else:
        command = None
    try:
        source = f"{Path(shot.file).resolve().relative_to(lp.root.resolve())}:{shot.line}"
    except ValueError:
        source = f"{Path(shot.file).name}:{shot.line}"
    shot_id = s.shot or s.id
    return {
        "id": shot_id, "take": s.take, "takes": [
            {"take": t.take, "state": str(t.state), "chosen": t.chosen, "identity": _identity_view(t, paths),
             "clip": _href(paths.clip(t.key), paths) if t.key and paths.clip(t.key).exists() else None,
             "pick": None if t.chosen else f"dramaforge pick {root} --shot {shot_id} --take {t.take}"}
            for t in takes] if len(takes) > 1 else [],
        "identity": _identity_view(s, paths),
        "state": str(s.state), "reason": s.reason, "attempts": s.attempts, "command": command,
        "accept": f"dramaforge accept {root} --shot {s.id} --placeholder" if s.state in (State.FAILED, State.REJECTED)
        else None,
        "size": shot.size, "camera": shot.camera, "duration_s": shot.duration_s, "transition": shot.transition,
        "location": shot.location, "time": shot.time, "action": shot.action, "card": shot.card,
        "prompt": shot.prompt, "source": source,
        "characters": [names.get(c, c) for c in shot.characters],
        "lines": [_line_view(ln, (spoken or {}).get(f"{shot_id}-l{i + 1}"), names, lp, root)
                  for i, ln in enumerate(shot.lines)],
        "clip": _href(clip, paths) if clip else None, "clip_current": current,
        "thumb": thumb, "thumb_is_keyframe": keyframe is not None,
        "references": (fit := shot_fit(shot, lp.project, video)) and {"backend": video.name, "sent": fit.sent,
                                                                      "dropped": fit.dropped},
        "lipsync": None if sync is None and not unsynced else {
            "how": "spoken by the video model" if sync is not None and sync.id.endswith("-native") else
            f"lips synced by {lp.project.backends.lipsync}",
            "state": str(sync.state) if sync is not None else None, "figure": sync.figure if sync else None,
            "low": bool(sync and sync.low), "min_sync": lp.project.dialogue.min_sync,
            "reason": sync.reason if sync else None, "not_synced": list(unsynced)},
    }


def _identity_view(s: ShotStatus, paths: BuildPaths) -> dict | None:
    """The identity check's verdict on a take, its scores and the frame that decided it (identity.check)."""
    v = s.identity
    if not v:
        return None
    frame = Path(v["frame"]) if v.get("frame") else None
    return {"verdict": v["verdict"], "why": v["why"], "scores": {c: x for c, x in v["scores"].items() if x is not None},
            "frame": _href(frame, paths) if frame is not None and frame.exists() else None}


def _line_view(ln, st, names: dict, lp: LoadedProject, root: str) -> dict:
    """One line as the page shows it: who, how, what, and its voice figure with a re-take command."""
    return {"who": names.get(ln.character, ln.character), "text": ln.text, "parenthetical": ln.parenthetical,
            "extension": ln.extension, "engine": st.engine if st else None,
            "figure": st.figure if st else None, "low": bool(st and st.low),
            "min_voice": lp.project.dialogue.min_voice,
            "retake": f"dramaforge rerun {root} --line {st.id}" if st and st.done else None}


def _href(path: Path, paths: BuildPaths) -> str:
    """A URL relative to build/review/ (every file shown lives under build/, named by us)."""
    rel = os.path.relpath(path, paths.review)
    return "/".join(quote(part) for part in Path(rel).parts)


def _thumb(source: Path, paths: BuildPaths) -> str | None:
    """A small JPEG of a keyframe or of a clip's first frame, named by the source (itself content-addressed)."""
    out = paths.thumb(source)
    if not is_done(out):
        try:
            image = _first_frame(source)
        except Exception:  # an unreadable clip shows no picture; `status` and the render report it
            return None
        image.thumbnail((THUMB_W, THUMB_W * 4))
        with atomic_path(out) as tmp:
            image.convert("RGB").save(tmp, "JPEG", quality=80)
    return _href(out, paths)


def _first_frame(source: Path):
    from PIL import Image

    if source.suffix.lower() != ".mp4":
        with Image.open(source) as im:
            return im.copy()
    import av

    with av.open(str(source)) as container:
        for frame in container.decode(video=0):
            return frame.to_image()
    raise ValueError(f"{source.name} has no video frame")


def font_css(assets: Path, text: str, family: str) -> Path:
    """A stylesheet whose @font-face is the bundled font cut down to the glyphs of `text` (inline:
    browsers refuse font files from file:// pages, but not a data: URL inside a local stylesheet)."""
    chars = "".join(sorted(set(text) | set(map(chr, range(0x20, 0x7F)))))
    path = assets / f"font-{spec_hash('review-font', {'chars': chars, 'face': face_index(family)})}.css"
    if not is_done(path):
        from fontTools import subset
        from fontTools.ttLib import TTFont

        font = TTFont(str(font_file()), fontNumber=face_index(family), lazy=True)
        options = subset.Options()
        options.hinting = False
        options.name_IDs = ["*"]
        options.notdef_outline = True
        subsetter = subset.Subsetter(options)
        subsetter.populate(text=chars)
        subsetter.subset(font)
        buf = io.BytesIO()
        font.save(buf)
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        assets.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, f'@font-face {{ font-family: "{FONT_FAMILY}"; font-display: block; '
                                f'src: url(data:font/otf;base64,{data}) format("opentype"); }}\n')
        for old in assets.glob("font-*.css"):  # pages link only the newest
            if old != path:
                old.unlink(missing_ok=True)
    return path
