"""Every benchmark in turn, then each speed goal's measured figure beside its target, one line each.

    python tests/benchmarks/goals.py [--quick] [--base DIR] [--only NAME ...]

Each benchmark is its own script (run it alone for the whole story; see its docstring) and prints
its goals as lines of the form

    goal <what>: <figure> (target <op> <limit>) met|missed|not measured

which this collects and prints again at the end, in the order below. Ratios are measured side by
side within each benchmark's own run, never against a stored figure. A goal a benchmark could not
measure here (no GPU) says so. Exit status 0 when every benchmark ran, whatever the goals say:
this is a measurement, not a test (`make test` never times anything).

--quick runs the shorter variants (about 10 minutes on 2 cores instead of about 40).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
GOAL = re.compile(r"^goal .+: .+ \(target .+\) (met|missed|not measured)\s*$")

# name -> (arguments, quick arguments, whether it measures a --base checkout beside this one)
BENCHES = {
    "incremental": (["bench_incremental.py"], ["bench_incremental.py", "--edits", "1"], True),
    "orchestration": (["bench_orchestration.py", "--episodes", "100", "--small", "10"],
                      ["bench_orchestration.py", "--episodes", "30", "--small", "3"], True),
    "animatic": (["bench_animatic.py"], ["bench_animatic.py", "--repeats", "1"], True),
    "assembly": (["bench_assembly.py", "--skip-moviepy"], ["bench_assembly.py", "--quick"], False),
    "diffusers": (["bench_diffusers.py"], ["bench_diffusers.py", "--shots", "3"], False),
}


def run(name: str, args: list[str]) -> tuple[list[str], int, float]:
    """Run one benchmark (its output passes through); its goal lines, exit status and wall time."""
    print(f"\n=== {name}: python tests/benchmarks/{' '.join(args)}", flush=True)
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(HERE / args[0]), *args[1:]], cwd=REPO, stdout=subprocess.PIPE,
                            text=True, bufsize=1)
    goals = []
    for line in proc.stdout:
        print(line, end="", flush=True)
        if GOAL.match(line.strip()):
            goals.append(line.strip())
    return goals, proc.wait(), time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter variants of each benchmark")
    ap.add_argument("--only", nargs="+", choices=sorted(BENCHES), metavar="NAME",
                    help=f"run only these ({', '.join(BENCHES)})")
    ap.add_argument("--base", type=Path, metavar="DIR", help="a checkout to measure beside this one where a "
                    "benchmark can (the 'before' figures; e.g. `git worktree add /tmp/base HEAD~5`); the animatic's "
                    "quality goal needs it")
    a = ap.parse_args(argv)
    summary, failed = [], []
    for name, (full, quick, compares) in BENCHES.items():
        if a.only and name not in a.only:
            continue
        args = (quick if a.quick else full) + (["--base", str(a.base.resolve())] if a.base and compares else [])
        goals, code, took = run(name, args)
        if code != 0:
            failed.append(name)
            goals.append(f"goal {name}: the benchmark failed (exit {code}) (target runs) not measured")
        elif not goals:
            goals.append(f"goal {name}: printed no goal line (target one per goal) not measured")
        summary += goals
        print(f"=== {name}: {took:.0f} s", flush=True)
    print("\n=== speed goals (issue 22), each measured side by side within its benchmark's run:")
    for line in summary:
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
