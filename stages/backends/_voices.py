"""What the cloned-voice speech backends share: their options, the reference clip as enrollment sends it,
and enrollment as a paid job on the job protocol.

A character's voice is made once per clip and provider account: `enroll` sends the clip (a paid
request), the provider answers with a voice id, and every line is then spoken with it. Enrollment
runs through the same driver as a shot (`_jobs.run_job`): a row is committed before the request, a
lost answer is looked up by the clip's unique label (`VoiceClip.label`) and never re-sent blindly,
an enrollment the provider is still training is polled, and the voice id lands in the job journal
(the ledger's database) and in `build/voices/<key>.json`, the unit's content-addressed artifact.

A provider file implements `enroll`, `find_voice` (where the provider lists voices), `enrollment`
(where a voice trains before use) and `synthesize` (one line, with `request.voice_id`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from stages.backends._http import Http
from stages.backends._jobs import HostedVideoBackend, LookupUnsupported, Poll
from stages.backends.base import PermanentError, SpeechCapabilities, SpeechRequest
from stages.core.model import Model
from stages.core.trust import redact_url


class HostedSpeechOptions(Model):
    """`backends.<provider>`: one model of a provider's text-to-speech API, its address, key and waits."""

    model: str = Field(..., min_length=1, description="the provider's speech model")
    base_url: str = Field(..., min_length=1, description="the API's address (a region's host, or a test server)")
    api_key_env: str = Field(..., min_length=1, description="the environment variable holding the key")
    request_timeout_s: float = Field(60, gt=0, le=600, description="wait this long for one answer (an "
                                                                   "enrollment that times out is looked up, "
                                                                   "never re-sent)")
    poll_s: float = Field(2, gt=0, le=300, description="how often to look at a voice still being trained")
    timeout_s: float = Field(900, gt=0, description="give up waiting on one enrollment after this long (it "
                                                   "stays recorded: the next run resumes it)")
    concurrency: int = Field(4, ge=1, le=32, description="lines spoken at once")


@dataclass(frozen=True)
class VoiceClip:
    """A character's reference clip as an enrollment sends it."""

    character: str  # the cast id
    name: str  # as the script names them
    path: Path
    text: str  # what is said in it ('' when the project gives no transcript)
    sha256: str
    language: str

    @property
    def label(self) -> str:
        """The voice's name at the provider: unique per character and clip, so a lost enrollment is
        found again by it (letters, digits and hyphens: every provider's names take those)."""
        return f"dramaforge-{self.character}-{self.sha256[:12]}"

    def read(self) -> bytes:
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise PermanentError(f"the reference clip {self.path} cannot be read: {exc.strerror or exc}") from exc

    @property
    def mime(self) -> str:
        return {".wav": "audio/wav", ".mp3": "audio/mpeg", ".m4a": "audio/mp4", ".flac": "audio/flac",
                ".ogg": "audio/ogg"}.get(self.path.suffix.lower(), "application/octet-stream")


