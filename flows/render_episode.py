"""One episode, as a short numbered story of stages over its work plan."""

from __future__ import annotations

import time
from pathlib import Path

from flows.farm_runs import run_pictures
from flows.limits import shared
from flows.plain_flow import flow
from flows.tasks import (EpisodeStopped, as_is, cut_episode, cutting, each, enroll, identify, make_sheets, make_shot,
                         map_new, same, speak_line, spoken, sync_shot, translate_dub, translate_episode)
from stages.backends.registry import backends_for
from stages.check_identity import identity_outcomes
from stages.core.errors import EnvironmentFailure
from stages.core.ledger import Ledger
from stages.core.paths import BuildPaths
from stages.load_project import load_project
from stages.plan_work import plan_work
from stages.project_status import cut_made
from stages.reuse import kept_clip, kept_take, pictures_kept
from stages.sync_lips import drop_synced
from stages.write_shotlist import editing, write_shotlist


@flow(name="render_episode", flow_run_name="{project_dir}:ep{episode}", log_prints=False)
def render_episode(project_dir: str, episode: int, remake: list[str] | None = None,
                   command_root: str | None = None, requested_at: float | None = None,
                   farm: str | None = None, pictures_via: str | None = None,
                   languages: list[str] | None = None) -> dict:
    """Voice, time, generate, subtitle, mix and assemble one episode; `remake` names shots to make
    anew (`rerun --shot`) unless their clip is newer than `requested_at`, `command_root` is the project
    as the user typed it (for messages); `farm`: the token of a render spread over machines (its units
    take the backends' limits from the Prefect server, and check they see the build folder it names);
    `pictures_via`: the deployment that makes its reference sheets, shots and lip sync (on the pool those
    backends declare: a GPU worker's), while its speech and its cut are made here; `languages`: the dubs
    to make (default: every one `languages:` lists).

    Returns {"episode", "mp4" (None if shots failed), "reused" (the cut was already made),
    "failed": [shot ids], "stopped": [shot ids not attempted after the failed-shot limit],
    "blocked": [why no shot was attempted: unspeakable lines (with episode, scene, file:line) or
    reference sheets that could not be made], "shots": [{id, outcome, duration_s, images}],
    "speech": [{engine, chars, seconds, reused}], "sheets_made": images made for reference sheets,
    "dubs": [{language, mp4, reused, held, failed or blocked}]}.
    """
    outcome = _episode(project_dir, episode, remake, command_root, requested_at, farm, pictures_via, languages)
    if farm:  # a run of the episode deployment: its series run, maybe on another machine, reads it there
        from flows.farm_runs import write_outcome

        write_outcome(BuildPaths.of(Path(project_dir)).root, farm, outcome)
    return outcome


