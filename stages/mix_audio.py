"""Timed speech, music and effects -> the episode's sound: 48 kHz stereo, exactly the episode's length.

Dialogue is laid where the timeline says; music spans (project bed, per-episode track, or a
scene's `[[music: file]]`) are looped or trimmed to fit, faded, set to a loudness, and ducked
under every line by a gain envelope (so the drop is exactly `duck_db`, not a compressor's guess);
`[[sfx: file]]` effects start with their shot. The sum is normalised to the platform's loudness.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from pathlib import Path

from stages.core.artifacts import atomic_path, file_digest
from stages.core.errors import InputError
from stages.core.loudness import normalize_samples
from stages.core.media import decode_audio
from stages.schema import Music, Project, ShotList

SAMPLE_RATE = 48_000
# (V.O.) treatments, as ffmpeg filter chains on the line alone.
VOICE_OVER = {
    "radio": "highpass=f=200,lowpass=f=5000,acompressor=threshold=0.1:ratio=4,volume=2dB",
    "phone": "highpass=f=400,lowpass=f=3200,acrusher=bits=10:mix=0.3,acompressor=threshold=0.1:ratio=6",
}


# A clip's own speech (dialogue: native) is set to this loudness before the mix, as a voice of ours
# would be: a model's sound comes at any level, and the music ducks under it like under any line.
NATIVE_LUFS = -20.0


@dataclass(frozen=True)
class Dialogue:
    start_s: float
    wav: Path  # any file with sound (a native shot's clip too)
    treatment: str = "none"  # a VOICE_OVER key, or none
    level_lufs: float | None = None  # set to this integrated loudness first (a model's own sound)


@dataclass(frozen=True)
class MusicSpan:
    start_s: float
    end_s: float
    file: Path


@dataclass(frozen=True)
class Effect:
    start_s: float
    file: Path


def voice_treatment(extension: str | None, project: Project) -> str:
    """V.O. lines get the project's voice-over treatment; O.S. and CONT'D keep the plain voice."""
    ext = (extension or "").upper().replace(" ", "")
    return project.audio.voice_over if ext in ("V.O.", "VO", "V.O", "画外音", "旁白") else "none"


def sound_cues(shotlist: ShotList, project: Project, project_dir: Path) -> tuple[list[MusicSpan], list[Effect]]:
    """Music spans and effect starts for a timed shot list; missing files are an InputError."""
    music = project.audio.music
    episode_track = music.episodes.get(shotlist.episode, music.file)
    spans: list[MusicSpan] = []
    effects: list[Effect] = []
    t = 0.0
    for shot in shotlist.shots:
        track = shot.music or episode_track
        if track and track.lower() != "none":
            path = _input_file(project_dir, track, "music", shot)
            if spans and spans[-1].file == path and abs(spans[-1].end_s - t) < 1e-6:
                spans[-1] = MusicSpan(spans[-1].start_s, t + shot.duration_s, path)  # one track runs on
            else:
                spans.append(MusicSpan(t, t + shot.duration_s, path))
        effects += [Effect(t, _input_file(project_dir, f, "sfx", shot)) for f in shot.sfx]
        t += shot.duration_s
    return spans, effects


def _input_file(project_dir: Path, name: str, what: str, shot) -> Path:
    path = (project_dir / name).resolve()
    if not path.is_file():
        raise InputError(f"{what} file not found: {name}", file=shot.file, line=shot.line,
                         hint=f"put it in the project folder ({project_dir}) or fix the path; it is "
                              "relative to the project folder")
    return path


def mix_cut(cut, project: Project, out_wav: Path, meters: Path | None = None) -> None:
    """An episode's sound (`cut`: its `units.Cut`): dialogue (not the lines its clips' own sound speaks),
    the model's native lines, music ducked under them, effects, at the platform's loudness."""
    model = cut.by_model or [False] * len(cut.lines)
    lines = [Dialogue(ln.start_s, wav, voice_treatment(ln.extension, project))
             for ln, wav, theirs in zip(cut.lines, cut.speech, model) if not theirs]
    lines += [Dialogue(a, clip, level_lufs=NATIVE_LUFS) for a, _, clip in cut.native]
    mix_audio(lines, cut.duration_s, out_wav, loudness=project.audio.target, music=cut.music, effects=cut.effects,
              options=project.audio.music, meters=meters)


def cue_spec(spans: list[MusicSpan], effects: list[Effect], music: Music) -> dict:
    """What the cues contribute to an episode's content address: times, file contents, levels."""
    return {"music": [[round(s.start_s, 4), round(s.end_s, 4), file_digest(s.file)] for s in spans],
            "sfx": [[round(e.start_s, 4), file_digest(e.file)] for e in effects],
            "levels": music.model_dump(mode="json", exclude={"file", "episodes"}) if spans or effects else None}


