"""What one render did, for people: generated, reused, failed (with why), placeholders, time.

The same summary goes to Prefect (a markdown artifact and a table of shots) and to
`build/reports/<UTC time>.md`, so it survives without a Prefect server.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from stages.artifacts import write_text_atomic
from stages.ledger import Ledger

OUTCOMES = ("made", "reused", "placeholder", "failed", "not attempted")


def shot_table(outcomes: list[dict], ledger: Ledger) -> list[dict]:
    """One row per shot of the rendered episodes, with the ledger's reason and timing."""
    rows = []
    for o in outcomes:
        for s in o.get("shots", []):
            row = ledger.get(s["id"])
            rows.append({"episode": f"ep{o['episode']:02d}", "shot": s["id"], "outcome": s["outcome"],
                         "state": row.state if row else "pending",
                         "reason": (row.message or "") if row and s["outcome"] != "made" else "",
                         "attempts": row.attempts if row else 0,
                         "seconds": round(row.seconds, 2) if row and row.seconds else None})
    return rows


def summary_markdown(title: str, project_dir: str, outcomes: list[dict], table: list[dict], wall_s: float,
                     skipped: list[int]) -> str:
    """A short markdown report: per episode counts, then every shot that needs attention."""
    lines = [f"# {title}: render report", "",
             f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} · {wall_s:.1f} s · `{project_dir}`", ""]
    if skipped:
        lines += [f"Up to date before the run (not rendered): {len(skipped)} episode(s).", ""]
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
    attention = [r for r in table if r["outcome"] in ("failed", "not attempted", "placeholder")]
    if attention:
        lines += ["", "## Shots that need attention", ""]
        for r in attention:
            lines.append(f"- `{r['shot']}` {r['outcome']}: {r['reason'] or 'no reason recorded'}")
        lines += ["", f"Re-run them: `dramaforge rerun {project_dir} --failed`"]
    return "\n".join(lines) + "\n"


def write_report(reports_dir: Path, markdown: str) -> Path:
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / (time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{time.time_ns() % 10**6:06d}.md")
    write_text_atomic(path, markdown)
    return path
