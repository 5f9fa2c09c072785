"""Orchestration benchmark: how much a render costs beyond the backends' own work.

    python tests/benchmarks/bench_orchestration.py [--episodes 100] [--small 10] [--base DIR] [--keep DIR]

Steps, for this checkout (and, with --base, another one, step by step in alternating order; progress on
stderr, the figures and goal lines on stdout):
  1. the first render on a fresh PREFECT_HOME: full render of a --small series (make_series.py) with the
     animatic backend (Prefect creates its database);
  2. full render of the --episodes series (the home is warm now);
  3. the same render again on the finished big series: the no-op re-render;
  4. `status`, `plan` and `estimate --json` of the rendered big series (median of 3 whole processes each).

Each render is the real CLI (`dramaforge render PROJECT`) in a child process, started as this file with
`--child`. Before anything else is imported there, it wraps, at the module where each is defined (so
every `from ... import` sees the wrapper), the backends' own work with timers:
  video     AnimaticBackend.generate      (draw the still + one ffmpeg encode)
  speech    EspeakBackend.synthesize      (eSpeak NG + writing the WAV; includes waiting for its lock)
  assemble  the episode's encode in assemble_episode: its one ffmpeg pass, or (since the mix is made while
            the pictures encode) that encode's ffmpeg and the sound's AAC beside it (their CPU, not the mix's);
            joining the two by stream copy is `mux`, pipeline work
  loudness  stages.core.loudness.normalize / normalize_samples (normalising the episode mix: ffmpeg passes
                                           or the in-memory meter and limiter; counted like assembly: media work)
Validating what they wrote (probe, decode check), hashing, the ledger, loading, planning, mixing audio
and writing subtitles are timed too, but only shown: they are the pipeline's own work.

  overhead          = wall - union of the busy intervals above (shots and lines run concurrently on
                      threads, so busy time is the union, never the sum)
  per-shot overhead = overhead / shots in the plan

"Overhead" therefore holds everything that is not a backend call: interpreter and CLI start-up,
loading and parsing the project (twice: once by the CLI, once per episode flow), planning, Prefect's
import, its ephemeral API server start-up and every flow/task-run state change, hashing and validating
(probing) every clip and WAV the backends wrote, the ledger, audio mixing, subtitles, and Prefect's
shutdown. It is the cost a user pays on top of the backends, including the fixed start-up, which
weighs less per shot the bigger the series; the figure without the Prefect start-up is printed too.

Peak RSS is the render process's own (ru_maxrss of RUSAGE_SELF, read inside the child as `main`
returns). The Prefect API server (a uvicorn subprocess), the largest ffmpeg and the whole process
tree are sampled from /proc every 0.25 s (Linux only) and shown alongside.

The no-op figure is the wall time of the whole second render process, start to exit, Prefect included.
Orchestration start = Prefect's import + finding or starting its server + the hand-off to the series
flow's body (the big render's; the first render's, less this, is what a fresh home adds). The local
Prefect server renders share (flows/prefect_server.py) is stopped after each checkout's steps; its CPU
is sampled with the render's.

The per-shot overhead and peak RSS come from the big series' full render (the fixed start-up weighs
about 10x more per shot in the small one). The timers cost microseconds per call. Other load on the
machine shows up as overhead: run it idle. The last lines are one `goal ...` line per goal of issue 22
(tests/benchmarks/goals.py collects them).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BACKEND_KINDS = ("video", "speech", "assemble", "loudness")
# pipeline work, shown but counted as overhead; summed over threads, so not exclusive of each other
INFO_KINDS = ("assemble_call", "validate", "hash", "ledger", "load", "plan", "mix", "subtitles", "connect", "mux")
# (assemble_call and mix contain the assemble and loudness busy time; the rest is pipeline work)


# --- the child: one instrumented `dramaforge render` -----------------------------------------------

def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _child(out_json: str, cli_args: list[str]) -> None:
    """Run the CLI with the backends timed; write what was seen to `out_json`, then exit as the CLI did."""
    import contextlib
    import functools
    import importlib.abc
    import importlib.util
    import resource

    t0 = time.monotonic()
    intervals: list[tuple[str, float, float]] = []  # list.append is atomic under the GIL: threads are safe
    events: list[tuple[str, float]] = []
    patched: list[str] = []

    def timed(kind, fn):
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            s, cpu = time.monotonic(), time.thread_time() + _children_cpu()
            try:
                return fn(*a, **kw)
            finally:  # CPU: this thread's, and the children reaped meanwhile (its ffmpeg; rarely another's)
                intervals.append((kind, s, time.monotonic(), time.thread_time() + _children_cpu() - cpu))
        return wrapper

    def noted(name, fn, when=lambda *a, **kw: True):
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            if when(*a, **kw):
                events.append((name, time.monotonic()))
            return fn(*a, **kw)
        return wrapper

    def patch_attr(obj, attr, make):
        setattr(obj, attr, make(getattr(obj, attr)))
        patched.append(f"{getattr(obj, '__name__', obj)}.{attr}")

    def patch_methods(cls, names, kind):
        for n in names:
            if hasattr(cls, n):
                patch_attr(cls, n, lambda f: timed(kind, f))

    def timed_factory(kind, factory):  # wav_validator() returns the check: time the check
        @functools.wraps(factory)
        def wrapper(*a, **kw):
            return timed(kind, factory(*a, **kw))
        return wrapper

    def media(m):
        patch_attr(m, "probe", lambda f: timed("validate", f))
        patch_attr(m, "decode_check", lambda f: timed("validate", f))
        patch_attr(m, "wav_validator", lambda f: timed_factory("validate", f))

    encoding = threading.local()  # inside `ffmpeg_running`: its interval counts every ffmpeg it waits on

    def encode_running(fn):  # the pictures' encode, the mix made meanwhile in this thread: its ffmpeg CPU only
        @contextlib.contextmanager
        def wrapper(*a, **kw):
            s, kids = time.monotonic(), _children_cpu()
            encoding.on = True
            try:
                with fn(*a, **kw):
                    yield
            finally:
                encoding.on = False
                intervals.append(("assemble", s, time.monotonic(), _children_cpu() - kids))
        return wrapper

    def ffmpeg_pass(fn):
        timed_pass, timed_mux = timed("assemble", fn), timed("mux", fn)

        @functools.wraps(fn)
        def wrapper(args, *a, **kw):
            if getattr(encoding, "on", False):  # the sound's AAC, beside the pictures: counted there
                return fn(args, *a, **kw)
            # joining the pictures and the sound without an encode: pipeline work the reference does not do
            return (timed_mux if "copy" in args else timed_pass)(args, *a, **kw)
        return wrapper

    def assembly(m):
        # the backend's own time is the ffmpeg encode (and the sound's AAC); the validation around it is
        # pipeline work, as for shots
        patch_attr(m, "run_ffmpeg", ffmpeg_pass)
        if hasattr(m, "ffmpeg_running"):
            patch_attr(m, "ffmpeg_running", encode_running)
        patch_attr(m, "assemble_episode", lambda f: timed("assemble_call", f))

    def artifacts(m):
        patch_attr(m, "spec_hash", lambda f: timed("hash", f))
        patch_attr(m, "file_sha256", lambda f: timed("hash", f))

    # Patched where defined, right after the module runs, so `from X import name` copies the wrapper.
    hooks = {
        "stages.backends.animatic": lambda m: patch_attr(m.AnimaticBackend, "generate",
                                                         lambda f: timed("video", f)),
        "stages.backends.espeak": lambda m: patch_attr(m.EspeakBackend, "synthesize",
                                                       lambda f: timed("speech", f)),
        "stages.assemble_episode": assembly,
        "stages.core.media": media,
        "stages.core.artifacts": artifacts,
        "stages.core.ledger": lambda m: patch_methods(m.Ledger, ("__init__", "start", "done", "fail", "get",
                                                            "reconcile", "rows"), "ledger"),
        "stages.plan_shots": lambda m: patch_attr(m, "plan_shots", lambda f: timed("plan", f)),
        "stages.core.loudness": lambda m: [patch_attr(m, n, lambda f: timed("loudness", f))
                                           for n in ("normalize", "normalize_samples") if hasattr(m, n)],
        "stages.mix_audio": lambda m: patch_attr(m, "mix_audio", lambda f: timed("mix", f)),
        "stages.make_subtitles": lambda m: patch_attr(m, "make_subtitles", lambda f: timed("subtitles", f)),
        # markers for the Prefect start-up estimate: the CLI installs its progress display just before it
        # calls the series flow, and every episode flow begins by loading the project
        "flows.progress": lambda m: patch_attr(m, "install", lambda f: noted(
            "progress.install", f, when=lambda r: r is not None)),
        "stages.load_project": lambda m: patch_attr(m, "load_project", lambda f: noted(
            "load_project", timed("load", f))),
        "prefect": lambda m: None,  # only its import time
        # finding (or starting) the local Prefect server renders share: part of starting orchestration
        "flows.prefect_server": lambda m: patch_attr(m, "connect", lambda f: timed("connect", f)),
    }

    class AfterImport(importlib.abc.MetaPathFinder):
        """Patch a module right after it executes, before anyone can import a name from it."""

        def find_spec(self, name, path, target=None):
            hook = hooks.pop(name, None)  # popped first: the find_spec below must not come back here
            if hook is None:
                return None
            spec = importlib.util.find_spec(name)
            if spec is None or spec.loader is None:
                return spec
            run = spec.loader.exec_module

            def exec_module(module):
                events.append((f"import {name} start", time.monotonic()))
                run(module)
                events.append((f"import {name} end", time.monotonic()))
                hook(module)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, AfterImport())
    code: int | str | None = 0
    try:
        sys.argv = ["dramaforge", *cli_args]
        from flows.cli import main

        main()
    except SystemExit as exc:
        code = exc.code
    finally:
        t_end = time.monotonic()
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        import flows

        Path(out_json).write_text(json.dumps({
            "t0": t0, "t_end": t_end, "intervals": intervals, "events": events, "patched": patched,
            "exit_code": code if isinstance(code, int) or code is None else 1,
            "maxrss_kb": me.ru_maxrss, "cpu_s": me.ru_utime + me.ru_stime,
            "children_maxrss_kb": kids.ru_maxrss, "children_cpu_s": kids.ru_utime + kids.ru_stime,
            "flows_path": str(Path(flows.__file__).parent),
        }))
    sys.exit(code)


# --- the parent ----------------------------------------------------------------------------------

def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class TreeSampler(threading.Thread):
    """Peak memory of a process tree from /proc: per-process VmHWM by role, and the largest sum of VmRSS."""

    def __init__(self, pid: int, every_s: float = 0.25):
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.peak_kb: dict[str, int] = {}
        self.tree_peak_kb = 0
        self.cpu_ticks: dict[int, tuple[str, int]] = {}  # pid -> (role, utime+stime), last seen
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.every_s)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def cpu_s(self, role: str) -> float:
        """CPU seconds of the processes in `role`, as last sampled (short-lived ones are missed)."""
        return sum(t for r, t in self.cpu_ticks.values() if r == role) / os.sysconf("SC_CLK_TCK")

    def sample(self) -> None:
        parent: dict[int, int] = {}
        ticks: dict[int, int] = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    stat = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()  # comm may hold spaces
                    parent[int(d)] = int(stat[1])
                    ticks[int(d)] = int(stat[11]) + int(stat[12])  # utime + stime
                except (OSError, IndexError, ValueError):
                    pass
        tree, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            tree.append(p)
            todo.extend(c for c, pp in parent.items() if pp == p)
        total = 0
        for p in tree:
            try:
                status = Path(f"/proc/{p}/status").read_text()
                cmd = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            if not cmd:  # a zombie: no memory left, and its cmdline no longer tells its role
                continue
            fields = {k: v for k, _, v in (ln.partition(":") for ln in status.splitlines())}
            hwm, rss = (int(fields.get(k, "0 kB").split()[0]) for k in ("VmHWM", "VmRSS"))
            total += rss
            role = ("render" if p == self.pid else "prefect server" if "prefect.server" in cmd or "uvicorn" in cmd
                    else "ffmpeg" if "ffmpeg" in cmd.split(" ", 1)[0] else "other")
            self.peak_kb[role] = max(self.peak_kb.get(role, 0), hwm)
            self.cpu_ticks[p] = (role, max(ticks.get(p, 0), self.cpu_ticks.get(p, (role, 0))[1]))
        self.tree_peak_kb = max(self.tree_peak_kb, total)


def child_env(prefect_home: Path, code: Path = REPO) -> dict[str, str]:
    env = os.environ.copy()
    env.pop("PREFECT_API_URL", None)  # the default a user gets: the local server renders share
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # a user's Python caches compiled modules (0.35 s a command here)
    # `code`'s checkout, never whatever an editable install points at
    env["PYTHONPATH"] = os.pathsep.join([str(code), *filter(None, [env.get("PYTHONPATH")])])
    env.update({"PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_LOGGING_LEVEL": "WARNING", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1",
                # the CLI's own start-up wait (flows/run.py), for any Prefect server started here
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120", "BENCH_CODE": str(code)})
    return env


def shared_server_cpu(env: dict) -> float:
    """CPU seconds used so far by the local Prefect server renders share (flows/prefect_server.py), if any."""
    try:
        pid = json.loads((Path(env["PREFECT_HOME"]) / "dramaforge-server.json").read_text())["pid"]
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, KeyError, IndexError):
        return 0.0


def stop_shared_server(env: dict) -> None:
    subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from flows.prefect_server import stop; "
                    "stop(Path(sys.argv[1]))", env["PREFECT_HOME"]], env=env, cwd=env["BENCH_CODE"],
                   capture_output=True)


def cli_json(env: dict, *args: str) -> object:
    proc = subprocess.run([sys.executable, "-m", "flows.cli", *args], env=env, cwd=env["BENCH_CODE"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"dramaforge {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout) if "--json" in args else None


def cli_seconds(env: dict, *args: str, repeats: int = 3) -> float:
    """The median wall time of a whole `dramaforge ARGS` process (interpreter start to exit)."""
    times = []
    for _ in range(repeats):
        t = time.monotonic()
        cli_json(env, *args)
        times.append(time.monotonic() - t)
    return sorted(times)[len(times) // 2]


def union_s(spans: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for s, e in sorted(spans):
        if e > end:
            total += e - max(s, end)
            end = e
    return total


def render(project: Path, label: str, env: dict, work: Path) -> dict:
    """One instrumented `dramaforge render PROJECT`, measured from outside and inside."""
    out, logfile = work / f"{label}.json", work / f"{label}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(out), "render", str(project)]
    server_cpu0 = shared_server_cpu(env)
    with open(logfile, "w") as logf:
        t_start = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, cwd=env["BENCH_CODE"], stdout=logf, stderr=subprocess.STDOUT)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        # the child's CPU, its interpreter's teardown included (the child's own figures stop at main()'s end)
        _, status, usage = os.wait4(proc.pid, 0)
        rc = proc.returncode = os.waitstatus_to_exitcode(status)
        t_stop = time.monotonic()
        sampler.stop()
    text = logfile.read_text(errors="replace")
    if rc != 0 or not out.exists():
        raise SystemExit(f"{label}: render exited {rc}; log {logfile}:\n{text[-3000:]}")
    d = json.loads(out.read_text())
    if Path(d["flows_path"]).resolve().parent != Path(env["BENCH_CODE"]).resolve():
        log(f"warning: the render imported {d['flows_path']}, not this checkout's flows")
    spans = {k: [(s, e) for kind, s, e, _ in d["intervals"] if kind == k] for k in (*BACKEND_KINDS, *INFO_KINDS)}
    media_cpu = sum(c for kind, _, _, c in d["intervals"] if kind in BACKEND_KINDS)
    busy = union_s([sp for k in BACKEND_KINDS for sp in spans[k]])
    ev: dict[str, list[float]] = {}
    for name, t in d["events"]:
        ev.setdefault(name, []).append(t)
    r = {"label": label, "wall_s": t_stop - t_start, "busy_s": busy, "log": str(logfile),
         "calls": {k: len(v) for k, v in spans.items()},
         "sum_s": {k: sum(e - s for s, e in v) for k, v in spans.items()},
         "interp_start_s": d["t0"] - t_start, "teardown_s": t_stop - d["t_end"],
         "cpu_s": usage.ru_utime + usage.ru_stime - d["children_cpu_s"], "children_cpu_s": d["children_cpu_s"],
         "rss_mb": d["maxrss_kb"] / 1024, "children_rss_mb": d["children_maxrss_kb"] / 1024,
         "sampled_mb": {k: v / 1024 for k, v in sampler.peak_kb.items()}, "tree_mb": sampler.tree_peak_kb / 1024,
         "server_cpu_s": sampler.cpu_s("prefect server") + shared_server_cpu(env) - server_cpu0,
         "media_cpu_s": media_cpu,
         "patched": d["patched"], "flows_path": d["flows_path"]}
    r["overhead_s"] = r["wall_s"] - busy
    if "import prefect start" in ev:
        r["prefect_import_s"] = ev["import prefect end"][0] - ev["import prefect start"][0]
    # Prefect start-up: from the CLI handing over to the series flow, to that flow's body (its first
    # call loads the project)
    if "progress.install" in ev:
        handoff = ev["progress.install"][0]
        later = [t for t in ev.get("load_project", []) if t > handoff]
        if later:
            r["prefect_startup_s"] = later[0] - handoff
    if ev.get("load_project"):
        r["to_first_load_s"] = ev["load_project"][0] - t_start
    return r


def describe(r: dict, shots: int | None = None) -> str:
    c, s = r["calls"], r["sum_s"]
    lines = [f"  wall {r['wall_s']:.1f}s = backend busy (union) {r['busy_s']:.1f}s + overhead {r['overhead_s']:.1f}s"]
    lines.append("  backend calls: " + ", ".join(f"{k} {c[k]} x, {s[k]:.1f}s summed" for k in BACKEND_KINDS))
    lines.append("  pipeline work inside overhead (summed over threads): "
                 + ", ".join(f"{k} {c[k]} x {s[k]:.1f}s" for k in INFO_KINDS))
    parts = [f"interpreter start {r['interp_start_s']:.2f}s"]
    if "to_first_load_s" in r:
        parts.append(f"process start to CLI loading the project {r['to_first_load_s']:.2f}s")
    if "prefect_import_s" in r:
        parts.append(f"prefect import {r['prefect_import_s']:.1f}s")
    else:
        parts.append("prefect not imported")
    if r["sum_s"]["connect"]:
        parts.append(f"finding or starting the shared Prefect server {r['sum_s']['connect']:.1f}s")
    if "prefect_startup_s" in r:
        parts.append(f"Prefect start-up (hand-off to the series flow's body) {r['prefect_startup_s']:.1f}s")
    parts.append(f"exit/teardown after main {r['teardown_s']:.1f}s")
    lines.append("  " + "; ".join(parts))
    if shots:
        fixed = orchestration_start(r)
        lines.append(f"  per-shot overhead {1000 * r['overhead_s'] / shots:.0f} ms over {shots} shots "
                     f"({1000 * (r['overhead_s'] - fixed) / shots:.0f} ms without Prefect import + start-up)")
    sm = r["sampled_mb"]
    lines.append(f"  peak RSS: render process {r['rss_mb']:.0f} MB (ru_maxrss); sampled: Prefect server "
                 f"{sm.get('prefect server', 0):.0f} MB, largest ffmpeg {sm.get('ffmpeg', 0):.0f} MB, "
                 f"whole tree {r['tree_mb']:.0f} MB; CPU: render process {r['cpu_s']:.1f}s, "
                 f"Prefect server {r['server_cpu_s']:.1f}s (sampled), other children {r['children_cpu_s']:.1f}s")
    return "\n".join(lines)


def series(n: int, dest: Path, env: dict, lines_per_episode: int) -> tuple[Path, int, int]:
    """Write the series; return it with its planned shot and line counts."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from make_series import make_series

    make_series(n, dest, lines_per_episode=lines_per_episode)
    plans = cli_json(env, "plan", str(dest), "--json")
    return dest, sum(len(p["shots"]) for p in plans), sum(len(s["lines"]) for p in plans for s in p["shots"])