def _episode(project_dir: str, episode: int, remake: list[str] | None, command_root: str | None,
             requested_at: float | None, farm: str | None, pictures_via: str | None,
             languages: list[str] | None) -> dict:
    # 1. the validated project, its backends, and this episode's work plan
    started = time.time()
    lp = load_project(Path(project_dir)).dubbing(languages)
    paths, backends = BuildPaths(lp.build), backends_for(lp.project, lp.root)
    paths.make_dirs()
    ledger = Ledger(paths.ledger)
    work = plan_work(lp, episode, backends, placeholders=ledger.placeholders())
    outcome = {"episode": episode, "mp4": None, "reused": False, "failed": [], "stopped": [], "shots": [],
               "duration_s": None, "speech": [], "sheets_made": 0, "synced": []}

    # 2. each cloned voice enrolled (once per clip and account), then speech for every line, before
    #    any video is paid for: the shots are timed from it
    enrolled = _results(enroll.map(each(work.voices), episode, same(backends), same(paths),
                                   requested_at or started, same(command_root or project_dir))) \
        if work.voices else []
    unenrolled = [str(r) for r in enrolled if _failed(r)]
    if unenrolled:  # each reason is in the ledger too
        return {**outcome, "blocked": unenrolled}
    remade = frozenset(remake or ())
    hosted = sorted({ln.engine for ln in work.lines if backends.speech(ln.engine).capabilities.pool == "api"})
    voice_slots = {e: shared("speech", backends.speech(e), str(paths.root), farm) for e in hosted} if farm else None
    voiced = _results(map_new(speak_line, work.lines, lambda ln: kept_take(ln, ledger, paths, remade), "lines",
                              same(backends), same(paths), same(remade), same(requested_at or started),
                              same(voice_slots)))
    outcome["speech"] = [{"engine": ln.engine, "chars": len(ln.request.text), "reused": r.reused,
                          "bytes": len(ln.request.text.encode("utf-8")), "seconds": r.duration_s}
                         for ln, r in zip(work.lines, voiced) if not _failed(r)]
    unspoken = [str(r) for r in voiced if _failed(r)]
    spoken(project_dir, episode)  # the next episode may start speaking (`tasks.episodes_at_once`)
    if unspoken:  # each reason is in the ledger too
        return {**outcome, "blocked": unspoken}

    # 3. the plan again, now timed from the measured speech: every shot's length and key, the cut's
    with editing(paths.shotlist(f"ep{episode:02d}")):  # an edit made meanwhile (`edit`, the studio) is kept
        work = plan_work(lp, episode, backends, placeholders=ledger.placeholders())
        write_shotlist(work.plan, paths.shotlist(work.id))
    outcome["duration_s"] = work.plan.duration_s

    # 4-5. the pictures: reference sheets, shots, lip sync; here, or on the workers of the pool their
    #      backends declare (a render spread over machines: `flows/farm.py`)
    #      (not when every one is made: a run there would only find so)
    respoken = sorted(ln.id for ln, r in zip(work.lines, voiced) if ln.id in remade and not r.reused)
    kept = bool(pictures_via) and pictures_kept(work, ledger, paths, remade, respoken)
    made = run_pictures(pictures_via, project_dir, episode, remake, command_root, requested_at or started,
                        farm, respoken) if pictures_via and not kept else \
        pictures(lp, work, backends, ledger, paths, remade, respoken, started, command_root or project_dir,
                 requested_at or started, None if kept else farm)  # kept: no slot to take, nothing made
    new_take = made.pop("new_take")
    outcome.update(made)
    if lp.project.identity.check:  # the takes it picked are the ones cut
        work = plan_work(lp, episode, backends, placeholders=ledger.placeholders())
    if outcome.get("blocked"):
        return {**outcome, "duration_s": None}
    if outcome["failed"] or outcome["stopped"]:  # the ledger holds each reason; `dramaforge status` shows them
        return outcome

    # 6. the cut, unless this exact one exists: subtitles (translated if asked), the sound mix, the
    #    shots conformed where needed, one ffmpeg pass, then the editor's timeline and the poster (one task);
    #    the next episode starts beside it
    cutting(project_dir, episode)
    outcome["mp4"] = str(work.mp4)
    new_take = new_take or bool(respoken)  # the same keys, a new clip or take
    series, translating = lp.script.title or lp.project.title, work.translation is not None
    if not new_take and cut_made(work, ledger.get(work.id), lp.project):
        outcome["reused"] = True
    else:
        text_slots = shared("translation", backends.translation, str(paths.root), farm) \
            if farm and translating else None
        translated = translate_episode(as_is(work), as_is(backends), as_is(paths), series, text_slots) \
            if translating else None
        cut_episode(as_is(work), as_is(lp.project), as_is(paths), as_is(translated), series)

    # 7. each dub language: the lines translated, spoken in each character's voice in it, fitted to
    #    their places, and cut from the same pictures as epNN.<language>.mp4
    outcome["dubs"] = [_dub(lp, work, lang, backends, ledger, paths, remade, requested_at or started, farm, series,
                            new_take) for lang in lp.project.languages]
    return outcome


def _dub(lp, work, language: str, backends, ledger: Ledger, paths: BuildPaths, remade: frozenset,
         requested_at: float, farm: str | None, series: str, new_take: bool) -> dict:
    """One episode's dub in `language` (`stages.plan_dub`); what became of it."""
    from stages.plan_dub import plan_dub

    dub = plan_dub(lp, work, language, backends, paths)
    out = {"language": language, "mp4": None, "reused": False, "held": []}
    if dub.translated is None:
        slots = shared("translation", backends.translation, str(paths.root), farm) if farm else None
        said = _results([translate_dub.submit(as_is(dub.translation), as_is(backends),
                                              f"{series}, episode {work.number}", slots)])[0]
        if _failed(said):
            return {**out, "failed": [f"the {language} translation: {said}"]}
        dub = plan_dub(lp, work, language, backends, paths, said)
    hosted = sorted({ln.engine for ln in dub.lines if backends.speech(ln.engine).capabilities.pool == "api"})
    voice_slots = {e: shared("speech", backends.speech(e), str(paths.root), farm) for e in hosted} if farm else None
    voiced = _results(map_new(speak_line, dub.lines, lambda ln: kept_take(ln, ledger, paths, remade), "lines",
                              same(backends), same(paths), same(remade), same(requested_at), same(voice_slots)))
    unspoken = [str(r) for r in voiced if _failed(r)]
    if unspoken:
        return {**out, "blocked": unspoken}
    dub = plan_dub(lp, work, language, backends, paths)
    cut = dub.episode
    out.update(mp4=str(cut.mp4), held=[{"line": f.line, "shot": f.shot_id, "tempo": f.tempo, "overrun_s": f.overrun_s}
                                       for f in dub.fits if f.overrun_s])
    if not new_take and cut_made(cut, ledger.get(cut.id), lp.project):
        return {**out, "reused": True}
    cut_episode(as_is(cut), as_is(lp.project), as_is(paths), None, series)
    return out