def mix_audio(lines: list[Dialogue] | list[tuple[float, Path]], duration_s: float, out_wav: Path,
              loudness: tuple[float, float] | None = None, *, music: list[MusicSpan] = (),
              effects: list[Effect] = (), options: Music | None = None, meters: Path | None = None) -> None:
    """Mix dialogue, ducked music and effects on a silent bed of `duration_s` (clamped at the end).

    `loudness` = (LUFS, dBTP): the mix is normalised to it in memory (see `stages.core.loudness`).
    `meters`: where each music file's loudness and samples are kept by its content (`BuildPaths.meters`).
    """
    import numpy as np

    opts = options or Music()
    n = int(round(duration_s * SAMPLE_RATE))
    items = [item if isinstance(item, Dialogue) else Dialogue(*item) for item in lines]
    used = {str(m.file) for m in music if min(round(m.end_s * SAMPLE_RATE), n) > round(m.start_s * SAMPLE_RATE)}
    voices, sounds = _decode_all(items, effects, sorted(used), opts, meters)
    dialogue = np.zeros((n, 2), dtype=np.float32)
    spoken: list[tuple[int, int]] = []
    for line, x in zip(items, voices):
        at = int(round(line.start_s * SAMPLE_RATE))
        end = _add(dialogue, x, at)
        if end > at:
            spoken.append((at, end))
    bed = np.zeros((n, 2), dtype=np.float32)
    for span in music:
        a, b = (int(round(v * SAMPLE_RATE)) for v in (span.start_s, span.end_s))
        b = min(b, n)
        if b <= a:
            continue
        src = _music_source(str(span.file), opts.level_lufs, meters)
        track = np.resize(src, (b - a, 2))  # loops a short track, trims a long one
        fade = min(int(opts.fade_s * SAMPLE_RATE), (b - a) // 2)
        if fade:
            ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)[:, None]
            track[:fade] *= ramp
            track[-fade:] *= ramp[::-1]
        bed[a:b] += track
    if music:
        bed *= duck_envelope(n, spoken, opts)[:, None]
    for fx, x in zip(effects, sounds):
        _add(bed, x * np.float32(10 ** (opts.sfx_db / 20)), int(round(fx.start_s * SAMPLE_RATE)))
    mix = dialogue + bed
    if loudness is not None:  # in memory: no file and no ffmpeg pass between the mix and its level
        mix = normalize_samples(mix, lufs=loudness[0], true_peak=loudness[1])
    with atomic_path(out_wav) as tmp:
        _write_wav(tmp, mix)


def _decode_all(lines: list[Dialogue], effects, music_files: list[str], opts: Music, meters: Path | None):
    """Every line (treated, set to its level where asked) and effect decoded, in order, and the music
    sources cached, side by side: the ffmpeg processes (treatments, compressed files, the music's
    meter) mostly wait on their own start-up."""
    from concurrent.futures import ThreadPoolExecutor

    def voice(line: Dialogue):
        x = decode_audio(line.wav, filters=VOICE_OVER.get(line.treatment))
        return _at_loudness(x, line.level_lufs) if line.level_lufs is not None else x

    with ThreadPoolExecutor(max_workers=4) as pool:
        cached = [pool.submit(_music_source, f, opts.level_lufs, meters) for f in music_files]
        voices = list(pool.map(voice, lines))
        sounds = list(pool.map(lambda fx: decode_audio(fx.file, what="decoding sound effect"), effects))
        for f in cached:
            f.result()
    return voices, sounds


def _at_loudness(x, lufs: float):
    """`x` (48 kHz stereo) scaled to an integrated loudness of `lufs` (silence stays silence)."""
    import numpy as np

    from stages.core.loudness import integrated_lufs

    measured = integrated_lufs(x)
    return x * np.float32(10 ** ((lufs - measured) / 20)) if measured > -70 else x


