"""Write a synthetic N-episode dramaforge project for benchmarks.

    python tests/benchmarks/make_series.py N [DEST] [--lines-per-episode K] [--scenes-per-episode S]
                                           [--size WxH] [--fps F] [--seed SEED]

The series is deterministic (same arguments, same files) and shaped like a real vertical short
drama: four characters, a dozen locations, each episode a few scenes with an opening action line,
short dialogue exchanges and the odd action beat, so the rule planner makes about 4-8 shots per
episode. Frames are tiny (144x256 at 12 fps by default) to keep the animatic backend cheap: the
benchmark measures orchestration, not encoding.

Dialogue lines are built from phrase tables so that nearly every line is different text: speech is
content-addressed, and repeated lines would be free cache hits that real scripts rarely get.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

CAST = [  # id, cue name, description, voice (language, variant, pitch)
    ("lin", "LIN", "a woman of twenty-eight with a sharp black bob, a white blouse and a jade bracelet",
     ("en-us", "f2", 64)),
    ("chen", "CHEN", "a tall man in his thirties with slicked-back hair and a charcoal three-piece suit",
     ("en-gb", "m3", 36)),
    ("mei", "MEI", "a girl of nineteen with twin braids, round glasses and a yellow cardigan",
     ("en-us", "f4", 78)),
    ("boss", "MR. GAO", "a heavy-set man of sixty with a grey crew cut and a gold watch",
     ("en-gb", "m1", 24)),
]

LOCATIONS = [
    ("INT.", "PENTHOUSE OFFICE"), ("INT.", "HOSPITAL CORRIDOR"), ("EXT.", "ROOFTOP"), ("INT.", "NOODLE SHOP"),
    ("EXT.", "RAINY STREET"), ("INT.", "BOARDROOM"), ("INT.", "LIN'S APARTMENT"), ("EXT.", "HARBOUR PIER"),
    ("INT.", "CAR"), ("INT.", "HOTEL LOBBY"), ("EXT.", "CEMETERY"), ("INT.", "POLICE STATION"),
]
TIMES = ["DAY", "NIGHT", "MORNING", "EVENING", "CONTINUOUS"]

OPENINGS = [
    "Rain hammers the windows.", "A phone buzzes on the table, unanswered.", "Neon flickers over wet glass.",
    "Footsteps echo, then stop.", "A door slams somewhere below.", "Steam curls from two untouched cups.",
    "A clock ticks past midnight.", "Papers lie scattered across the floor.", "Sirens wail in the distance.",
    "The lights hum and dim.", "Someone has left the window open.", "A single rose lies on the step.",
]
BEATS = [
    "{a} turns away.", "{a} slams the file shut.", "{a} grips {b}'s wrist.", "{a} stares out of the window.",
    "{a} pockets the key.", "{a} tears the letter in half.", "{a} steps closer.", "{a} laughs, without joy.",
]
PARENS = ["quietly", "coldly", "whispering", "angrily", "smiling", "through tears", "to herself", "firmly"]

# Three phrase tables with coprime sizes: line i -> (i mod 17, 7i mod 19, 11i mod 23) repeats only
# every 17*19*23 = 7429 lines.
SUBJECTS = [
    "You knew", "They said", "I saw", "She swore", "He promised", "Nobody told me", "The board thinks",
    "My father knew", "You forgot", "We both know", "The letter says", "I heard", "Everyone believes",
    "Your mother said", "The doctor said", "I never thought", "You told them",
]
CLAIMS = [
    "the contract was forged", "the baby is not his", "the money is gone", "the ring was fake",
    "you were in the car", "the will was changed", "she is still alive", "he sold the company",
    "the test came back", "the wedding is off", "the deal was a trap", "you lied to me",
    "the shares are mine", "the photo was staged", "the house is empty", "the key was copied",
    "the flight was cancelled", "the file was deleted", "the fire was no accident",
]
TAILS = [
    "and you said nothing.", "so why are you here?", "and now it is too late.", "and I can prove it.",
    "but I do not care.", "so stop pretending.", "and tonight it ends.", "and you knew it.",
    "so sign the papers.", "but that was years ago.", "and I forgave you.", "so leave, now.",
    "and it breaks my heart.", "so who are you really?", "and that changes everything.",
    "but I still love you.", "and the police are coming.", "so tell me the truth.", "and I want it back.",
    "but you cannot stop me.", "and the board agrees.", "so look me in the eye.", "and you will pay.",
]
TITLES = ["The Contract", "Secrets", "The Wedding", "Betrayal", "The Letter", "Homecoming", "The Heir",
          "Midnight", "The Test", "Revenge", "The Ring", "Truth", "The Deal", "Fallout", "The Return"]


def line_text(i: int) -> str:
    return f"{SUBJECTS[i % 17]} {CLAIMS[(7 * i) % 19]} {TAILS[(11 * i) % 23]}"


def project_yaml(n: int, width: int, height: int, fps: int, seed: int) -> str:
    cast = "\n".join(
        f"  - id: {cid}\n    name: {name}\n    description: {desc}\n"
        f"    voice: {{language: {lang}, variant: {var}, pitch: {pitch}}}"
        for cid, name, desc, (lang, var, pitch) in CAST)
    # Subtitles scaled to the small frame (the defaults assume 1080x1920).
    size_px = max(12, height // 16)
    return (f"# Synthetic {n}-episode benchmark series written by tests/benchmarks/make_series.py\n"
            f"title: Benchmark Series {n}\nlanguage: en\n"
            f"style: glossy melodrama, soft key light, vertical framing\n"
            f"script: script.fountain\nwidth: {width}\nheight: {height}\nfps: {fps}\nseed: {seed}\n"
            f"cast:\n{cast}\n"
            f"backends:\n  video: animatic\n  speech: espeak\n"
            f"subtitles: {{size_px: {size_px}, outline_px: 1, margin_bottom_px: {height // 8}}}\n")


def script(n: int, lines_per_episode: int, scenes_per_episode: int, seed: int) -> str:
    rng = random.Random(seed)
    out = [f"Title: Benchmark Series {n}", "Credit: synthetic", "Author: make_series.py", ""]
    line_no = 0
    for ep in range(1, n + 1):
        out += [f"# Episode {ep}: {TITLES[(ep - 1) % len(TITLES)]}", ""]
        scenes = max(1, min(scenes_per_episode, lines_per_episode or 1))
        # spread the episode's lines over its scenes, earlier scenes getting the remainder
        per_scene = [lines_per_episode // scenes + (1 if s < lines_per_episode % scenes else 0)
                     for s in range(scenes)]
        for k in per_scene:
            ie, place = rng.choice(LOCATIONS)
            out += [f"{ie} {place} - {rng.choice(TIMES)}", "", rng.choice(OPENINGS), ""]
            pair = rng.sample(CAST, 2)  # each scene is a two-hander, as most short-drama scenes are
            for j in range(k):
                speaker = pair[j % 2]
                if j == 2 and rng.random() < 0.5:  # an action beat mid-scene: one more shot
                    out += [rng.choice(BEATS).format(a=speaker[1], b=pair[(j + 1) % 2][1].title()), ""]
                out.append(speaker[1])
                if rng.random() < 0.25:
                    out.append(f"({rng.choice(PARENS)})")
                out += [line_text(line_no), ""]
                line_no += 1
        if ep < n:
            out += [">TO BE CONTINUED<", ""]
    return "\n".join(out)


def make_series(n: int, dest: Path, *, lines_per_episode: int = 4, scenes_per_episode: int = 2,
                width: int = 144, height: int = 256, fps: int = 12, seed: int = 11) -> Path:
    """Write DEST/project.yaml and DEST/script.fountain; refuses a DEST that holds anything else."""
    dest = Path(dest)
    if dest.exists() and any(p.name not in ("project.yaml", "script.fountain") for p in dest.iterdir()):
        raise SystemExit(f"make_series: {dest} exists and is not an empty or generated project folder")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "project.yaml").write_text(project_yaml(n, width, height, fps, seed), encoding="utf-8")
    (dest / "script.fountain").write_text(script(n, lines_per_episode, scenes_per_episode, seed),
                                          encoding="utf-8")
    return dest


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("episodes", type=int, help="number of episodes")
    ap.add_argument("dest", nargs="?", type=Path, help="project folder to write (default: ./series-N)")
    ap.add_argument("--lines-per-episode", type=int, default=4, help="dialogue lines per episode (default 4)")
    ap.add_argument("--scenes-per-episode", type=int, default=2, help="scenes per episode (default 2)")
    ap.add_argument("--size", default="144x256", help="WxH, even numbers (default 144x256)")
    ap.add_argument("--fps", type=int, default=12)
    ap.add_argument("--seed", type=int, default=11)
    a = ap.parse_args(argv)
    if a.episodes < 1:
        ap.error("episodes must be at least 1")
    w, _, h = a.size.partition("x")
    dest = make_series(a.episodes, a.dest or Path(f"series-{a.episodes}"),
                       lines_per_episode=a.lines_per_episode, scenes_per_episode=a.scenes_per_episode,
                       width=int(w), height=int(h), fps=a.fps, seed=a.seed)
    print(dest)


if __name__ == "__main__":
    sys.exit(main())
