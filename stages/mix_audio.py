"""Timed speech -> the episode's dialogue track: 48 kHz stereo WAV, exactly the episode's length."""

from __future__ import annotations

from pathlib import Path

from stages.artifacts import atomic_path
from stages.loudness import normalize

SAMPLE_RATE = 48_000


def mix_audio(lines: list[tuple[float, Path]], duration_s: float, out_wav: Path,
              loudness: tuple[float, float] | None = None) -> None:
    """Lay each (start_s, wav) on a silent bed of `duration_s`; speech past the end is clamped.

    `loudness` = (LUFS, dBTP): the mix is normalised to it (see `stages.loudness`).
    """
    import warnings

    with warnings.catch_warnings():  # pydub looks for ffmpeg on PATH at import; we hand it ours
        warnings.simplefilter("ignore", RuntimeWarning)
        from pydub import AudioSegment

    total_ms = int(round(duration_s * 1000))
    bed = AudioSegment.silent(duration=total_ms, frame_rate=SAMPLE_RATE).set_channels(2)
    for start_s, wav in lines:
        seg = AudioSegment.from_wav(str(wav)).set_frame_rate(SAMPLE_RATE).set_channels(2)
        at = int(round(start_s * 1000))
        if at >= total_ms:
            continue
        bed = bed.overlay(seg[: total_ms - at], position=at)
    # pydub's length is in ms; pad or trim to the exact sample count of the episode
    samples = int(round(duration_s * SAMPLE_RATE))
    bed = bed.get_sample_slice(0, samples) if int(bed.frame_count()) > samples else bed
    with atomic_path(out_wav) as tmp:
        if loudness is None:
            bed.export(str(tmp), format="wav")
        else:
            raw = tmp.with_name(tmp.name + ".raw.wav")
            try:
                bed.export(str(raw), format="wav")
                normalize(raw, tmp, lufs=loudness[0], true_peak=loudness[1])
            finally:
                raw.unlink(missing_ok=True)
