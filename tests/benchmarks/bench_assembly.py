"""Assembly benchmark: dramaforge's episode assembly against one reference ffmpeg command (and moviepy).

    python tests/benchmarks/bench_assembly.py [--repeats 2] [--clips animatic|testsrc2] [--cuts-only]
                                              [--skip-moviepy | --moviepy-seconds N] [--keep DIR] [--quick]

Setup (not timed): a synthetic 60 s episode at 1080x1920, 30 fps: 20 shot clips of 3 s (H.264 yuv420p, drawn by the
animatic backend: stills + zoompan, figures that talk; or ffmpeg's testsrc2), 15 spoken lines (eSpeak NG, one in each
shot but every fourth), a 20 s music WAV that the mix loops under the whole episode, transitions at the scene changes
(a cross-dissolve into shots 6 and 16, a dip to black into shot 11; `--cuts-only`: none, the workload before they were
drawn in the episode pass), and a Project with cards OFF (no title/end card: the clips alone make the 60 s, so every
contestant concatenates exactly the same pictures). The Cut comes from `plan_cut` on a timed ShotList, so lines start
where the timeline puts them (each shot's start + lead-in).

Contestants, each writing a 60 s 1080x1920 H.264 (High, veryfast, CRF 20) + AAC 192k 48 kHz stereo mp4:
  A  dramaforge       the cut's tasks as `render_episode` runs them (`.fn`): ledger, SRT/VTT/ASS subtitles, conforming
                      (probes every clip; nothing to re-encode, they match the project), the one encode of the
                      pictures (concat demuxer + transitions + ASS burn) with, meanwhile, the sound mix (dialogue +
                      music looped, faded, set to its level and ducked by a gain envelope + the loudness normaliser)
                      and its AAC, then both joined (stream copy), and the validation of the result (probe + decode of
                      the tail).
  B  reference        ONE ffmpeg command doing the same work: the concat demuxer over the same clips, the same
                      transitions (dissolve windows cut out with trim, drawn by xfade, joined back with concat; the
                      dip's fades enabled on their frames), the same ASS file burned (written once in setup by the
                      same `make_subtitles`: milliseconds), and the audio built inside the same command: each speech
                      WAV placed with `adelay` and summed with `amix`, the music looped (`-stream_loop -1`), set to
                      the same level (gain measured once in setup), faded, ducked with `sidechaincompress` keyed on
                      the speech, then single-pass `loudnorm` to the project's target; same encoder settings,
                      +faststart, -t the episode length.
  C  moviepy-only     moviepy 2.2 composition of the same: concatenate_videoclips of VideoFileClips, one TextClip per
                      line (bundled Noto Sans CJK) at the bottom, CompositeAudioClip of the speech and the looped
                      music (set to the same level, dropped 12 dB while a line is spoken, no loudness normalisation),
                      write_videofile with libx264 veryfast CRF 20 and AAC; cuts only. `--moviepy-seconds N` renders
                      only the first N s and scales the time by 60/N (said so in the output).

Why it is fair: same inputs, same output format, length and encoder settings; A and B run alternately (round r: A then
B when r is even, B then A when odd) so load that drifts on a shared machine falls on both; medians are compared (wall
time; CPU time, user + sys with children, is printed beside it). A runs in this process with everything imported in
setup (Prefect too) and the music cache of `stages.mix_audio` cleared before each run, so it decodes and meters the
music every time, as a fresh render does; every run of A gets a fresh build folder (no ledger hit). B is a child
process started from here. A does more than B (the SRT/VTT files, an exact gain-envelope duck, a loudness normaliser
that lands within 0.3 LU, a validated result); that extra is what the ratio prices. The outputs' lengths, frame
counts, formats and loudness are printed to show the work is equal. They are, except the loudness: single-pass
`loudnorm` (dynamic mode under a true-peak ceiling) falls short of the target on eSpeak's peaky speech (about -18 LUFS
for -14 here), and moviepy does not normalise at all.

The last stdout lines are `assembly/ffmpeg ratio: X.XX` (A's median / B's median) and the goals:

    goal assembly: X.XX x one ffmpeg command (target <= 1.05) met|missed
    goal one lossy generation: N encode(s) between clip and episode (target 1) met|missed

The second is counted, not asserted: every x264 command A runs is recorded (lossy: CRF or QP over 1), and a shot's
chain is the episode's encode plus one if its clip there is a conformed file whose own x264 record says lossy (QP 1,
the near-lossless conform, ~72 dB PSNR, is not). Progress: stderr. Needs a few hundred MB in the temp dir; setup takes
a minute or two (2 cores), a whole run with moviepy 8-15 minutes, `--quick` (no moviepy, one round) 2-3.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # this checkout's stages/ and flows/

W, H, FPS = 1080, 1920, 30
SHOTS, SHOT_S, MUSIC_S, UNIT = 20, 3.0, 20.0, "ep01"
TRANSITIONS = {5: "dissolve", 10: "dip", 15: "dissolve"}  # shot index (0-based) -> its transition in
DISSOLVE_S, DIP_S = 0.5, 0.3  # as stages.conform_shot draws them (B's command repeats them)
NEAR_LOSSLESS_QP = 1  # an x264 encode at this QP/CRF or under is not counted as a lossy generation
CAST = [  # cue, voice (language, variant, pitch), look
    ("LIN", ("en-us", "f2", 64), "a woman of twenty-eight with a sharp black bob and a white blouse"),
    ("CHEN", ("en-gb", "m3", 36), "a tall man in his thirties with slicked-back hair and a charcoal suit"),
]
LINES = [  # short enough to fit a 3 s shot with the lead-in and lead-out (checked in setup)
    "You knew about the contract.", "I never signed anything.", "Then whose name is this?", "Someone forged it.",
    "Tell that to the board.", "They will not believe me.", "The money is gone, Chen.", "I can get it back.",
    "You lied to me again.", "I was protecting you.", "From what, exactly?", "From your own father.",
    "Leave this house tonight.", "Not without the ring.", "Then we end it here."]
CAMERAS = ["push-in", "static", "pan-left", "pull-out", "pan-right", "tilt-up", "static", "tilt-down"]
SIZES = ["wide", "medium", "close-up", "medium", "over-shoulder"]
LOCATIONS = [("ROOFTOP", "NIGHT"), ("PENTHOUSE OFFICE", "DAY"), ("RAINY STREET", "NIGHT"), ("BOARDROOM", "DAY")]


def cpu_s() -> float:
    """User + system CPU seconds of this process and its finished children so far."""
    import resource

    both = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return sum(r.ru_utime + r.ru_stime for r in both)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Setup:
    work: Path
    project_dir: Path
    project: object  # stages.schema.Project
    cut: object  # stages.units.Cut
    clips: list[Path]
    music: Path
    music_gain_db: float  # music.wav -> the project's music level (what mix_audio measures and applies)
    ass: Path  # the subtitles B burns (same make_subtitles as A)
    clip_source: str
    transitions: dict[int, str]


# --- setup ---------------------------------------------------------------------------------------

def _shot_clip(i: int, out: Path, source: str, speaking: list[tuple[float, float]]) -> Path:
    """Shot i as a 3 s 1080x1920 30 fps H.264 yuv420p clip (reused when already there and sound)."""
    from stages.core.media import probe, run_ffmpeg

    with contextlib.suppress(Exception):  # a torn file from an interrupted setup: make it again
        if out.exists() and (probe(out).width, probe(out).height, probe(out).frames) == (W, H, round(SHOT_S * FPS)):
            return out
    tmp = out.with_name(out.stem + ".part.mp4")
    if source == "testsrc2":
        run_ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size={W}x{H}:rate={FPS}:duration={SHOT_S}",
                    "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
                    "-movflags", "+faststart", str(tmp)], what=f"testsrc2 clip {i}")
    else:
        from stages.backends.animatic import AnimaticBackend
        from stages.backends.base import Figure, ShotRequest

        loc, tod = LOCATIONS[(i // 5) % len(LOCATIONS)]
        speaker = CAST[i % 2]
        figures = tuple(Figure(c[0].lower(), c[0], c[2], speaking=bool(speaking) and c is speaker) for c in CAST)
        req = ShotRequest(shot_id=f"ep01-sc{i // 5 + 1:02d}-sh{i + 1:03d}", prompt="", size=SIZES[i % len(SIZES)],
                          camera=CAMERAS[i % len(CAMERAS)], location=loc, time=tod, action="", caption="",
                          figures=figures, duration_s=SHOT_S, width=W, height=H, fps=FPS, seed=i,
                          extra={"speaking": [list(s) for s in speaking]})
        AnimaticBackend().generate(req, tmp)
    tmp.replace(out)
    return out


def _speech(k: int, text: str, out: Path) -> Path:
    from stages.backends.base import SpeechRequest
    from stages.backends.espeak import EspeakBackend

    if not out.exists():
        (lang, variant, pitch), tmp = CAST[k % 2][1], out.with_name(out.stem + ".part.wav")
        EspeakBackend().synthesize(SpeechRequest(text=text, language=lang, variant=variant, pitch=pitch, speed_wpm=175),
                                   tmp)
        tmp.replace(out)
    return out


def _music(out: Path) -> Path:
    """20 s of stereo 48 kHz 'music': a four-chord pad with a pulse, so looping and ducking are audible."""
    import numpy as np

    if out.exists():
        return out
    sr = 48_000
    t = np.arange(int(MUSIC_S * sr)) / sr
    chords = [(220.0, 277.18, 329.63), (196.0, 246.94, 293.66), (174.61, 220.0, 261.63), (196.0, 246.94, 311.13)]
    x = np.zeros_like(t)
    for j, chord in enumerate(chords):
        seg = (t >= j * MUSIC_S / 4) & (t < (j + 1) * MUSIC_S / 4)
        for f in chord:
            x[seg] += np.sin(2 * np.pi * f * t[seg]) + 0.3 * np.sin(4 * np.pi * f * t[seg])
    x *= 0.6 + 0.4 * np.sin(2 * np.pi * 2.0 * t) ** 2  # a 120 bpm pulse
    x = 0.25 * x / np.abs(x).max()
    stereo = np.stack([x, np.roll(x, 240)], axis=1)
    with wave.open(str(out), "wb") as w:
        w.setparams((2, 2, sr, 0, "NONE", "not compressed"))
        w.writeframes((stereo * 32767).round().astype("<i2").tobytes())
    return out


def setup(work: Path, clip_source: str, transitions: dict[int, str]) -> Setup:
    from stages.core.loudness import measure_ebur128
    from stages.core.paths import BuildPaths
    from stages.plan_work import plan_cut
    from stages.make_subtitles import Cue, make_subtitles
    from stages.core.media import wav_duration_s
    from stages.schema import Project, Shot, ShotLine, ShotList

    project_dir = work / "project"
    for d in (work / "clips", work / "speech", project_dir):
        d.mkdir(parents=True, exist_ok=True)
    project = Project.model_validate({
        "title": "Bench", "width": W, "height": H, "fps": FPS,
        "cards": {"opening": False, "end": False},  # the 20 clips are the whole 60 s, for every contestant
        "audio": {"music": {"file": "music.wav"}}})
    lead_in = project.timing.lead_in_s
    speaking_shots = [i for i in range(SHOTS) if i % 4 != 0]  # 15 of 20
    assert len(speaking_shots) == len(LINES)

    log(f"setup: {len(LINES)} eSpeak lines, a {MUSIC_S:.0f} s music bed…")
    wavs = [_speech(k, text, work / "speech" / f"line{k:02d}.wav") for k, text in enumerate(LINES)]
    durs = [wav_duration_s(w) for w in wavs]
    music = _music(project_dir / "music.wav")
    for text, d in zip(LINES, durs):
        if lead_in + d + project.timing.lead_out_s > SHOT_S:
            log(f"warning: line {text!r} ({d:.2f} s) overruns its {SHOT_S:.0f} s shot")

    t = time.monotonic()
    log(f"setup: {SHOTS} shot clips, {clip_source}, {W}x{H} {FPS} fps {SHOT_S:.0f} s (2 at a time)…")
    speaking = {i: [(lead_in, lead_in + durs[k])] for k, i in enumerate(speaking_shots)}
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futs = [pool.submit(_shot_clip, i, work / "clips" / f"shot{i + 1:02d}.mp4", clip_source, speaking.get(i, []))
                for i in range(SHOTS)]
        clips = [f.result() for f in futs]
    log(f"setup: clips ready in {time.monotonic() - t:.0f} s")

    shots, speech = [], {}
    for i in range(SHOTS):
        lines = []
        if i in speaking:
            k = speaking_shots.index(i)
            lines = [ShotLine(character=CAST[k % 2][0], text=LINES[k], file="bench", line=100 + k, speech_s=durs[k])]
        loc, tod = LOCATIONS[(i // 5) % len(LOCATIONS)]
        shot = Shot(id=f"ep01-sc{i // 5 + 1:02d}-sh{i + 1:03d}", episode=1, scene=i // 5 + 1,
                    size=SIZES[i % len(SIZES)], camera=CAMERAS[i % len(CAMERAS)], location=loc, time=tod,
                    duration_s=SHOT_S, file="bench", line=i + 1, lines=lines, transition=transitions.get(i, "cut"))
        shots.append(shot)
        if lines:
            speech[shot.id, 0] = (f"line{k:02d}", wavs[k])
    timed = ShotList(episode=1, title="Assembly", shots=shots)
    cut = plan_cut(timed, [c.stem for c in clips], clips, speech, project, project_dir,
                   paths=BuildPaths(project_dir / "build"), series="Bench", episode_title="Assembly")
    assert abs(cut.duration_s - SHOTS * SHOT_S) < 1e-6 and not cut.cards and cut.opening is None

    ref = work / "reference"
    ref.mkdir(exist_ok=True)
    make_subtitles([Cue(ln.start_s, ln.end_s, ln.text, ln.character) for ln in cut.lines], project.subtitles,
                   width=W, height=H, out_srt=ref / f"{UNIT}.srt", out_ass=ref / f"{UNIT}.ass", cards=cut.cards)
    gain = project.audio.music.level_lufs - measure_ebur128(music).integrated_lufs
    return Setup(work, project_dir, project, cut, clips, music, gain, ref / f"{UNIT}.ass", clip_source, transitions)


# --- A: dramaforge -------------------------------------------------------------------------------

class StageTimer:
    """Wall time of the cut's steps, by patching the names its tasks call; the clips the episode was
    made from (what `episode_clips` returned)."""

    def __init__(self) -> None:
        import flows.tasks as tasks
        import stages.mix_audio as mix

        # spent: seconds per step; within: a step timed inside another (loudness in the mix, the mix in the encode)
        self.spent, self.within, self._open, self.clips, self._orig = {}, {}, [], [], []
        # the normaliser: in memory since issue 22 (`normalize_samples`), ffmpeg passes before (`normalize`)
        loudness = "normalize_samples" if hasattr(mix, "normalize_samples") else "normalize"
        mixer = tasks if hasattr(tasks, "mix_audio") else mix  # the mix: called by `mix_audio.mix_cut` now
        for mod, name, label in ((tasks, "make_subtitles", "subtitles"), (mixer, "mix_audio", "mix"),
                                 (mix, loudness, "loudness"), (tasks, "episode_clips", "conform"),
                                 (tasks, "assemble_episode", "encode")):
            fn = getattr(mod, name)
            self._orig.append((mod, name, fn))
            setattr(mod, name, self._wrap(label, fn))

    def _wrap(self, label, fn):
        def timed(*a, **kw):
            t = time.perf_counter()
            if self._open:
                self.within[label] = self._open[-1]
            self._open.append(label)
            try:
                out = fn(*a, **kw)
                self.clips = list(out) if label == "conform" else self.clips
                return out
            finally:
                self._open.pop()
                self.spent[label] = self.spent.get(label, 0.0) + time.perf_counter() - t
        return timed

    def restore(self) -> None:
        for mod, name, fn in self._orig:
            setattr(mod, name, fn)


def lossy(cmd: list[str]) -> bool:
    """An x264 encode above near-lossless (CRF or QP over NEAR_LOSSLESS_QP; x264's default is CRF 23)."""
    opt = next((o for o in ("-qp", "-crf") if o in cmd), None)
    return opt is None or float(cmd[cmd.index(opt) + 1]) > NEAR_LOSSLESS_QP


def generations(clips: list[Path], conformed: Path) -> int:
    """Lossy encodes between a shot's clip and the episode, the most over the shots: the episode's,
    plus one where the clip the episode was made from is a file in `conformed` whose own x264 record
    (its SEI: 'crf=20.0', 'qp=1') says lossy."""
    import re

    extra = 0
    for clip in (Path(c) for c in clips):
        if clip.resolve().parent == conformed.resolve():
            m = re.search(rb"x264 - core .*? options: .*?rc=\w+.*?(?:crf|qp)=([\d.]+)", clip.read_bytes()[:1 << 20], re.S)
            extra = max(extra, int(m is None or float(m.group(1)) > NEAR_LOSSLESS_QP))
    return 1 + extra


def run_dramaforge(s: Setup, run_dir: Path) -> tuple[float, Path, StageTimer, tuple[int, int, int]]:
    from tests.conftest import assemble_cut
    from stages import mix_audio
    from stages.core.paths import BuildPaths

    shutil.rmtree(run_dir, ignore_errors=True)
    paths = BuildPaths(run_dir / "build")
    paths.make_dirs()
    mix_audio._music_source.cache_clear()  # a fresh render decodes and meters the music: so does every run
    timer, encodes, popen = StageTimer(), [], subprocess.Popen

    class Spy(subprocess.Popen):  # every x264 encode A starts, from any module, run or in the background
        def __init__(self, cmd, *a, **kw):
            if isinstance(cmd, (list, tuple)) and "libx264" in map(str, cmd):
                encodes.append([str(c) for c in cmd])
            super().__init__(cmd, *a, **kw)

    subprocess.Popen = Spy
    try:
        t = time.perf_counter()
        reused = paths.episode_mp4(UNIT).exists()
        out = assemble_cut(s.cut, None, s.project, paths, UNIT)
        dt = time.perf_counter() - t
    finally:
        subprocess.Popen = popen
        timer.restore()
    if reused:
        raise SystemExit("dramaforge reused an earlier episode: the benchmark's build folder was not fresh")
    n_lossy = sum(map(lossy, encodes))
    return dt, out, timer, (generations(timer.clips, paths.conformed), n_lossy, len(encodes) - n_lossy)


# --- B: one reference ffmpeg command ------------------------------------------------------------

def reference_transitions(transitions: dict[int, str], fps: int) -> str:
    """B's video filters before the subtitles (from [0:v], ending in ','), as one would write them in
    one command: each dissolve window cut out with trim, the outgoing last frame held (tpad) and
    cross-faded into the incoming frames (xfade), the pieces joined back (concat); a dip's fades
    enabled on their own frames. The same frames as A's."""
    if not transitions:
        return ""
    per_shot, n, half = round(SHOT_S * fps), round(DISSOLVE_S * fps), 0.5 / fps
    starts = sorted(i * per_shot for i, t in transitions.items() if t == "dissolve")
    cuts = [0] + [x for f in starts for x in (f, f + n)] + [None]  # piece j: frames cuts[j] to cuts[j + 1]
    parts = [f"settb=1/{fps},setpts=N" + (f",split={len(cuts) - 1}" if starts else "")
             + "".join(f"[vs{j}]" for j in range(len(cuts) - 1) if starts)]
    for j, (lo, hi) in enumerate(zip(cuts, cuts[1:]) if starts else ()):
        if j % 2 == 0:  # between windows: as it is
            parts.append(f"[vs{j}]trim=start_frame={lo}" + (f":end_frame={hi}" if hi else "") + f",setpts=PTS-STARTPTS[vc{j}]")
        else:
            parts.append(f"[vs{j}]trim=start_frame={lo - 1}:end_frame={hi},setpts=PTS-STARTPTS,split[vh{j}][vi{j}];"
                         f"[vh{j}]trim=end_frame=1,tpad=stop_mode=clone:stop_duration={DISSOLVE_S}[va{j}];"
                         f"[vi{j}]trim=start_frame=1,setpts=PTS-STARTPTS[vb{j}];[va{j}][vb{j}]xfade=transition=fade"
                         f":duration={DISSOLVE_S}:offset=0,format=yuv420p[vc{j}]")
    chain = ";".join(parts) + (";" + "".join(f"[vc{j}]" for j in range(len(cuts) - 1))
                               + f"concat=n={len(cuts) - 1}:v=1:a=0" if starts else "") + ","
    for b in sorted(i * SHOT_S for i, t in transitions.items() if t == "dip"):
        chain += (f"fade=t=out:st={b - DIP_S}:d={DIP_S}:enable='between(t,{b - DIP_S - half},{b - half})',"
                  f"fade=t=in:st={b}:d={DIP_S}:enable='between(t,{b - half},{b + DIP_S})',")
    return chain


def reference_command(s: Setup, out: Path) -> list[str]:
    from stages.core.fonts import fonts_dir
    from stages.core.media import escape_filter_value as esc
    from stages.core.media import ffmpeg_exe

    cut, p = s.cut, s.project
    m, e = p.audio.music, p.encoding
    lufs, tp = p.audio.target
    dur = cut.duration_s
    concat = s.work / "reference" / "concat.txt"
    concat.write_text("".join("file '" + str(c.resolve()).replace("'", "'\\''") + "'\n" for c in s.clips),
                      encoding="utf-8")
    inputs = ["-f", "concat", "-safe", "0", "-i", str(concat), "-stream_loop", "-1", "-i", str(s.music)]
    graph = [f"[0:v]{reference_transitions(s.transitions, p.fps)}subtitles=filename={esc(str(s.ass.resolve()))}"
             f":fontsdir={esc(str(fonts_dir()))},format=yuv420p[v]"]
    for k, (ln, wav) in enumerate(zip(cut.lines, cut.speech)):
        inputs += ["-i", str(wav)]
        graph.append(f"[{k + 2}:a]adelay=delays={round(ln.start_s * 1000)}:all=1[s{k}]")
    n = len(cut.lines)
    graph.append("".join(f"[s{k}]" for k in range(n))
                 + f"amix=inputs={n}:normalize=0:dropout_transition=0,apad=whole_dur={dur},asplit=2[voice][key]")
    graph.append(f"[1:a]atrim=0:{dur},asetpts=PTS-STARTPTS,volume={s.music_gain_db:.3f}dB,"
                 f"afade=t=in:d={m.fade_s},afade=t=out:st={dur - m.fade_s}:d={m.fade_s}[bed]")
    # about the same drop as the mix's duck_db under speech, with its attack and release
    graph.append(f"[bed][key]sidechaincompress=threshold=0.02:ratio=8:attack={m.attack_s * 1000:.0f}"
                 f":release={m.release_s * 1000:.0f}[ducked]")
    graph.append(f"[voice][ducked]amix=inputs=2:normalize=0:duration=first,"
                 f"loudnorm=I={lufs}:TP={tp}:LRA=11,aresample=48000[a]")
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *inputs,
            "-filter_complex", ";".join(graph), "-map", "[v]", "-map", "[a]", "-r", str(p.fps),
            "-c:v", "libx264", "-profile:v", "high", "-preset", e.x264_preset, "-crf", str(e.crf),
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", f"{e.audio_kbps}k", "-ar", "48000", "-ac", "2",
            "-t", f"{dur:.6f}", "-movflags", "+faststart", str(out)]


