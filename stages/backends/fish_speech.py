"""Fish Audio: each character's reference clip becomes a private voice model, and every line is spoken in it.

Called through the official SDK (PyPI `fish-audio-sdk` 1.3.0, module `fishaudio`), pointed at `base_url`.
It retries nothing itself (its `RequestOptions.max_retries` is a no-op), and its HTTP client here has no
transport retries either: the job driver and the flows decide every retry.

What is sent, and where each fact comes from ("SDK": fishaudio 1.3.0 source; "OpenAPI": the docs repo
fishaudio/docs, api-reference/openapi.json @5783e09 of 2026-08-21; "docs": that repo's pages):
- CONFIRMED: host `https://api.fish.audio`, `Authorization: Bearer <key>`, key variable `FISH_API_KEY`
  (SDK client.py, core/client_wrapper.py).
- CONFIRMED: enrollment `POST /model`, multipart: `title`, `description`, `visibility` (private),
  `type=tts`, `train_mode=fast`, `texts` (one per clip), `enhance_audio_quality`, files `voices`; answers
  201 with the model: `_id`, `title`, `state` created|training|trained|failed (SDK resources/voices.py,
  types/voices.py; OpenAPI /model post). Fish takes no idempotency key: a lost answer is looked up.
- CONFIRMED: training is polled with `GET /model/{id}` until `state` is `trained` (docs cookbook
  clone-and-wait-until-ready); a lost enrollment is found with `GET /model?self=true&title=<label>`,
  `page_size` <= 100, `page_number`, `sort_by=created_at` (OpenAPI /model get), the title matched exactly
  here. NOT CONFIRMED: whether `title` filters by substring or search, and whether a model just made is
  listed at once (so `lookup_complete` stays False: a lost enrollment not found is never re-sent alone).
- CONFIRMED: synthesis `POST /v1/tts`, MessagePack body, headers `Content-Type: application/msgpack` and
  `model` (s1, s2-pro, s2.1-pro, s2.1-pro-free; an unknown name silently falls back to s2.1-pro, which
  is why `model` is checked here); body fields `text`, `reference_id`, `format` (wav|pcm|mp3|opus),
  `sample_rate`, `normalize`, `latency` (normal|balanced), `prosody` {`speed` 0.5-2, `volume`},
  `temperature`, `top_p` and the SDK's other defaults; the answer is the audio itself (SDK
  resources/tts.py, types/tts.py; OpenAPI /v1/tts, TTSRequest).
- NOT CONFIRMED: the sample rates wav/pcm take (8, 16, 24, 32, 44.1 kHz) and that `pcm` is 16-bit mono
  little-endian (third-party mirrors of the docs); the WAV header's sizes (any are accepted here).
- CONFIRMED: errors are JSON `{"message", "status"}` (docs api-reference/errors.mdx): 400 bad request
  or unknown voice, 401 key, 402 insufficient credits, 403 not permitted, 404 not found, 422 invalid
  parameters (docs sdk-guide/python/errors.mdx), 429 rate (concurrency) limit, 5xx server.
  NOT CONFIRMED: a `Retry-After` on the native API's 429 (documented only for the compatible APIs), and
  the wording of a content refusal (none is documented; a 4xx whose words say so is a RejectedError).
- CONFIRMED: acting: s1 takes a fixed set of `(parenthesised)` markers before the text; the S2 family
  takes free-form `[bracket]` cues (docs core-features/emotions.mdx, models-overview.mdx).
- CONFIRMED: price $15 per million UTF-8 bytes of input text for s1, s2-pro and s2.1-pro, $0 for
  s2.1-pro-free; creating a voice model has no listed price (docs pricing-and-rate-limits.mdx).
"""

from __future__ import annotations

import io
import re
import threading
import wave
from dataclasses import replace
from pathlib import Path
from typing import Literal

from pydantic import Field

from stages.backends._http import AnswerLost, NotFound
from stages.backends._jobs import Poll
from stages.backends._voices import HostedSpeech, HostedSpeechOptions, VoiceClip
from stages.backends.base import (
    PermanentError,
    RejectedError,
    SpeechCapabilities,
    SpeechRequest,
    TransientError,
    is_refusal,
)
from stages.core.trust import provider_detail

