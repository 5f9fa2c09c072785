"""One episode, as a short numbered story of stages."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.tasks import assemble_episode_task, generate_shot_task, synthesize_speech_task
from stages.artifacts import BuildPaths
from stages.generate_shot import shot_request
from stages.load_project import load_project
from stages.make_subtitles import Cue, make_subtitles
from stages.mix_audio import mix_audio
from stages.plan_shots import plan_shots
from stages.synthesize_speech import speech_request
from stages.time_shots import time_shots, timeline
from stages.write_shotlist import write_shotlist


@flow(name="render_episode", flow_run_name="{project_dir}:ep{episode}", log_prints=False)
def render_episode(project_dir: str, episode: int) -> dict:
    """Plan, voice, time, generate, subtitle, mix and assemble one episode.

    Returns {"episode", "mp4" (None if shots failed), "failed": [shot ids]}.
    """
    # 1. the validated project and this episode's script
    lp = load_project(Path(project_dir))
    project, ep = lp.project, lp.script.episode(episode)
    paths = BuildPaths(lp.build)
    paths.make_dirs()

    # 2. shots, planned by rules
    shotlist = plan_shots(ep, project, project_dir=lp.root, characters=lp.script.characters)

    # 3. speech for every line, before any video: shots are timed from it
    speech = {shot.id: [synthesize_speech_task.submit(speech_request(ln.text, project.voice_for(ln.character)),
                                                      project.backends.speech, paths.speech)
                        for ln in shot.lines] for shot in shotlist.shots if shot.lines}
    speech = {sid: [f.result() for f in futures] for sid, futures in speech.items()}
    shotlist = time_shots(shotlist, {sid: [r.duration_s for r in rs] for sid, rs in speech.items()}, project)
    write_shotlist(shotlist, paths.shotlist(ep.id))

    # 4. every shot through the video backend
    requests = [shot_request(s, project, lp.root, lp.script.characters) for s in shotlist.shots]
    futures = generate_shot_task.map(requests, project.backends.model_dump_json(), paths.shots, paths.ledger, ep.number)
    clips = [f.result(raise_on_failure=False) for f in futures]
    failed = [r.shot_id for r, c in zip(requests, clips) if isinstance(c, BaseException)]
    if failed:  # the ledger holds each reason; `dramaforge status` shows them
        return {"episode": ep.number, "mp4": None, "failed": failed}

    # 5. subtitles and the dialogue track, both from one timeline
    lines = timeline(shotlist, project)
    make_subtitles([Cue(ln.start_s, ln.end_s, ln.text, ln.character) for ln in lines], project.subtitles,
                   width=project.width, height=project.height,
                   out_srt=paths.episode_srt(ep.id), out_ass=paths.episode_ass(ep.id))
    mix_audio([(ln.start_s, speech[ln.shot_id][ln.index].path) for ln in lines], shotlist.duration_s,
              paths.episode_audio(ep.id))

    # 6. one ffmpeg pass: picture, burned subtitles, sound
    out = paths.episode_mp4(ep.id)
    assemble_episode_task(clips=[c.path for c in clips], subtitles_ass=paths.episode_ass(ep.id),
                          audio_wav=paths.episode_audio(ep.id), duration_s=shotlist.duration_s,
                          project=project, out_mp4=out)
    return {"episode": ep.number, "mp4": str(out), "failed": []}
