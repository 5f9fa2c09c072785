"""A character's reference clip -> their voice at a cloning provider: one paid enrollment per clip and
account, its voice id kept (the job journal and `build/voices/<key>.json`), reused by every line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stages.backends._jobs import ShotJobs, run_job
from stages.backends._voices import Enrollment, read_voice, voice_validator
from stages.core.artifacts import atomic_path, is_done
from stages.core.jobs import JobState
from stages.units import VoiceUnit


@dataclass(frozen=True)
class VoiceResult:
    path: Path
    voice_id: str
    reused: bool


def enroll_voice(unit: VoiceUnit, backend, jobs: ShotJobs) -> VoiceResult:
    """Enroll `unit.clip` at `backend` (its journal `jobs`), or reuse the voice already recorded: in its
    file, or (the file lost) in the journal, whose enrollment of this clip and account is its voice
    until `rerun --shot voice-<character>-<engine> --new-job` gives it up."""
    check = voice_validator()
    if _retrained(unit, backend, jobs):  # its slot holds another clip's voice now: this one is trained again
        unit.path.unlink(missing_ok=True)
    elif is_done(unit.path, check):
        return VoiceResult(unit.path, read_voice(unit.path), reused=True)
    enrollment, last = Enrollment(backend, unit.clip), jobs.latest()
    with atomic_path(unit.path, validate=check) as tmp:
        if last is not None and last.state == JobState.DONE and last.job_id and not _retrained(unit, backend, jobs):
            # the journal keeps it: never paid twice
            enrollment.finish(last, None, tmp)
            reused = True
        else:
            run_job(enrollment, unit.clip, tmp, jobs)
            reused = False
    return VoiceResult(unit.path, read_voice(unit.path), reused=reused)


def _retrained(unit: VoiceUnit, backend, jobs: ShotJobs) -> bool:
    """On a provider that keeps one voice per character (a slot trained with each clip), whether the
    slot's last training was another clip's (A, then B, then A again: A's record is stale)."""
    if not getattr(backend, "one_voice_per_character", False):
        return False
    done = [j for j in jobs.journal.of(unit.id) if j.state == JobState.DONE]
    return bool(done) and done[-1].spec_hash != unit.key