# The s1 markers the docs list (models-overview.mdx and the emotion-list snippets); s1 speaks any other
# parenthesised word aloud, so only these are sent to it.
S1_TAGS = frozenset({
    "angry", "sad", "excited", "surprised", "satisfied", "delighted", "scared", "worried", "upset", "nervous",
    "frustrated", "depressed", "empathetic", "embarrassed", "disgusted", "moved", "proud", "relaxed", "grateful",
    "confident", "interested", "curious", "confused", "joyful", "happy", "calm", "sarcastic",
    "disdainful", "unhappy", "anxious", "hysterical", "indifferent", "impatient", "guilty", "scornful", "panicked",
    "furious", "reluctant", "keen", "disapproving", "negative", "denying", "astonished", "serious", "conciliative",
    "comforting", "sincere", "sneering", "hesitating", "yielding", "painful", "awkward", "amused", "uncertain",
    "doubtful", "disappointed", "regretful", "ashamed", "jealous", "envious", "hopeful", "optimistic",
    "pessimistic", "nostalgic", "lonely", "bored", "contemptuous", "sympathetic", "compassionate", "determined",
    "resigned",
    "in a hurry tone", "shouting", "screaming", "whispering", "soft tone",
    "laughing", "chuckling", "sobbing", "crying loudly", "sighing", "panting", "groaning", "gasping", "yawning",
    "crowd laughing", "background laughter", "audience laughing", "break", "long-break",
})
S1_LANGUAGES = ("en", "zh", "ja", "de", "fr", "es", "ko", "ar", "ru", "nl", "it", "pl", "pt")
MAX_CUES = 3  # "a maximum of 3 combined emotions per sentence recommended" (emotions.mdx)
RATE_LIMIT_WAIT_S = 2.0  # a 429 without Retry-After: Fish limits concurrent requests, and slots free in seconds
_CUE = re.compile(r"[(\[]([^()\[\]]*)[)\]]")


class Options(HostedSpeechOptions):
    """`backends.fish_audio`: Fish Audio (voice cloning from each character's reference clip)."""

    model: Literal["s1", "s2-pro", "s2.1-pro", "s2.1-pro-free"] = Field(
        "s1", description="the speech model: s1 (13 languages, (emotion) markers), s2-pro / s2.1-pro (80+ "
                          "languages, free-form [cues]), s2.1-pro-free (the same, unbilled, fair-use)")
    base_url: str = Field("https://api.fish.audio", min_length=1, description="the API's address")
    api_key_env: str = Field("FISH_API_KEY", min_length=1, description="the environment variable holding the key")
    format: Literal["wav", "pcm"] = Field("wav", description="the audio Fish sends (either way a 16-bit WAV is kept)")
    sample_rate: Literal[8000, 16000, 24000, 32000, 44100] = Field(44100, description="the audio's sample rate (Hz)")
    normalize: bool = Field(True, description="let Fish normalise numbers and the like in English and Chinese text")
    latency: Literal["normal", "balanced"] = Field("normal", description="normal: best quality; balanced: faster")
    temperature: float = Field(0.7, ge=0, le=1, description="expressiveness: higher varies more")
    top_p: float = Field(0.7, ge=0, le=1, description="nucleus sampling")


