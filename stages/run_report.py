"""What one render did, for people: generated, reused, failed (with why), placeholders, time, cost.

The same summary goes to Prefect (a markdown artifact and a table of shots) and to
`build/reports/<UTC time>.md` (+ `.json` for scripts), so it survives without a Prefect server.
Cost is priced with the same `rates` and rules as `dramaforge estimate`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from stages.backends.registry import BackendSet
from stages.core.artifacts import write_text_atomic
from stages.core.ledger import Ledger, State
from stages.estimate_render import UNIT, Work, price_work, total_cost
from stages.schema import Project

OUTCOMES = ("made", "reused", "placeholder", "failed", "not attempted")


def shot_table(outcomes: list[dict], ledger: Ledger) -> list[dict]:
    """One row per shot of the rendered episodes, with the ledger's reason and timing."""
    rows = []
    for o in outcomes:
        for s in o.get("shots", []):
            row = ledger.get(s["id"])
            rows.append({"episode": f"ep{o['episode']:02d}", "shot": s["id"], "outcome": s["outcome"],
                         "state": str(row.state if row else State.PENDING),
                         "reason": (row.message or "") if row and s["outcome"] != "made" else "",
                         "attempts": row.attempts if row else 0,
                         "seconds": round(row.seconds, 2) if row and row.seconds else None})
    return rows


def made_work(outcomes: list[dict], project: Project, backends: BackendSet, jobs: list | None = None,
              lipsync_jobs: list | None = None, enrolled: dict[str, list] | None = None) -> list[Work]:
    """What this run made and reused, by backend, priced with the project's rates (the backends'
    capabilities say which may charge). On a hosted video backend the bill is every paid job no
    report billed yet (`jobs`, from the job journal: this run's retries, re-creations and unknown
    ones, and those of a render killed before its report), each at the seconds and images it asked for."""
    rates = project.rates
    shots = Work("video", project.backends.video)
    images = Work("image", project.backends.image.kind)
    lines: dict[str, Work] = {}
    for o in outcomes:
        for s in o.get("shots", []):
            if s["outcome"] == "made":
                shots.todo += 1
                shots.todo_s += s.get("duration_s") or 0.0
                shots.ids.append(s["id"])
            elif s["outcome"] in ("reused", "placeholder"):
                shots.cached += 1
            images.todo += s.get("images", 0)
        images.todo += o.get("sheets_made", 0)
        for ln in o.get("speech", []):
            w = lines.setdefault(ln["engine"], Work("speech", ln["engine"]))
            if ln["reused"]:
                w.cached += 1
            else:
                w.todo += 1
                w.chars += ln["chars"]
                w.bytes += ln.get("bytes", 0)
                w.todo_s += ln["seconds"]
    shots.resolution, shots.audio = backends.video.capabilities.resolution, backends.video.capabilities.native_audio
    if backends.video.capabilities.resumable and jobs is not None:
        billed = [j for j in jobs if j.created]
        shots.jobs, shots.unknown = len(billed), sum(1 for j in billed if j.state == "unknown")
        shots.todo_s = sum(j.billed_s for j in billed)
        shots.images = sum(j.images for j in billed)
    shots.cost = price_work(shots, rates, backends.video.capabilities.billed)
    images.cost = price_work(images, rates, backends.image.capabilities.billed)
    for engine, enrollments in (enrolled or {}).items():  # each voice enrolled: a paid request, from the journal
        made = [j for j in enrollments if j.created]
        w = lines.setdefault(engine, Work("speech", engine))
        w.voices, w.unknown = len(made), sum(1 for j in made if j.state == "unknown")
    for w in lines.values():
        w.cost = price_work(w, rates, backends.speech(w.backend).capabilities.billed)
    out = [shots, *lines.values(), images]
    synced = [s for o in outcomes for s in o.get("synced", [])]
    if synced:  # lip sync: pieces sent, billed per job from the journal on a hosted backend
        lips = Work("lipsync", project.backends.lipsync)
        for s in synced:
            if s["outcome"] == "made":
                lips.todo += 1
                lips.todo_s += s["seconds"]
                lips.ids.append(s["id"])
            elif s["outcome"] == "reused":
                lips.cached += 1
        if lipsync_jobs is not None:
            billed = [j for j in lipsync_jobs if j.created]
            lips.jobs, lips.unknown = len(billed), sum(1 for j in billed if j.state == "unknown")
            lips.todo_s = sum(j.billed_s for j in billed)
        lips.cost = price_work(lips, rates, backends.lipsync.capabilities.billed)
        out.append(lips)
    return out


