"""Animatic benchmark: CPU seconds per shot of the offline video backend, this checkout against a previous one.

    python tests/benchmarks/bench_animatic.py [--base DIR] [--repeats 2] [--keep DIR]

What it renders: shots of the demo series (projects/demo, 1080x1920, 30 fps), their requests made as a
render makes them (`plan_work`, the rules planner where nothing is planned yet), each set to 3 s:
  two-figure dialogue  ep01-sc01-sh003  two-shot, static drift, one speaker whose lips flap 0.3-2.6 s (the goal shot)
  two figures          ep03-sc02-sh008  wide, pull-out, nobody speaking
  one figure           ep01-sc02-sh003  medium, push-in, exterior
  close-up, lip-flap   ep01-sc01-sh005  close-up, static drift, speaking 0.3-2.6 s
  no figure            ep01-sc02-sh001  establishing, pan-left, its figures taken out (the empty set)

How: `AnimaticBackend().generate(request, out.mp4)` of this checkout's stages/backends/animatic.py ("new") and,
with `--base DIR` (a checkout of the previous commit, e.g. `git worktree add /tmp/base HEAD`), of
DIR/stages/backends/animatic.py ("old"), imported by path into this same process (everything else both use is
this checkout's). Each shot is made `--repeats` times by each, old and new alternating (old first in even
rounds, new first in odd ones), into a fresh file. The time is CPU seconds, not wall: user + system of this
process and of its children (the ffmpeg that draws and encodes), from resource.getrusage deltas around the
call, so a shared, loaded machine changes it little; the minimum over the repeats is compared (the median is
printed beside it). "x realtime" = the shot's length / those CPU seconds: the speed on one core's share.
Quality: ffmpeg's `ssim` filter between the old and the new clip of the same request (All:, averaged over
every frame). For scale it also prints what x264 alone costs on the goal shot's frames with the backend's
settings (decode + encode of the new clip minus decode alone): the floor no filter graph can go under.

Goals (the last two lines): `goal animatic speed` is the goal shot's new realtime factor (>= 3x);
`goal animatic quality` is the lowest SSIM of any shot against the previous code (>= 0.98; only with --base).
Takes about a minute or two on 2 busy cores; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # this checkout's stages/

SHOT_S = 3.0
TALK = [[0.3, 2.6]]
SHOTS = [  # label, shot id, speaking spans (None: nobody speaks), keep the figures
    ("two-figure dialogue", "ep01-sc01-sh003", TALK, True),
    ("two figures", "ep03-sc02-sh008", None, True),
    ("one figure", "ep01-sc02-sh003", None, True),
    ("close-up, lip-flap", "ep01-sc01-sh005", TALK, True),
    ("no figure", "ep01-sc02-sh001", None, False),
]
GOAL_SHOT = "two-figure dialogue"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu_s() -> float:
    """User + system seconds of this process and its (waited-for) children so far."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def requests() -> dict[str, object]:
    """label -> the ShotRequest of the demo's shot, as a render would ask for it, 3 s long."""
    from stages.backends.registry import backends_for
    from stages.load_project import load_project
    from stages.plan_work import plan_work

    lp = load_project(REPO / "projects" / "demo")
    made = {}
    for ep in lp.script.episodes:
        for unit in plan_work(lp, ep.number, backends_for(lp.project, lp.root), cached_only=True).shots:
            made[unit.request.shot_id] = unit.request
    out = {}
    for label, shot_id, speaking, figures in SHOTS:
        req = made[shot_id]
        extra = {k: v for k, v in req.extra.items() if k != "speaking"}
        if speaking:
            assert any(f.speaking for f in req.figures), f"{shot_id}: nobody speaks in it"
            extra["speaking"] = speaking
        out[label] = dataclasses.replace(req, duration_s=SHOT_S, extra=extra,
                                         figures=req.figures if figures else ())
    return out


def ssim(ffmpeg: str, a: Path, b: Path) -> float:
    run = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(a), "-i", str(b), "-lavfi", "ssim",
                          "-f", "null", "-"], capture_output=True, text=True, check=True)
    return float(re.findall(r"All:([0-9.]+)", run.stderr)[-1])