def check_done(project: Path, env: dict, shots: int) -> None:
    st = cli_json(env, "status", str(project), "--json")
    states = [s["state"] for e in st["episodes"] for s in e["shots"]]
    if len(states) != shots or any(s != "done" for s in states):
        counts = {s: states.count(s) for s in set(states)}
        raise SystemExit(f"{project}: expected {shots} done shots, status says {counts}")
    missing = [e["id"] for e in st["episodes"] if not (project / "build" / "episodes" / f"{e['id']}.mp4").exists()]
    if missing:
        raise SystemExit(f"{project}: episodes not assembled: {', '.join(missing)}")


def measure(code: Path, work: Path, a, step) -> dict:
    """Every step for one checkout: a generator, advanced one step at a time so two checkouts alternate."""
    env = child_env(work / "prefect-home", code)
    out: dict = {"code": code}
    try:
        if a.small:  # the first render on a fresh PREFECT_HOME: Prefect creates its database
            proj, shots, lines = series(a.small, work / f"series-{a.small}", env, a.lines_per_episode)
            yield f"first render on a fresh home, {a.small} episodes ({shots} shots, {lines} lines)"
            out["small"] = render(proj, f"small-{a.small}-full", env, work)
            check_done(proj, env, shots)
            out["small"]["shots"] = shots
            log(f"{code}: first render (fresh home), {a.small} episodes:\n{describe(out['small'], shots)}")
        proj, shots, lines = series(a.episodes, work / f"series-{a.episodes}", env, a.lines_per_episode)
        out["series"] = (shots, lines)
        yield f"full render, {a.episodes} episodes ({shots} shots, {lines} lines)"
        out["big"] = render(proj, f"big-{a.episodes}-full", env, work)
        check_done(proj, env, shots)
        log(f"{code}: full render, {a.episodes} episodes:\n{describe(out['big'], shots)}")
        if out["big"]["calls"]["video"] < shots or out["big"]["calls"]["speech"] < lines:
            log(f"warning: fewer timed backend calls than planned work; patched: {', '.join(out['big']['patched'])}")
        yield f"no-op re-render, {a.episodes} episodes"
        out["noop"] = render(proj, f"big-{a.episodes}-noop", env, work)
        check_done(proj, env, shots)
        log(f"{code}: no-op re-render:\n{describe(out['noop'])}")
        if out["noop"]["calls"]["video"] or out["noop"]["calls"]["speech"]:
            log("warning: the no-op re-render called a backend again (see the calls above)")
        yield f"status, plan and estimate of the rendered {a.episodes}-episode series"
        for command in ("status", "plan", "estimate"):
            out[command] = cli_seconds(env, command, str(proj), "--json")
        yield "done"
    finally:
        stop_shared_server(env)
        step["result"] = out