class HostedSpeech:
    """Base of the hosted cloned-voice backends (a SpeechBackend): enrollment and synthesis."""

    name: ClassVar[str]
    section: ClassVar[str]
    Options: ClassVar[type[HostedSpeechOptions]]
    limits: ClassVar[SpeechCapabilities]  # the provider's record; billed, pool and concurrency are added
    what: ClassVar[str]  # the provider as people name it
    lookup_hint: ClassVar[str] = "the provider's console"
    lookup_complete: ClassVar[bool] = False  # `find_voice` sees every voice of the account
    one_voice_per_character: ClassVar[bool] = False  # a slot per character, retrained with each new clip

    def __init__(self, options: HostedSpeechOptions):
        self.options = options
        self.capabilities = replace(self.limits, billed=True, pool="api", concurrency=options.concurrency)
        self._http: Http | None = None

    def __getstate__(self) -> dict:  # a Dask worker makes its own connections
        return {"options": self.options}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["options"])

    def identity(self) -> dict:
        return {"engine": self.name, "model": self.options.model, "base_url": redact_url(self.options.base_url)}

    def account(self) -> dict:
        """Whose voices these are: the address and the key's variable (never the key). A voice enrolled
        under one is not re-enrolled while they stay the same."""
        return {"engine": self.name, "base_url": redact_url(self.options.base_url), "key": self.options.api_key_env}

    def account_for(self, character: str) -> dict:
        """Whose voice this character's is (the account, and where a provider keeps a voice per slot, the
        slot): what an enrollment's key counts besides the clip."""
        return self.account()

    def key(self) -> str:
        value = os.environ.get(self.options.api_key_env, "")
        if not value:
            raise PermanentError(f"{self.what}: set ${self.options.api_key_env} to your API key")
        return value

    def missing(self, *, keys: bool = True) -> list[tuple[str, str]]:
        if keys and not os.environ.get(self.options.api_key_env):
            return [(f"${self.options.api_key_env} is not set", f"export {self.options.api_key_env}=<your "
                                                                f"{self.what} API key>")]
        return []

    # --- the provider's protocol (a provider file implements these) ------------------------------

    def enroll(self, clip: VoiceClip, client_key: str) -> str:
        """Send the clip (a paid request); the provider's voice id. `AnswerLost`: it may have been made."""
        raise NotImplementedError

    def enrollment(self, voice_id: str) -> Poll:
        """How an enrolled voice stands: `done` once it can speak (the default: at once)."""
        return Poll("done", result=voice_id)

    def find_voice(self, clip: VoiceClip, client_key: str, sent_at: float) -> str | None:
        """The voice a lost enrollment made, found by `clip.label`; None if none; `LookupUnsupported`."""
        raise LookupUnsupported

    def synthesize(self, request: SpeechRequest, out_wav: Path) -> None:
        """Write a 16-bit PCM WAV of `request.text`, in `request.voice_id` where it has one."""
        raise NotImplementedError


class Enrollment(HostedVideoBackend):
    """One voice's enrollment as the job driver sees a paid job (`_jobs.run_job`): its result is the
    provider's voice id, written as JSON to the unit's artifact. Its waits (`timeout_s`, `poll_s`,
    `settle_s`) are the driver's own, read from the speech backend's options."""

    def __init__(self, backend: HostedSpeech, clip: VoiceClip):
        self.backend, self.clip = backend, clip
        self.name, self.what = backend.name, f"{backend.what} voice enrollment"
        self.options, self.lookup_hint, self.lookup_complete = backend.options, backend.lookup_hint, \
            backend.lookup_complete

    def provider(self) -> str:
        return f"{self.backend.options.model} voice cloning on {self.backend.what}"

    def billed_seconds(self, clip) -> float:
        return 0.0

    def images_sent(self, clip) -> int:
        return 0

    def submit(self, clip: VoiceClip, client_key: str) -> str:
        return self.backend.enroll(clip, client_key)

    def poll(self, voice_id: str) -> Poll:
        return self.backend.enrollment(voice_id)

    def cancel(self, voice_id: str) -> None:
        pass  # an enrollment is not a running job: nothing to stop

    def lookup(self, client_key: str, clip: VoiceClip, sent_at: float) -> str | None:
        return self.backend.find_voice(clip, client_key, sent_at)

    def finish(self, job, poll: Poll, out: Path) -> None:
        out.write_text(json.dumps({"voice_id": job.job_id, "engine": self.backend.name,
                                   "model": self.backend.options.model, "character": self.clip.character,
                                   "clip_sha256": self.clip.sha256, "label": self.clip.label,
                                   "client_key": job.client_key, "enrolled_at": job.created_at}, indent=1),
                       encoding="utf-8")


def read_voice(path: Path) -> str:
    """The voice id an enrollment recorded in `path` (its artifact)."""
    return json.loads(path.read_text(encoding="utf-8"))["voice_id"]


def voice_validator():
    """The artifact check of an enrollment: a JSON object with a voice id."""

    def validate(path: Path) -> None:
        try:
            ok = bool(read_voice(path))
        except (ValueError, KeyError, TypeError, AttributeError):
            ok = False
        if not ok:
            raise ValueError(f"{path.name} holds no voice id")

    return validate