class FishAudioSpeech(HostedSpeech):
    name = "fish-audio"
    section = "fish_audio"
    Options = Options
    what = "Fish Audio"
    lookup_hint = "your models on fish.audio (Models, in the dashboard)"
    limits = SpeechCapabilities(cloning=True, enrolls=True, acting="tags", emotions=tuple(sorted(S1_TAGS)),
                                languages=S1_LANGUAGES, bills="bytes", clip_s=(10.0, 60.0), extra="fish-audio",
                                requires=("fishaudio",))

    def __init__(self, options: Options):
        super().__init__(options)
        if options.model != "s1":  # the S2 family detects the language itself, in 80+ languages
            self.capabilities = replace(self.capabilities, languages=())
        self._client = None
        self._lock = threading.Lock()
        self._seen = threading.local()  # the last answer's headers in this thread (the SDK's errors drop them)

    def identity(self) -> dict:
        o = self.options
        return {**super().identity(), "format": o.format, "sample_rate": o.sample_rate, "normalize": o.normalize,
                "latency": o.latency, "temperature": o.temperature, "top_p": o.top_p}

    def client(self):
        """The SDK's client on our own HTTP client: the project's address and timeout, no retries."""
        with self._lock:
            if self._client is None:
                import httpx
                from fishaudio import FishAudio

                o = self.options
                http = httpx.Client(base_url=o.base_url, timeout=httpx.Timeout(o.request_timeout_s, connect=15),
                                    transport=httpx.HTTPTransport(retries=0),
                                    event_hooks={"response": [self._note]})
                self._client = FishAudio(api_key=self.key(), base_url=o.base_url, httpx_client=http)
            return self._client

    def _note(self, response) -> None:
        self._seen.headers = response.headers

    # --- enrollment ---------------------------------------------------------------------------------

    def enroll(self, clip: VoiceClip, client_key: str) -> str:
        audio, client = clip.read(), self.client()
        try:
            voice = client.voices.create(title=clip.label, voices=[audio], texts=[clip.text] if clip.text else None,
                                         description=f"dramaforge: the voice of {clip.name}",
                                         visibility="private", train_mode="fast")
        except Exception as exc:  # noqa: BLE001 -- whatever broke, the request was out: it may have made the voice
            raise self._error(exc, "voice creation", creates=True) from None
        return voice.id

    def enrollment(self, voice_id: str) -> Poll:
        client = self.client()
        try:
            voice = client.voices.get(voice_id)
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, f"looking at voice {voice_id}") from None
        if voice.state == "trained":
            return Poll("done", progress=1.0, result=voice_id)
        if voice.state == "failed":
            why = f"{self.what} could not train voice {voice_id} ({voice.title}) from its clip"
            return Poll("failed", error=PermanentError(f"{why}: check the clip (one clean speaker, 10-60 s)"),
                        detail=why)
        return Poll("queued" if voice.state == "created" else "running")

    def find_voice(self, clip: VoiceClip, client_key: str, sent_at: float) -> str | None:
        """The account's own model titled exactly `clip.label` made since `sent_at` (the oldest that did
        not fail); an older one only when none is newer."""
        client, matches = self.client(), []
        for page in range(1, 11):
            try:
                found = client.voices.list(page_size=100, page_number=page, title=clip.label, self_only=True,
                                           sort_by="created_at")
            except Exception as exc:  # noqa: BLE001
                raise self._error(exc, "voice listing") from None
            matches += [v for v in found.items if v.title == clip.label]
            if len(found.items) < 100 or page * 100 >= found.total:
                break
        # the one this request made: made after it was sent (a minute's clock skew allowed), the oldest such
        usable = [v for v in matches if v.state != "failed"] or matches
        after = [v for v in usable if _epoch(v.created_at) >= sent_at - 60] or usable
        return min(after, key=lambda v: _epoch(v.created_at)).id if after else None

    # --- synthesis ----------------------------------------------------------------------------------

    def synthesize(self, request: SpeechRequest, out_wav: Path) -> None:
        from stages.backends.openai_speech import write_pcm16_wav

        o = self.options
        if not request.voice_id:
            raise PermanentError(f"{self.what}: this line has no enrolled voice (its enrollment runs first)")
        if not 0.5 <= request.speed <= 2.0:
            raise PermanentError(f"{self.what} speaks at 0.5 to 2 times the normal speed; voice.speed is "
                                 f"{request.speed:g}")
        client = self.client()
        from fishaudio.types import Prosody, TTSConfig

        config = TTSConfig(format=o.format, sample_rate=o.sample_rate, normalize=o.normalize, latency=o.latency,
                           prosody=Prosody(speed=request.speed), temperature=o.temperature, top_p=o.top_p)
        doing = f"speech ({o.model})"
        try:
            body = client.tts.convert(text=self.acted(request.text, request.instructions),
                                      reference_id=request.voice_id, config=config, model=o.model)
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, doing) from None
        if o.format == "pcm" and body:
            body = _wav(body, o.sample_rate)
        write_pcm16_wav(body, out_wav, what=f"{self.what} {doing}")

    def acted(self, text: str, instructions: str | None) -> str:
        """The line with its acting cues before it: s1's `(marker)`s (only those it knows), or the S2
        family's free-form `[cue]`s."""
        cues = _cues(instructions)
        if self.options.model == "s1":
            marks = "".join(f"({c.lower()})" for c in cues if c.lower() in S1_TAGS)
        else:
            marks = "".join(f"[{c}]" for c in cues)
        return f"{marks} {text}" if marks else text

    # --- errors -------------------------------------------------------------------------------------

    def _error(self, exc: Exception, doing: str, *, creates: bool = False) -> Exception:
        """The class the job driver and the flows act on. `creates`: the request makes a voice, so an
        answer that never came (or came unreadable) is `AnswerLost`, to be looked up, never re-sent."""
        import httpx
        from fishaudio.exceptions import APIError

        from stages.backends._openai import retry_after_s

        lost = AnswerLost if creates else TransientError
        headers = getattr(self._seen, "headers", None) or {}
        if isinstance(exc, APIError):
            status = exc.status
            said = self._scrub(f"{self.what} {doing} answered {status}: "
                               f"{provider_detail(exc.body or '', headers.get('content-type'))}")
            if status in (401, 403):
                return PermanentError(f"{said} (check the key in ${self.options.api_key_env})")
            if status == 402:
                return PermanentError(f"{said}: the account's credit is used up; top it up at fish.audio (Billing)")
            if status == 404:
                return NotFound(said)
            if status in (408, 409, 429):
                wait = retry_after_s(headers)
                return TransientError(said, retry_after_s=RATE_LIMIT_WAIT_S if wait is None else wait)
            if status >= 500:
                return lost(said, retry_after_s=retry_after_s(headers))
            if is_refusal(None, exc.body or ""):
                return RejectedError(said)
            return PermanentError(said)
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
            return TransientError(f"{self.what} {doing}: cannot connect ({type(exc).__name__}: {exc})")
        if isinstance(exc, httpx.HTTPError):  # sent: a timeout or a dropped connection before the answer
            return lost(f"{self.what} {doing}: no answer ({type(exc).__name__}: {exc or 'timed out'})")
        if isinstance(exc, ValueError):  # a 2xx body that is not JSON, or not the model the SDK expects
            kind = headers.get("content-type") or "no content type"
            return lost(f"{self.what} {doing}: answered with a body that cannot be read ({kind})")
        return AnswerLost(f"{self.what} {doing}: {type(exc).__name__}: {exc}") if creates else exc

    def _scrub(self, message: str) -> str:
        import os

        key = os.environ.get(self.options.api_key_env, "")
        return message.replace(key, "***") if len(key) >= 4 else message


def _cues(instructions: str | None) -> list[str]:
    """The acting cues in `instructions` (`(angry)(whispering)` or `[angry]`; plain text is one cue)."""
    if not instructions or not instructions.strip():
        return []
    found = _CUE.findall(instructions) or [instructions]
    cues = [" ".join(re.sub(r"[()\[\]]", " ", c).split())[:80] for c in found]
    return [c for c in cues if c][:MAX_CUES]


def _wav(pcm: bytes, rate: int) -> bytes:
    """Raw 16-bit mono PCM (what `format: pcm` sends) as a WAV."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm[:len(pcm) - len(pcm) % 2])
    return buf.getvalue()


def _epoch(when) -> float:
    """A model's `created_at` (a datetime, or its ISO text) as seconds since the epoch."""
    from datetime import datetime, timezone

    if isinstance(when, str):
        when = datetime.fromisoformat(when.replace("Z", "+00:00"))
    if isinstance(when, datetime):
        return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()
    return float(when or 0)
