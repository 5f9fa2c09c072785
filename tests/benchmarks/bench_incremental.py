"""Incremental render benchmark: one edited line, against the media work that edit needs.

    python tests/benchmarks/bench_incremental.py [--edits 2] [--base DIR] [--keep DIR]

Setup (not measured): the demo project (projects/demo) copied to a temp folder with a fresh PREFECT_HOME,
and its episode 1 rendered once with the animatic backend (1080x1920, the demo's own settings).

Then, --edits times: one spoken line of episode 1 gets new words in script.fountain, and
`dramaforge render PROJECT -e 1` runs in a child process instrumented as bench_orchestration.py does
(the same `--child` mode). That render must remake exactly the edited line's shot and the episode's cut.

  media CPU  = CPU of the backends' own work the edit needs, each call's thread CPU plus its ffmpeg's:
               the shot's animatic (`AnimaticBackend.generate`), its line's speech (eSpeak NG), the
               episode's one encode (`run_ffmpeg` in assemble_episode) and the loudness passes, if any;
  total CPU  = the render process and all its children (reaped) + the Prefect server's CPU meanwhile
               (the shared local one sampled from /proc, or the temporary one a render starts);
  ratio      = total CPU / media CPU (goal <= 1.15), the median over the edits.
The wall-clock ratio (wall / union of the media calls) is printed too; on a shared 2-core machine CPU
seconds are the steadier measure. With --base, the same steps run for another checkout, alternating
which goes first at each step, each in its own copy and Prefect home.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

from bench_orchestration import child_env, log, render, stop_shared_server  # noqa: E402

LINE = "He can look. The last ferry left an hour ago."  # MARA's, episode 1, scene 1


def prepare(code: Path, work: Path) -> tuple[Path, dict]:
    project = work / "demo"
    shutil.copytree(REPO / "projects" / "demo", project, ignore=shutil.ignore_patterns("build"))
    env = child_env(work / "prefect-home", code)
    return project, env


def edit(project: Path, i: int) -> None:
    """Give MARA's line new words (a new speech key, so one shot and the cut are remade)."""
    script = project / "script.fountain"
    text = script.read_text(encoding="utf-8")
    old = LINE if i == 0 else f"{LINE[:-1]}, take {i}."
    if old not in text:
        raise SystemExit(f"{script}: the line to edit is not there: {old!r}")
    script.write_text(text.replace(old, f"{LINE[:-1]}, take {i + 1}."), encoding="utf-8")


def steps(name: str, code: Path, work: Path, a, out: dict):
    project, env = prepare(code, work)
    try:
        yield "setup: episode 1 rendered once"
        render(project, "setup", env, work)
        out["edits"] = []
        for i in range(a.edits):
            edit(project, i)
            yield f"edit {i + 1}: one line changed, episode 1 rendered again"
            r = render(project, f"edit-{i + 1}", env, work)
            if r["calls"]["video"] != 1 or r["calls"]["assemble"] != 1:
                log(f"[{name}] warning: the edit made {r['calls']['video']} shot(s) and {r['calls']['assemble']} "
                    f"cut(s), expected 1 and 1 (log {r['log']})")
            total = r["cpu_s"] + r["children_cpu_s"] + r["server_cpu_s"]
            out["edits"].append({"total_cpu": total, "media_cpu": r["media_cpu_s"], "wall": r["wall_s"],
                                 "busy": r["busy_s"], "start": r.get("prefect_import_s", 0) + r.get(
                                     "prefect_startup_s", 0)})
            e = out["edits"][-1]
            log(f"[{name}] edit {i + 1}: total CPU {total:.1f} s, media CPU {e['media_cpu']:.1f} s "
                f"(ratio {total / e['media_cpu']:.2f}); wall {e['wall']:.1f} s, media busy {e['busy']:.1f} s "
                f"(ratio {e['wall'] / e['busy']:.2f}); Prefect import + start {e['start']:.1f} s; CPU of the render "
                f"process {r['cpu_s']:.2f} s, its children {r['children_cpu_s']:.2f} s, the Prefect server "
                f"{r['server_cpu_s']:.2f} s")
        yield "done"
    finally:
        stop_shared_server(env)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edits", type=int, default=2, help="edits measured (default 2)")
    ap.add_argument("--base", type=Path, metavar="DIR", help="another checkout measured beside this one")
    ap.add_argument("--keep", type=Path, metavar="DIR", help="work here and keep it (default: a temp dir)")
    a = ap.parse_args(argv)
    work = a.keep.resolve() if a.keep else Path(tempfile.mkdtemp(prefix="dramaforge-incremental-"))
    codes = [("this", REPO)] + ([("base", a.base.resolve())] if a.base else [])
    outs = {n: {} for n, _ in codes}
    runs = {n: steps(n, c, work / n, a, outs[n]) for n, c in codes}
    t0 = time.monotonic()
    try:
        for i in range(2 + a.edits):
            for n, _ in (codes if i % 2 == 0 else codes[::-1]):
                what = next(runs[n])
                if what != "done":
                    log(f"[{n}] {what}…")
    finally:
        for gen in runs.values():
            gen.close()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    log(f"total {time.monotonic() - t0:.0f} s")
    ratios = {}
    for n, _ in codes:
        edits = outs[n]["edits"]
        ratios[n] = statistics.median(e["total_cpu"] / e["media_cpu"] for e in edits)
        wall = statistics.median(e["wall"] / e["busy"] for e in edits)
        print(f"{n}: edit -> episode, total CPU / media CPU {ratios[n]:.2f}, wall / media busy {wall:.2f}, "
              f"Prefect import + start {statistics.median(e['start'] for e in edits):.1f} s "
              f"(median of {len(edits)} edits)")
    v = ratios["this"]
    before = f"; before {ratios['base']:.2f}" if "base" in ratios else ""
    print(f"goal incremental render of one edited line / its media work: {v:.2f} CPU{before} (target <= 1.15) "
          f"{'met' if v <= 1.15 else 'missed'}", flush=True)


if __name__ == "__main__":
    main()
