"""LipSyncBackend `animatic`: the offline default. It redraws an animatic shot with the speaker's
mouth open on each syllable of the line (from the speech envelope), instead of the animatic's fixed
flap, and keeps the piece being synced. Free and instant; it can redraw only animatic clips.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from stages.backends.base import LipSyncCapabilities, LipSyncRequest, PermanentError
from stages.core.artifacts import partial_dir

VERSION = 1


class AnimaticLipSync:
    name = "animatic"
    section = None

    def __init__(self):
        self.capabilities = LipSyncCapabilities(free=True, concurrency=2, needs_video="animatic",
                                                 seconds_each=0.2)  # it redraws its piece as the animatic does

    def identity(self) -> dict:
        from stages.backends.animatic import VERSION as DRAWING

        return {"backend": "animatic-lipsync", "version": VERSION, "drawing": DRAWING}

    def sync(self, request: LipSyncRequest, out_mp4: Path, jobs=None) -> None:
        from stages.backends.animatic import AnimaticBackend
        from stages.core.media import run_ffmpeg
        from stages.core.sync_figure import mouth_intervals, speech_envelope

        shot = request.shot
        if shot is None:
            raise PermanentError("animatic lip sync redraws the shot, and was not given it")
        fps = request.fps
        frames = max(1, round(request.duration_s * fps))
        start = round(request.start_s * fps)
        opened = mouth_intervals(speech_envelope(request.audio, fps, frames), fps)
        offset = start / fps
        figures = tuple(dataclasses.replace(f, speaking=f.id == request.character) for f in shot.figures)
        redraw = dataclasses.replace(shot, figures=figures, extra={
            **shot.extra, "speaking": [[round(offset, 4), round(offset + frames / fps, 4)]],
            "mouth": [[round(a + offset, 4), round(b + offset, 4)] for a, b in opened]})
        with partial_dir(out_mp4.parent, "lipsync") as tmp:
            whole = Path(tmp) / "shot.mp4"
            AnimaticBackend().generate(redraw, whole)
            run_ffmpeg(["-i", str(whole), "-vf", f"select=between(n\\,{start}\\,{start + frames - 1}),setpts=N/{fps}/TB,"
                        f"tpad=stop_mode=clone:stop_duration=1", "-frames:v", str(frames), "-r", str(fps),
                        "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-an",
                        "-movflags", "+faststart", "-f", "mp4", str(out_mp4)], what="cutting the synced piece")
