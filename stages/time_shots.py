"""Measured speech -> shot durations and the episode timeline (cue times for sound and subtitles).

Picture, sound and subtitles all read their times from `timeline`, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from stages.core.text import frames_ceil
from stages.schema import Project, ShotList

GAP_S = 0.2  # breath between two lines inside one shot


@dataclass(frozen=True)
class TimedLine:
    shot_id: str
    index: int  # position of the line inside its shot
    character: str
    text: str
    start_s: float
    end_s: float
    extension: str | None = None  # V.O., O.S., ...: the mix may treat V.O. differently


def time_shots(shotlist: ShotList, speech_s: dict[str, list[float]], project: Project) -> ShotList:
    """Set each line's measured `speech_s` and each speaking shot's duration from it."""
    t = project.timing
    shots = []
    for shot in shotlist.shots:
        measured = speech_s.get(shot.id)
        if not shot.lines or measured is None:
            shots.append(shot)
            continue
        if len(measured) != len(shot.lines):
            raise ValueError(f"{shot.id}: {len(measured)} speech durations for {len(shot.lines)} lines")
        lines = [ln.model_copy(update={"speech_s": round(d, 4)}) for ln, d in zip(shot.lines, measured)]
        spoken = sum(measured) + GAP_S * (len(measured) - 1)
        duration = frames_ceil(t.lead_in_s + spoken + t.lead_out_s, project.fps)
        if shot is shotlist.shots[-1]:
            duration = frames_ceil(duration + 0.5, project.fps)  # the closing push-in holds
        shots.append(shot.model_copy(update={"lines": lines, "duration_s": duration}))
    return shotlist.model_copy(update={"shots": shots})


def card_times(shotlist: ShotList) -> list[tuple[float, float, str]]:
    """(start, end, text) of each shot's on-screen text card."""
    out, t0 = [], 0.0
    for shot in shotlist.shots:
        if shot.card:
            out.append((round(t0, 4), round(t0 + shot.duration_s, 4), shot.card))
        t0 += shot.duration_s
    return out


def timeline(shotlist: ShotList, project: Project) -> list[TimedLine]:
    """Where every spoken line starts and ends in the episode."""
    out: list[TimedLine] = []
    t0 = 0.0
    for shot in shotlist.shots:
        at = t0 + project.timing.lead_in_s
        for i, ln in enumerate(shot.lines):
            if ln.speech_s is None:
                raise ValueError(f"{shot.id}: line {i + 1} has no measured speech yet")
            out.append(TimedLine(shot.id, i, ln.character, ln.text, round(at, 4), round(at + ln.speech_s, 4),
                                  ln.extension))
            at += ln.speech_s + GAP_S
        t0 += shot.duration_s
    return out
