"""`dramaforge status` as text (or JSON): each episode's units by state, what to re-run and how, the
synced shots' figures, and the cloned voices with every line whose voice figure is flagged."""

from __future__ import annotations

import json
import shlex

from stages.core.ledger import NEEDS_RERUN, SHOWN, State


def print_status(lp, eps, project, *, as_json: bool = False) -> None:
    if as_json:
        print(json.dumps({"episodes": [{"id": e.id, "assembly": str(e.assembly), "mp4": e.mp4, "shots": [
            {"id": s.id, "shot": s.shot, "take": s.take, "chosen": s.chosen, "state": str(s.state),
             "reason": s.reason, "attempts": s.attempts, "artifact": s.artifact, "identity": s.identity}
            for s in e.shots], "lipsync": [
            {"id": s.id, "shot": s.shot, "state": str(s.state), "seconds": s.seconds, "figure": s.figure,
             "low": s.low, "reason": s.reason} for s in e.syncs],
            "not_synced": [{"shot": shot, "why": why} for shot, why in e.unsynced],
            "voices": [{"id": v.id, "character": v.character, "engine": v.engine, "state": str(v.state),
                        "voice_id": v.voice_id, "clip": v.clip, "reason": v.reason} for v in e.voices],
            "lines": [{"id": ln.id, "character": ln.character, "engine": ln.engine, "done": ln.done,
                       "seconds": round(ln.speech_s, 3), "voice_figure": ln.figure, "low": ln.low}
                      for ln in e.speech],
            "dubs": [{"id": d.id, "language": d.language, "state": str(d.state), "step": d.step, "mp4": d.mp4,
                      "lines": len(d.speech), "lines_spoken": sum(ln.done for ln in d.speech), "held": d.held}
                     for d in e.dubs]} for e in eps]},
            ensure_ascii=False, indent=1))
        return
    print(f"{'episode':<8} " + " ".join(f"{s:>11}" for s in SHOWN) + "  cut")
    for e in eps:
        print(f"{e.id:<8} " + " ".join(f"{e.count(s):>11}" for s in SHOWN) + f"  {e.assembly}")
    root = shlex.quote(str(project))
    for e in eps:
        for d in e.dubs:
            print(f"{d.id:<8} {d.language}: {d.step if d.state != State.STALE else 'stale (to cut again)'}, "
                  f"{sum(ln.done for ln in d.speech)} of {len(d.speech)} line(s) spoken")
            for h in d.held:
                print(f"  {h['line']}  {h['overrun_s']:.2f} s longer than its place at {h['tempo']:g}x: "
                      f"{h['shot']} holds its last frame {h['overrun_s']:.2f} s longer")
    for e in eps:
        for s in e.shots:
            if s.state in NEEDS_RERUN:
                print(f"{s.id}  {s.state} after {s.attempts} attempt(s): {s.reason}")
                new = " --new-job  (pays for a new job: check the provider first)" if s.state == "unknown-job" else ""
                print(f"    re-run: dramaforge rerun {root} --shot {s.id}{new}")
    for e in eps:
        if not e.syncs:
            continue
        synced = [s for s in e.syncs if s.id.endswith("-lips")]
        native = [s for s in e.syncs if s.id.endswith("-native")]
        if synced:
            print(f"{e.id} lip sync: {sum(s.state == State.DONE for s in synced)} of {len(synced)} shot(s) synced")
        if native:
            print(f"{e.id} native dialogue: {sum(s.state == State.DONE for s in native)} of {len(native)} shot(s) "
                  "spoken by the video model")
        for s in e.syncs:
            if s.low:
                print(f"  {s.shot}  sync figure {s.figure:.2f} is below dialogue.min_sync "
                      f"{lp.project.dialogue.min_sync:g}: look at it (build/review), or re-take it")
            elif s.state in NEEDS_RERUN:
                print(f"  {s.id}  {s.state}: {s.reason}")
                new = f"--shot {s.id} --new-job  (pays for a new job: check the provider first)" \
                    if s.state == "unknown-job" else "--failed"
                print(f"    re-run: dramaforge rerun {root} {new}")
    for e in eps:
        checked = [s for s in e.shots if s.identity]
        if checked:  # identity.check: what is cut, and every take that is not the character
            cut = [s for s in checked if s.chosen]
            print(f"{e.id} identity: {sum(s.identity['verdict'] == 'match' for s in cut)} of {len(cut)} shot(s) "
                  "cut from a take that matches its characters")
            for s in checked:
                if s.identity["verdict"] != "match":
                    print(f"  {s.id}{' (cut)' if s.chosen else ''}  {s.identity['verdict']}: {s.identity['why']}"
                          f"  [{s.identity['frame']}]")
    for state, what in ((State.STALE, "inputs changed since it was made"), (State.PLACEHOLDER, "a card stands in")):
        ids = [s.id for e in eps for s in e.shots if s.state == state]
        if ids:
            fix = "--stale" if state == State.STALE else " ".join(f"--shot {i}" for i in ids)
            print(f"{state}: {' '.join(ids)}  ({what}; `dramaforge rerun {root} {fix}`)")
    _print_voices(lp, eps, root)


def _print_voices(lp, eps, root: str) -> None:
    """Each cloned voice once (enrolled, or why not), then every line whose voice figure is flagged."""
    seen = {}
    for e in eps:
        for v in e.voices:
            seen.setdefault(v.id, v)
    for v in seen.values():
        where = f"voice id {v.voice_id}" if v.state == State.DONE else f"{v.state}" + (f": {v.reason}" if v.reason
                                                                                        else "")
        print(f"voice {v.character} on {v.engine} (from {v.clip}): {where}")
        if v.state == "unknown-job":
            print(f"    re-run: dramaforge rerun {root} --shot {v.id} --new-job  (pays for a new enrollment: "
                  "check the provider first)")
    measured = [ln for e in eps for ln in e.speech if ln.figure is not None]
    if not measured:
        return
    low = [ln for ln in measured if ln.low]
    print(f"voice figure: {len(measured)} line(s) measured against their reference clips, "
          f"median {sorted(ln.figure for ln in measured)[len(measured) // 2]:.2f}"
          + (f"; {len(low)} below dialogue.min_voice {lp.project.dialogue.min_voice:g}:" if low else ""))
    for ln in low:
        print(f"  {ln.id}  {ln.character} on {ln.engine}: {ln.figure:.2f}  {ln.text[:50]!r}")
        print(f"    re-take: dramaforge rerun {root} --line {ln.id}")