def duck_envelope(n: int, spoken: list[tuple[int, int]], opts: Music):
    """Per-sample music gain: 1, falling to -duck_db over `attack_s` before each line, back after."""
    import numpy as np

    low = np.float32(10 ** (-opts.duck_db / 20))
    gain = np.ones(n, dtype=np.float32)
    attack, release = int(opts.attack_s * SAMPLE_RATE), int(opts.release_s * SAMPLE_RATE)
    for a, b in spoken:
        env = np.full(b - a + attack + release, low, dtype=np.float32)
        if attack:
            env[:attack] = np.linspace(1.0, low, attack, endpoint=False)
        if release:
            env[-release:] = np.linspace(low, 1.0, release + 1)[1:]
        lo, hi = a - attack, b + release
        clip_lo, clip_hi = max(lo, 0), min(hi, n)
        if clip_hi > clip_lo:
            gain[clip_lo:clip_hi] = np.minimum(gain[clip_lo:clip_hi], env[clip_lo - lo: clip_hi - lo])
    return gain


def _add(dst, x, at: int) -> int:
    """Add `x` into `dst` from sample `at`, clamped to dst; returns where it ends."""
    if at >= len(dst) or at + len(x) <= 0:
        return at
    lo = max(at, 0)
    hi = min(at + len(x), len(dst))
    dst[lo:hi] += x[lo - at: hi - at]
    return hi


@functools.lru_cache(maxsize=8)
def _music_source(path: str, level_lufs: float, meters: Path | None = None):
    """A music file decoded once per process and set to `level_lufs` integrated."""
    import numpy as np

    x = _decoded(Path(path), meters)
    if not len(x):
        raise InputError(f"music file has no audio: {path}", hint="check it plays; re-export it as WAV or MP3")
    measured = _integrated_lufs(Path(path), meters)
    if measured > -70:  # silence stays silence
        x = x * np.float32(10 ** ((level_lufs - measured) / 20))
    x.flags.writeable = False  # shared between episodes: np.resize copies
    return x


def _decoded(path: Path, meters: Path | None):
    """A music file's samples, kept in `meters` under its content's hash: decoding a compressed track
    was 0.07-0.17 CPU-s of every render that mixes it, reading them back is 2 ms."""
    import numpy as np

    kept = meters / f"{file_digest(path)}-{SAMPLE_RATE}.npy" if meters is not None else None
    if kept is not None:
        try:
            return np.load(kept, mmap_mode="r")
        except (OSError, ValueError):  # not decoded yet, or a damaged file
            pass
    x = decode_audio(path, what="decoding music")
    if kept is not None:
        with atomic_path(kept) as tmp, open(tmp, "wb") as f:
            np.save(f, x, allow_pickle=False)
    return x


def _integrated_lufs(path: Path, meters: Path | None) -> float:
    """A file's integrated loudness by ffmpeg's meter, kept in `meters` under its content's hash: an
    edited line re-mixes its episode without metering the same music again."""
    import json

    from stages.core.artifacts import write_text_atomic
    from stages.core.loudness import measure_ebur128

    kept = meters / f"{file_digest(path)}.json" if meters is not None else None
    if kept is not None:
        try:
            return float(json.loads(kept.read_text(encoding="utf-8"))["integrated_lufs"])
        except (OSError, ValueError, KeyError, TypeError):  # not metered yet, or a damaged record
            pass
    measured = measure_ebur128(path).integrated_lufs
    if kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(kept, json.dumps({"file": str(path), "integrated_lufs": measured}) + "\n")
    return measured


def _write_wav(path: Path, x) -> None:
    """Stereo 48 kHz 16-bit PCM WAV."""
    import numpy as np

    data, fmt, bits = (np.clip(x, -1, 1) * 32767).round().astype("<i2").tobytes(), 1, 16
    block = 2 * bits // 8
    header = (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " +
              struct.pack("<IHHIIHH", 16, fmt, 2, SAMPLE_RATE, SAMPLE_RATE * block, block, bits) +
              b"data" + struct.pack("<I", len(data)))
    with open(path, "wb") as f:
        f.write(header)
        f.write(data)