def run_reference(s: Setup, run_dir: Path) -> tuple[float, Path]:
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    out = run_dir / f"{UNIT}.mp4"
    cmd, t = reference_command(s, out), time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"reference ffmpeg failed ({proc.returncode}):\n{proc.stderr.decode(errors='replace')[-3000:]}")
    return dt, out


# --- C: moviepy only ------------------------------------------------------------------------------

def run_moviepy(s: Setup, run_dir: Path, seconds: float | None) -> tuple[float, Path, float]:
    """Compose and write with moviepy; returns (seconds, mp4, composed length)."""
    import numpy as np
    from moviepy import (AudioFileClip, CompositeAudioClip, CompositeVideoClip, TextClip, VideoFileClip, afx,
                         concatenate_videoclips)

    from stages.core.fonts import font_file

    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    out, cut, p = run_dir / f"{UNIT}.mp4", s.cut, s.project
    st, m, e, dur = p.subtitles, p.audio.music, p.encoding, cut.duration_s
    length = min(seconds, dur) if seconds else dur
    spans = np.array([(ln.start_s, ln.end_s) for ln in cut.lines])
    low = 10 ** (-m.duck_db / 20)

    def duck(get_frame, t):  # music at -duck_db while any line is spoken (a hard step, no ramps)
        x, tt = get_frame(t), np.atleast_1d(t)
        g = np.where(((tt[:, None] >= spans[:, 0]) & (tt[:, None] < spans[:, 1])).any(axis=1), low, 1.0)
        return x * (g[:, None] if np.ndim(t) else g[0])

    opened = []
    t0 = time.perf_counter()
    try:
        shots = [VideoFileClip(str(c), audio=False) for c in s.clips]
        opened += shots
        video = concatenate_videoclips(shots, method="chain")
        texts = []
        for ln in cut.lines:
            if ln.start_s >= length:
                continue
            tc = TextClip(font=str(font_file()), text=ln.text, font_size=st.size_px, color=st.color,
                          stroke_color=st.outline_color, stroke_width=st.outline_px, method="caption",
                          size=(int(W * st.safe_width), None), text_align="center",
                          margin=(0, 2 * st.size_px // 4))  # without it, caption mode crops the last line
            opened.append(tc)
            texts.append(tc.with_start(ln.start_s).with_duration(ln.end_s - ln.start_s)
                         .with_position(("center", H - st.margin_bottom_px - tc.h)))
        picture = CompositeVideoClip([video, *texts], size=(W, H))
        voices = [AudioFileClip(str(wav), fps=48_000).with_start(ln.start_s) for ln, wav in zip(cut.lines, cut.speech)]
        music = AudioFileClip(str(s.music), fps=48_000)
        opened += [*voices, music]
        bed = (music.with_effects([afx.AudioLoop(duration=dur)])
               .with_effects([afx.MultiplyVolume(10 ** (s.music_gain_db / 20)), afx.AudioFadeIn(m.fade_s),
                              afx.AudioFadeOut(m.fade_s)])
               .transform(duck))
        sound = CompositeAudioClip([bed, *voices]).with_duration(dur)
        final = picture.with_audio(sound).with_duration(dur)
        if length < dur:
            final = final.subclipped(0, length)
        final.write_videofile(str(out), fps=p.fps, codec="libx264", preset=e.x264_preset, audio_codec="aac",
                              audio_bitrate=f"{e.audio_kbps}k", audio_fps=48_000, logger=None,
                              temp_audiofile_path=str(run_dir),
                              ffmpeg_params=["-crf", str(e.crf), "-profile:v", "high", "-movflags", "+faststart"])
        dt = time.perf_counter() - t0
    finally:
        for c in opened:
            c.close()
    return dt, out, length


# --- report --------------------------------------------------------------------------------------

def describe(path: Path) -> str:
    from stages.core.loudness import measure_ebur128
    from stages.core.media import probe

    i, loud = probe(path), measure_ebur128(path)
    return (f"{i.duration_s:.2f} s, {i.frames} frames, {i.width}x{i.height} {i.video_codec} {i.pix_fmt} "
            f"{i.fps:g} fps, {i.audio_codec} {i.sample_rate} Hz {i.channels} ch, "
            f"{loud.integrated_lufs:.1f} LUFS / {loud.true_peak_dbtp:.1f} dBTP, {path.stat().st_size / 1e6:.1f} MB")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the module docstring (the top of this file) for what is compared.")
    ap.add_argument("--repeats", type=int, default=2, help="alternating A/B rounds; medians compared (default 2)")
    ap.add_argument("--clips", choices=("animatic", "testsrc2"), default="animatic",
                    help="what the shot clips show: the animatic backend's drawn stills + zoompan (default), "
                         "or ffmpeg's testsrc2 pattern (quicker setup, harder to encode)")
    ap.add_argument("--skip-moviepy", action="store_true", help="leave out the moviepy contestant")
    ap.add_argument("--moviepy-seconds", type=float, metavar="N",
                    help="moviepy renders only the first N s; its time is scaled by 60/N (default: all 60 s)")
    ap.add_argument("--cuts-only", action="store_true", help="no transitions (the workload before issue 22)")
    ap.add_argument("--quick", action="store_true", help="one round, no moviepy: a couple of minutes")
    ap.add_argument("--keep", type=Path, metavar="DIR",
                    help="work in DIR and keep it (clips, speech and outputs); setup files found there are "
                         "reused. Default: a temp dir, removed")
    a = ap.parse_args(argv)
    if a.quick:
        a.repeats, a.skip_moviepy = 1, True
    if a.repeats < 1 or (a.moviepy_seconds is not None and not 0 < a.moviepy_seconds):
        ap.error("--repeats must be at least 1, --moviepy-seconds positive")

    work = a.keep.resolve() if a.keep else Path(tempfile.mkdtemp(prefix="dramaforge-bench-assembly-"))
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.monotonic()
    try:
        log(f"work dir {work}; code from {REPO}; {os.cpu_count()} CPUs")
        import flows.tasks  # noqa: F401  (Prefect and the stages: imported before any timing)
        import moviepy  # noqa: F401

        s = setup(work, a.clips, {} if a.cuts_only else TRANSITIONS)
        dur = s.cut.duration_s
        a_times, b_times, spent, chains, cpu = [], [], [], [], {"A": [], "B": []}
        a_out = b_out = None
        for r in range(a.repeats):
            for who in ("AB" if r % 2 == 0 else "BA"):
                c0 = cpu_s()
                if who == "A":
                    log(f"round {r + 1}/{a.repeats}: dramaforge…")
                    dt, a_out, timer, chain = run_dramaforge(s, work / "run-dramaforge")
                    a_times.append(dt)
                    spent.append(timer.spent)
                    within = timer.within
                    chains.append(chain)
                    log(f"  dramaforge {dt:.1f} s (" + ", ".join(f"{k} {v:.1f}" for k, v in timer.spent.items()) + ")")
                else:
                    log(f"round {r + 1}/{a.repeats}: reference ffmpeg…")
                    dt, b_out = run_reference(s, work / "run-reference")
                    b_times.append(dt)
                    log(f"  reference {dt:.1f} s")
                cpu[who].append(cpu_s() - c0)
        a_med, b_med = statistics.median(a_times), statistics.median(b_times)

        c_line = None
        if not a.skip_moviepy:  # after A and B: one run, it takes minutes
            log(f"moviepy ({a.moviepy_seconds or dur:g} s of {dur:g})… (slow: composites frame by frame in Python)")
            c_dt, c_out, c_len = run_moviepy(s, work / "run-moviepy", a.moviepy_seconds)
            c_scaled = c_dt * dur / c_len
            log(f"  moviepy {c_dt:.1f} s for {c_len:g} s")
            c_line = (c_dt, c_out, c_len, c_scaled)

        runs = lambda ts: ", ".join(f"{t:.1f}" for t in ts)  # noqa: E731
        n_lines = len(s.cut.lines)
        print(f"episode: {dur:g} s, {SHOTS} shots of {SHOT_S:g} s at {W}x{H} {FPS} fps ({s.clip_source} clips), "
              f"{n_lines} spoken lines (eSpeak NG), {MUSIC_S:g} s music looped, cards off, "
              f"transitions: {', '.join(f'{t} into shot {i + 1}' for i, t in sorted(s.transitions.items())) or 'none'}; "
              f"x264 {s.project.encoding.x264_preset} crf {s.project.encoding.crf}, "
              f"AAC {s.project.encoding.audio_kbps}k; {a.repeats} alternating rounds")
        print(f"dramaforge cut steps: runs {runs(a_times)} s, median {a_med:.1f} s")
        keys = sorted({k for st in spent for k in st}, key="subtitles mix loudness conform encode".split().index)
        inside = {k: statistics.median(st.get(k, 0.0) for st in spent) for k in keys}
        print("  of which (medians): " + ", ".join(
            f"{k} {v:.1f} s" + (f" (inside {within[k]})" if k in within else "") for k, v in inside.items())
              + f", rest {a_med - sum(v for k, v in inside.items() if k not in within):.1f} s")
        print(f"  output: {describe(a_out)}")
        worst = max(chains)
        print(f"  x264 runs (all rounds): {sum(c[1] for c in chains)} lossy, {sum(c[2] for c in chains)} "
              f"near-lossless (QP/CRF <= {NEAR_LOSSLESS_QP}); lossy encodes from a shot's clip to the episode: "
              f"at most {worst[0]}")
        print(f"reference ffmpeg (one command): runs {runs(b_times)} s, median {b_med:.1f} s")
        print(f"  output: {describe(b_out)}")
        a_cpu, b_cpu = statistics.median(cpu["A"]), statistics.median(cpu["B"])
        print(f"cpu time (user + sys, medians): dramaforge {a_cpu:.1f} s, reference {b_cpu:.1f} s, "
              f"ratio {a_cpu / b_cpu:.2f}")
        if c_line is None:
            print("moviepy-only: skipped (--skip-moviepy)")
        else:
            c_dt, c_out, c_len, c_scaled = c_line
            print(f"moviepy-only: {c_dt:.1f} s (one run, full {dur:g} s)" if c_len >= dur else
                  f"moviepy-only: {c_dt:.1f} s for the first {c_len:g} s, scaled x{dur / c_len:.2f} to "
                  f"{c_scaled:.1f} s for {dur:g} s (one run)")
            print(f"  output: {describe(c_out)}\nmoviepy/ffmpeg ratio: {c_scaled / b_med:.2f}")
        log(f"total benchmark wall time {time.monotonic() - t_all:.0f} s")
        ratio = a_med / b_med
        print(f"assembly/ffmpeg ratio: {ratio:.2f}")
        print(f"goal assembly: {ratio:.2f} x one ffmpeg command (target <= 1.05) "
              f"{'met' if round(ratio, 2) <= 1.05 else 'missed'}")
        print(f"goal one lossy generation: {worst[0]} encode{'' if worst[0] == 1 else 's'} between clip and episode "
              f"(target 1) {'met' if worst[0] == 1 else 'missed'}", flush=True)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