def summary_markdown(title: str, project_dir: str, outcomes: list[dict], table: list[dict], wall_s: float,
                     skipped: list[int], work: list[Work] | None = None, currency: str = "USD") -> str:
    """A short markdown report: what was made and what it cost, per episode counts, then every shot
    that needs attention."""
    lines = [f"# {title}: render report", "",
             f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} · {wall_s:.1f} s · `{project_dir}`", ""]
    if skipped:
        lines += [f"Up to date before the run (not rendered): {len(skipped)} episode(s).", ""]
    if work is not None:
        lines += _made_lines(work, currency) + [""]
    lines += ["| episode | " + " | ".join(OUTCOMES) + " | cut | length |",
              "|---" * (len(OUTCOMES) + 3) + "|"]
    for o in outcomes:
        counts = Counter(s["outcome"] for s in o.get("shots", []))
        cut = "reused" if o.get("reused") else "made" if o.get("mp4") else "not assembled"
        length = f"{o['duration_s']:.1f} s" if o.get("duration_s") else ""
        lines.append(f"| ep{o['episode']:02d} | " + " | ".join(str(counts.get(k, 0)) for k in OUTCOMES)
                     + f" | {cut} | {length} |")
    unspoken = [(o["episode"], r) for o in outcomes for r in o.get("blocked", [])]
    if unspoken:
        lines += ["", "## Why episodes made no shots", ""]
        lines += [f"- ep{ep:02d}: {reason}" for ep, reason in unspoken]
    checked = [v for o in outcomes for v in o.get("identity") or []]
    if checked:  # identity.check: is the person on screen the character?
        cut = [v for v in checked if v["chosen"]]
        lines += ["", "## Identity", "",
                  f"{sum(v['verdict'] == 'match' for v in cut)} of {len(cut)} shot(s) cut from a take that matches "
                  f"its characters; {len(checked)} take(s) checked."]
        lines += [f"- `{v['id']}`{' (cut)' if v['chosen'] else ''} {v['verdict']}: {v['why']} (frame: {v['frame']})"
                  for v in checked if v["verdict"] != "match"]
    attention = [r for r in table if r["outcome"] in ("failed", "not attempted", "placeholder")]
    if attention:
        lines += ["", "## Shots that need attention", ""]
        for r in attention:
            lines.append(f"- `{r['shot']}` {r['outcome']}: {r['reason'] or 'no reason recorded'}")
        lines += ["", f"Re-run them: `dramaforge rerun {project_dir} --failed`"]
    return "\n".join(lines) + "\n"


def _made_lines(work: list[Work], currency: str) -> list[str]:
    made, kept = [], []
    for w in work:
        size = f", {w.todo_s:.1f} s of video" if w.kind in ("video", "lipsync") and (w.todo or w.jobs) else \
            f", {w.chars} chars" if w.kind == "speech" and w.todo else ""
        if w.jobs:
            size += f"; {w.jobs} paid job(s)" + (f", {w.unknown} of them unknown (maybe billed: see `dramaforge "
                                                 f"status`)" if w.unknown else "")
        if w.voices:
            size += f"; {w.voices} voice(s) enrolled" + (f", {w.unknown} of them unknown (maybe billed: see "
                                                         "`dramaforge status`)" if w.unknown else "")
        if w.todo or w.jobs or w.voices:
            made.append(f"{w.todo} {UNIT[w.kind]}(s) on {w.backend}{size}")
        if w.cached:
            kept.append(f"{w.cached} {UNIT[w.kind]}(s)")
    cost = total_cost(work)
    priced = [f"{w.kind} {w.cost:,.2f}" for w in work if (w.todo or w.jobs or w.voices) and w.cost is not None]
    unknown = [w.backend for w in work if (w.todo or w.jobs or w.voices) and w.cost is None]
    if cost is not None:
        spent = f"{currency} {cost:,.2f}" + (f" ({', '.join(priced)})" if priced else "")
    else:
        spent = (f"unknown: no rate for {', '.join(unknown)} (set `rates` in project.yaml)"
                 + (f"; priced: {', '.join(priced)}" if priced else ""))
    return [f"- **Made**: {'; '.join(made) or 'nothing'}", f"- **Reused**: {', '.join(kept) or 'nothing'}",
            f"- **Cost**: {spent}"]


def report_json(title: str, project_dir: str, outcomes: list[dict], table: list[dict], wall_s: float,
                skipped: list[int], work: list[Work], currency: str) -> str:
    """The same report for scripts: every shot's outcome, what was made by whom, and the cost."""
    from dataclasses import asdict

    return json.dumps({
        "title": title, "project": project_dir, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_s": round(wall_s, 2), "skipped": skipped, "currency": currency, "cost": total_cost(work),
        "made": [asdict(w) for w in work],
        "episodes": [{k: o.get(k) for k in ("episode", "mp4", "reused", "failed", "stopped", "blocked", "duration_s",
                                            "identity")} for o in outcomes],
        "shots": table}, ensure_ascii=False, indent=1)


def write_report(reports_dir: Path, markdown: str, data: str | None = None) -> Path:
    """build/reports/<UTC time>.md (and .json beside it); returns the markdown's path."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / (time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{time.time_ns() % 10**6:06d}.md")
    if data is not None:
        write_text_atomic(path.with_suffix(".json"), data + "\n")
    write_text_atomic(path, markdown)
    return path