def pictures(lp, work, backends, ledger: Ledger, paths: BuildPaths, remade: frozenset, respoken: list[str],
             started: float, command_root: str, requested_at: float, farm: str | None) -> dict:
    """Steps 4-5 of an episode (its plan timed from its speech): {"sheets_made", "shots", "stopped",
    "failed", "synced", "new_take" (a shot or piece made anew under the same key), "blocked" if the
    reference sheets could not be made}."""
    limits, build = lp.project.limits, str(paths.root)
    video_slots = shared("video", backends.video, build, farm, limits.video_concurrency, limits.video_per_minute) \
        if farm and work.shots else None
    sync_slots = shared("lipsync", backends.lipsync, build, farm) if farm and work.syncs else None
    made = {"sheets_made": 0, "shots": [], "stopped": [], "failed": [], "synced": [], "new_take": False}

    # 4. the reference sheet of everyone on screen (made once, reused by every shot)
    sheets = _results([make_sheets.submit(as_is(work.sheets), as_is(backends), as_is(paths))])[0] \
        if work.sheets else 0
    if _failed(sheets):
        return {**made, "blocked": [f"reference sheet: {sheets}"]}
    made["sheets_made"] = sheets

    # 5. every shot (its keyframe first, when it starts from one) within its backend's limits
    clips = _results(map_new(make_shot, work.shots, lambda u: kept_clip(u, ledger, paths, remade), "shots",
                             same(backends), same(limits), same(paths), started, same(remade),
                             same(command_root), same(requested_at), same(video_slots)))
    made["shots"] = [{"id": u.id, "outcome": _shot_outcome(c), "duration_s": u.request.duration_s,
                      "images": 0 if _failed(c) else c.images_made} for u, c in zip(work.shots, clips)]
    made["stopped"] = [u.id for u, c in zip(work.shots, clips) if isinstance(c, EpisodeStopped)]
    made["failed"] = [u.id for u, c in zip(work.shots, clips) if _failed(c) and not isinstance(c, EpisodeStopped)]
    if made["failed"] or made["stopped"]:
        return made
    made["new_take"] = any(u.id in remade and not c.reused for u, c in zip(work.shots, clips))

    # 5a. is the person on screen the character? every take checked, the best one cut (identity.check);
    #     when none matches, `on_drift: retake` makes one more take of the shot, once
    if lp.project.identity.check:
        work, retakes = _identified(lp, work, backends, ledger, paths)
        if retakes:
            again = _results(map_new(make_shot, retakes, lambda u: kept_clip(u, ledger, paths, remade), "shots",
                                     same(backends), same(limits), same(paths), started, same(remade),
                                     same(command_root), same(requested_at), same(video_slots)))
            made["shots"] += [{"id": u.id, "outcome": _shot_outcome(c), "duration_s": u.request.duration_s,
                               "images": 0 if _failed(c) else c.images_made} for u, c in zip(retakes, again)]
            made["failed"] += [u.id for u, c in zip(retakes, again) if _failed(c)]
            if made["failed"]:
                return made
            work, _ = _identified(lp, work, backends, ledger, paths)
        made["identity"] = identity_outcomes(work, lp.project, paths)

    # 5b. the speaker's lips synced to our voice in every eligible shot (dialogue: tts+lipsync); a
    #     piece over a line spoken again (`rerun --line`) is synced again to the new take
    drop_synced(work.syncs, {ln.path for ln in work.lines if ln.id in set(respoken)})
    synced = _results(sync_shot.map(each(work.syncs), same(backends), same(limits), same(paths),
                                    started, same(command_root), same(sync_slots)))
    made["synced"] = [{"id": u.shot_id, "outcome": "failed" if _failed(r) else "reused" if r.reused else "made",
                       "figure": None if _failed(r) else r.figure, "seconds": round(u.seconds(), 3)}
                      for u, r in zip(work.syncs, synced)]
    made["failed"] = [u.id for u, r in zip(work.syncs, synced) if _failed(r)]
    made["new_take"] = made["new_take"] or any(u.shot_id in remade and not r.reused
                                               for u, r in zip(work.syncs, synced))
    return made


def _identified(lp, work, backends, ledger: Ledger, paths: BuildPaths):
    """Every made take checked; then the plan again (it picks the best take by the checks), and the
    takes it adds (a retake) that are not made yet."""
    _results(identify.map(each([u for u in work.shots if u.placeholder is None and u.path and u.path.exists()]),
                          same(paths)))
    again = plan_work(lp, work.number, backends, placeholders=ledger.placeholders())
    known = {u.id for u in work.shots}
    return again, [u for u in again.shots if u.id not in known]


def _results(futures) -> list:
    """Every future's result, or the exception it ended with; a full disk or an unwritable folder
    (`EnvironmentFailure`) stops the render instead."""
    results = [f.result(raise_on_failure=False) for f in futures]
    stop = next((r for r in results if isinstance(r, EnvironmentFailure)), None)
    if stop is not None:
        raise stop
    return results


def _failed(result) -> bool:
    return isinstance(result, BaseException)


def _shot_outcome(clip) -> str:
    if isinstance(clip, EpisodeStopped):
        return "not attempted"
    if _failed(clip):
        return "failed"
    return "placeholder" if clip.placeholder else "reused" if clip.reused else "made"