def orchestration_start(r: dict) -> float:
    """Prefect's import, finding or starting its server, and the hand-off to the series flow's body."""
    return r.get("prefect_import_s", 0) + r["sum_s"]["connect"] + r.get("prefect_startup_s", 0)


def figures(m: dict) -> dict:
    """The goal figures of one checkout's measurements."""
    shots = m["series"][0]
    big = m["big"]
    start = orchestration_start(big)
    f = {"per-shot overhead ms": 1000 * big["overhead_s"] / shots, "orchestration start s": start,
         "no-op render s": m["noop"]["wall_s"], "status s": m["status"], "plan s": m["plan"],
         "estimate s": m["estimate"],
         "CPU: render + Prefect server s": big["cpu_s"] + big["server_cpu_s"], "peak RSS MB": big["rss_mb"]}
    if "small" in m:
        first = orchestration_start(m["small"])
        f["first render's extra start s"] = first - start
    return f


GOALS = [  # figure, target, what the goal line calls it
    ("per-shot overhead ms", 20, "orchestration overhead per shot, {n}-episode render: {v:.0f} ms"),
    ("orchestration start s", 2, "orchestration start, warm home: {v:.1f} s"),
    ("first render's extra start s", 10, "first render on a fresh home, slower than the next by: {v:.1f} s"),
    ("no-op render s", 1, "no-op render of the rendered {n}-episode series: {v:.2f} s"),
    ("status s", 1, "status of the rendered {n}-episode series: {v:.2f} s"),
    ("plan s", 1, "plan of the rendered {n}-episode series: {v:.2f} s"),
    ("estimate s", 1, "estimate of the rendered {n}-episode series: {v:.2f} s"),
]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=100, help="episodes in the big series (default 100)")
    ap.add_argument("--small", type=int, default=10, help="episodes in the first render, on a fresh Prefect home "
                                                          "(default 10; 0 skips it)")
    ap.add_argument("--lines-per-episode", type=int, default=4, help="passed to make_series.py (default 4)")
    ap.add_argument("--base", type=Path, metavar="DIR", help="another checkout (e.g. `git worktree add /tmp/base "
                    "HEAD~3`) measured step by step beside this one, in alternating order")
    ap.add_argument("--keep", type=Path, metavar="DIR", help="work here and keep the projects and logs "
                                                                  "(default: a temp dir, removed)")
    a = ap.parse_args(argv)

    t_all = time.monotonic()
    work = a.keep.resolve() if a.keep else Path(tempfile.mkdtemp(prefix="dramaforge-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if a.keep and any(work.iterdir()):
        raise SystemExit(f"--keep {work}: the folder must be empty (a finished series would not be re-rendered)")
    codes = [("this", REPO)] + ([("base", a.base.resolve())] if a.base else [])
    runs = {}
    try:
        log(f"work dir {work}; code from {', '.join(f'{n} {c}' for n, c in codes)} ({os.cpu_count()} CPUs)")
        steps = {n: {} for n, _ in codes}
        runs = {n: measure(c, work / n, a, steps[n]) for n, c in codes}
        for i in itertools.count():
            order = codes if i % 2 == 0 else codes[::-1]  # alternate who goes first: drifting load falls on both
            said = [(n, next(runs[n], None)) for n, _ in order]
            for n, what in said:
                if what and what != "done":
                    log(f"[{n}] {what}…")
            if all(w in (None, "done") for _, w in said):
                break
        for gen in runs.values():
            gen.close()  # each stops its Prefect server and hands over its figures
        got = {n: figures(steps[n]["result"]) for n, _ in codes}
        log(f"total benchmark wall time {time.monotonic() - t_all:.0f}s")
        shots, lines = steps["this"]["result"]["series"]
        print(f"series: {a.episodes} episodes, {shots} shots, {lines} lines; first render: {a.small} episodes")
        print(f"{'figure':<34}" + "".join(f"{n:>12}" for n, _ in codes))
        for k in got["this"]:
            print(f"{k:<34}" + "".join(f"{got[n].get(k, float('nan')):>12.2f}" for n, _ in codes))
        for key, target, words in GOALS:
            if key not in got["this"]:
                print(f"goal {words.split(':')[0].format(n=a.episodes)}: no first render (--small 0) "
                      f"(target <= {target}) not measured")
                continue
            v = got["this"][key]
            before = f"; before {got['base'][key]:.2f}" if "base" in got and key in got["base"] else ""
            print(f"goal {words.format(n=a.episodes, v=v)}{before} (target <= {target}) "
                  f"{'met' if v <= target else 'missed'}", flush=True)
    finally:
        for gen in runs.values():
            gen.close()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3:])
    else:
        main()
