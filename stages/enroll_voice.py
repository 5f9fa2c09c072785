"""A character's reference clip -> their voice at a cloning provider: one paid enrollment per clip and
account, its voice id kept (the job journal and `build/voices/<key>.json`), reused by every line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stages.backends._jobs import ShotJobs, run_job
from stages.backends._voices import Enrollment, read_voice, voice_validator
from stages.core.artifacts import atomic_path, is_done
from stages.units import VoiceUnit


@dataclass(frozen=True)
class VoiceResult:
    path: Path
    voice_id: str
    reused: bool


def enroll_voice(unit: VoiceUnit, backend, jobs: ShotJobs) -> VoiceResult:
    """Enroll `unit.clip` at `backend` (its journal `jobs`), or reuse the voice already recorded."""
    check = voice_validator()
    if is_done(unit.path, check):
        return VoiceResult(unit.path, read_voice(unit.path), reused=True)
    with atomic_path(unit.path, validate=check) as tmp:
        run_job(Enrollment(backend, unit.clip), unit.clip, tmp, jobs)
    return VoiceResult(unit.path, read_voice(unit.path), reused=False)