def encoder_floor(ffmpeg: str, clip: Path, fps: int, work: Path, preset: str, qp: int) -> float:
    """CPU seconds x264 alone spends on `clip`'s frames with the backend's settings (one thread)."""
    def timed(args: list[str]) -> float:
        best = float("inf")
        for _ in range(2):
            start = cpu_s()
            subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-threads", "1",
                            "-i", str(clip), *args], check=True)
            best = min(best, cpu_s() - start)
        return best

    decode = timed(["-f", "null", "-"])
    both = timed(["-c:v", "libx264", "-preset", preset, "-qp", str(qp), "-g", str(fps), "-threads", "1",
                  "-pix_fmt", "yuv420p", "-an", str(work / "floor.mp4")])
    return max(0.0, both - decode)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the module docstring (the top of this file) for what is measured.")
    ap.add_argument("--base", type=Path, metavar="DIR",
                    help="a checkout of the previous commit: its animatic is the 'old' one (default: new only)")
    ap.add_argument("--repeats", type=int, default=2, help="renders of each shot by each version (default 2)")
    ap.add_argument("--keep", type=Path, metavar="DIR", help="write the clips to DIR and keep them")
    args = ap.parse_args(argv)

    from stages.core.media import ffmpeg_exe

    ffmpeg = ffmpeg_exe()
    versions = {"new": load_module("bench_animatic_new", REPO / "stages" / "backends" / "animatic.py")}
    if args.base:
        old_path = args.base.resolve() / "stages" / "backends" / "animatic.py"
        if not old_path.exists():
            ap.error(f"--base: no {old_path}")
        versions = {"old": load_module("bench_animatic_old", old_path), **versions}
    log("versions: " + ", ".join(f"{k} VERSION {m.VERSION} ({m.__file__})" for k, m in versions.items()))
    reqs = requests()

    with tempfile.TemporaryDirectory(prefix="bench-animatic-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = []
        for label, req in reqs.items():
            times = {k: [] for k in versions}
            clips = {}
            for r in range(args.repeats):
                for name in (list(versions) if r % 2 == 0 else list(versions)[::-1]):
                    out = work / f"{req.shot_id}-{name}-{r}.mp4"
                    start = cpu_s()
                    versions[name].AnimaticBackend().generate(req, out)
                    times[name].append(cpu_s() - start)
                    clips[name] = out
            quality = ssim(ffmpeg, clips["old"], clips["new"]) if "old" in versions else None
            rows.append((label, req, times, quality, clips["new"]))
            log(f"{label}: " + ", ".join(f"{k} {min(v):.2f} s" for k, v in times.items())
                + (f", SSIM {quality:.4f}" if quality is not None else ""))
        goal_req, goal_clip = next((req, clip) for label, req, _, _, clip in rows if label == GOAL_SHOT)
        backend = versions["new"].AnimaticBackend()
        floor = encoder_floor(ffmpeg, goal_clip, goal_req.fps, work, backend.preset, backend.qp)

    print(f"animatic: {SHOT_S:g} s shots at 1080x1920, {reqs[GOAL_SHOT].fps} fps; CPU s = user + sys of python + "
          f"ffmpeg, min of {args.repeats} (median in brackets); x = realtime factor (shot s / CPU s)")
    head = f"{'shot':<21}{'figures':>8}  {'camera':<10}"
    if "old" in versions:
        head += f"{'old CPU s':>17}{'old x':>7}"
    head += f"{'new CPU s':>17}{'new x':>7}"
    if "old" in versions:
        head += f"{'old/new':>9}{'SSIM':>8}"
    print(head)
    for label, req, times, quality, _ in rows:
        line = f"{label:<21}{len(req.figures):>8}  {req.camera:<10}"
        for name in versions:
            best, med = min(times[name]), statistics.median(times[name])
            line += f"{best:>9.2f} ({med:5.2f}){SHOT_S / best:>6.2f}x"
        if quality is not None:
            line += f"{min(times['old']) / min(times['new']):>8.2f}x{quality:>8.4f}"
        print(line)
    if floor:
        print(f"x264 alone on the {GOAL_SHOT} shot's frames ({backend.preset}, QP {backend.qp}, one thread): "
              f"{floor:.2f} CPU s, "
              f"so no filter graph can make that shot faster than {SHOT_S / floor:.2f}x realtime")

    speed = SHOT_S / min(next(t for label, _, t, _, _ in rows if label == GOAL_SHOT)["new"])
    print(f"goal animatic speed: {speed:.1f}x realtime (target >= 3x) {'met' if speed >= 3 else 'missed'}")
    if "old" in versions:
        worst = min(q for _, _, _, q, _ in rows)
        verdict = "met" if worst >= 0.98 else "missed"
        print(f"goal animatic quality: SSIM {worst:.3f} vs previous (target >= 0.98) {verdict}")
    else:
        print("goal animatic quality: SSIM n/a, no --base to compare with (target >= 0.98) not measured")


if __name__ == "__main__":
    main()
