"""One episode, as a short numbered story of stages."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, unmapped

from flows.tasks import (EpisodeStopped, assemble_episode_task, generate_shot_task, image_backend,
                         make_references_task, synthesize_speech_task, video_backend)
from stages.core.paths import BuildPaths
from stages.assemble_episode import plan_cut
from stages.generate_shot import planned_requests, wants_references
from stages.load_project import load_project
from stages.plan_shots import plan_shots
from stages.synthesize_speech import speech_engine, speech_request
from stages.time_shots import time_shots
from stages.write_shotlist import write_shotlist


@flow(name="render_episode", flow_run_name="{project_dir}:ep{episode}", log_prints=False)
def render_episode(project_dir: str, episode: int) -> dict:
    """Plan, voice, time, generate, subtitle, mix and assemble one episode.

    Returns {"episode", "mp4" (None if shots failed), "reused" (the cut was already made),
    "failed": [shot ids], "stopped": [shot ids not attempted after the failed-shot limit],
    "blocked": [why no shot was attempted: unspeakable lines (with episode, scene, file:line) or
    reference sheets that could not be made], "shots": [{id, outcome, duration_s, images}],
    "speech": [{engine, chars, seconds, reused}], "sheets_made": images made for reference sheets}.
    """
    # 1. the validated project and this episode's script
    started = time.time()
    lp = load_project(Path(project_dir))
    project, ep = lp.project, lp.script.episode(episode)
    paths = BuildPaths(lp.build)
    paths.make_dirs()

    # 2. shots, planned by rules
    shotlist = plan_shots(ep, project, project_dir=lp.root, characters=lp.script.characters)

    # 3. speech for every line, before any video: shots are timed from it
    config = project.backends.model_dump_json()
    speech = {shot.id: [synthesize_speech_task.submit(
        speech_request(ln.text, ln.character, project, lp.root, parenthetical=ln.parenthetical,
                       extension=ln.extension),
        speech_engine(project, ln.character), config, paths.speech, paths.ledger, f"{shot.id}-l{i + 1}",
        ep.number, f"episode {ep.number}, scene {shot.scene}, {ln.file}:{ln.line}")
        for i, ln in enumerate(shot.lines)] for shot in shotlist.shots if shot.lines}
    speech = {sid: [f.result(raise_on_failure=False) for f in futures] for sid, futures in speech.items()}
    spoken = [{"engine": speech_engine(project, ln.character), "chars": len(ln.text), "reused": r.reused,
               "seconds": r.duration_s} for shot in shotlist.shots if shot.lines
              for ln, r in zip(shot.lines, speech[shot.id]) if not isinstance(r, BaseException)]
    unspoken = [str(r) for rs in speech.values() for r in rs if isinstance(r, BaseException)]
    if unspoken:  # no video is paid for until every line has a voice (each reason is in the ledger too)
        return {"episode": ep.number, "mp4": None, "reused": False, "failed": [], "stopped": [], "shots": [],
                "blocked": unspoken, "duration_s": None, "speech": spoken, "sheets_made": 0}
    shotlist = time_shots(shotlist, {sid: [r.duration_s for r in rs] for sid, rs in speech.items()}, project)
    write_shotlist(shotlist, paths.shotlist(ep.id))

    # 4. the reference sheet of everyone on screen (made once), then every shot through the video
    #    backend (its keyframe first, if it starts from one) within its concurrency, rate and failure limits
    video_json, image_json = project.backends.model_dump_json(), project.backends.image.model_dump_json()
    video, image = video_backend(video_json), image_backend(image_json)
    if wants_references(video, image):
        cast = dict.fromkeys(c for s in shotlist.shots for c in s.characters if c in {m.id for m in project.cast})
        sheets = [make_references_task.submit(cid, ep.number, project, lp.root, image_json, paths.characters)
                  for cid in cast]
        sheets = [f.result(raise_on_failure=False) for f in sheets]
        missing = [str(r) for r in sheets if isinstance(r, BaseException)]
        sheets_made = sum(r[1] for r in sheets if not isinstance(r, BaseException))
        if missing:
            return {"episode": ep.number, "mp4": None, "reused": False, "failed": [], "stopped": [], "shots": [],
                    "blocked": [f"reference sheet: {m}" for m in missing], "duration_s": None, "speech": spoken,
                    "sheets_made": sheets_made}
    else:
        sheets_made = 0
    requests = planned_requests(shotlist.shots, project, lp.root, lp.script.characters, video, image, paths)
    futures = generate_shot_task.map(requests, video_json, unmapped(project.limits), paths.shots, paths.ledger,
                                     ep.number, started, image_json)
    clips = [f.result(raise_on_failure=False) for f in futures]
    shots = [{"id": r.shot_id, "outcome": _outcome(c), "duration_s": r.duration_s,
              "images": 0 if isinstance(c, BaseException) else c.images_made} for r, c in zip(requests, clips)]
    made = {"speech": spoken, "sheets_made": sheets_made}
    stopped = [r.shot_id for r, c in zip(requests, clips) if isinstance(c, EpisodeStopped)]
    failed = [r.shot_id for r, c in zip(requests, clips) if isinstance(c, BaseException)
              and not isinstance(c, EpisodeStopped)]
    if failed or stopped:  # the ledger holds each reason; `dramaforge status` shows them
        return {"episode": ep.number, "mp4": None, "reused": False, "failed": failed, "stopped": stopped,
                "shots": shots, "duration_s": shotlist.duration_s, **made}

    # 5. the cut: every clip, line, start time, cue and setting that shapes the finished episode
    cut = plan_cut(shotlist, [c.key for c in clips], [c.path for c in clips],
                   {(sid, i): (r.key, r.path) for sid, rs in speech.items() for i, r in enumerate(rs)},
                   project, lp.root, series=lp.script.title or project.title, episode_title=ep.title,
                   final=ep.number == lp.script.episodes[-1].number)

    # 6. subtitles, the sound mix and one ffmpeg pass, unless this exact cut exists
    out, reused = assemble_episode_task(cut, ep.id, ep.number, project, paths, lp.script.title or project.title,
                                         lp.root, shotlist, ep.title)
    return {"episode": ep.number, "mp4": str(out), "reused": reused, "failed": [], "stopped": [],
            "shots": shots, "duration_s": shotlist.duration_s, **made}


def _outcome(clip) -> str:
    if isinstance(clip, EpisodeStopped):
        return "not attempted"
    if isinstance(clip, BaseException):
        return "failed"
    return "placeholder" if clip.placeholder else "reused" if clip.reused else "made"
