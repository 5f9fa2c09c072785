"""ElevenLabs: each character's reference clip becomes an Instant Voice Clone; every line is then spoken in it.

Called through the official SDK (`elevenlabs` 2.78.0) pointed at `base_url`, with the SDK's retries off
(`request_options={"max_retries": 0}`: the job driver and the flows own retries). Fields, and where each was
checked (SDK paths are under `elevenlabs/` in site-packages; "help" is help.elevenlabs.io):

- Auth header `xi-api-key` (CONFIRMED: core/client_wrapper.py); key variable ELEVENLABS_API_KEY (CONFIRMED:
  base_client.py reads it); host https://api.elevenlabs.io and the regional ones (CONFIRMED: environment.py).
- `POST /v1/voices/add`, multipart: `name`, `files` (one part per file), `description`, `labels` (a JSON
  string; "keys can be language, accent, gender, or age"), `remove_background_noise` (CONFIRMED:
  voices/ivc/raw_client.py). Answer `{voice_id, requires_verification, library_voice_match?}` (CONFIRMED:
  types/add_voice_ivc_response_model.py). No idempotency key exists (CONFIRMED: none in the SDK), so a lost
  answer is looked up by the clip's unique name. A voice that requires verification cannot speak until the
  owner verifies it in the app (its meaning: NOT CONFIRMED beyond the SDK's field docs).
- `GET /v2/voices?search=&page_size=(<=100)&next_page_token=` -> `{voices, has_more, total_count,
  next_page_token}`; `search` matches name, description, labels and category loosely, so the name is
  compared exactly here (CONFIRMED: voices/raw_client.py `search`, types/get_voices_v_2_response.py).
  `Voice.voice_verification {requires_verification, is_verified}` (CONFIRMED: types/voice.py).
- `POST /v1/text-to-speech/{voice_id}?output_format=` with JSON `text`, `model_id`, `language_code`,
  `voice_settings {stability, similarity_boost, style, use_speaker_boost, speed}`, `seed`; the answer is the
  audio (CONFIRMED: text_to_speech/raw_client.py `convert`). `language_code` is "not supported for
  multilingual_v2 models" (CONFIRMED: same docstring), so it is sent to the flash/turbo v2.5 and v3+ models
  only. `output_format` values (CONFIRMED: text_to_speech/types/...output_format.py); `pcm_*` being raw
  16-bit little-endian mono: NOT CONFIRMED (what every client reads it as); 44.1 kHz needs the Pro tier
  (CONFIRMED: SDK docstring).
- Acting: eleven_v3 reads inline audio tags, `[whispers] text`, [laughs], [sighs], [sarcastic], [curious],
  [excited], [crying], ... (CONFIRMED: elevenlabs.io/docs/best-practices/prompting/eleven-v3); later models
  (eleven_v4*) taking them: NOT CONFIRMED (openrouter.ai's model pages). Other models have no such field:
  their acting is None.
- Errors `{"detail": {"status", "message"}}` with codes invalid_api_key, quota_exceeded (401),
  voice_not_found, max_character_limit_exceeded (CONFIRMED: help article 19572237925521); 422 is a
  validation list (CONFIRMED: the SDK's UnprocessableEntityError). 429 codes too_many_concurrent_requests /
  system_busy: NOT CONFIRMED (third-party pages); a moderation refusal's code: NOT CONFIRMED (read from
  its words).
- Price: 1 credit per character (v2, v3), 0.5 for flash/turbo (CONFIRMED: help article 21811236079505);
  Instant Voice Cloning has no per-voice fee but needs a paid plan (NOT CONFIRMED: third-party pages).
- Languages (ISO 639-1; ceb and fil have none): multilingual_v2's 29 and flash/turbo v2.5's 32
  (CONFIRMED: elevenlabs.io/docs/overview/models); v3's 74 (CONFIRMED: help article 17883183930129; its
  last five, tr uk ur vi cy, NOT CONFIRMED: the stored copy is cut short). Clip length 5-180 s: NOT
  CONFIRMED (third-party; ElevenLabs advises clips with a broad emotional range for v3).
"""

from __future__ import annotations

import json
import re
import wave
from dataclasses import replace
from pathlib import Path

from pydantic import Field

from stages.backends._http import AnswerLost, NotFound
from stages.backends._jobs import Poll
from stages.backends._voices import HostedSpeech, HostedSpeechOptions, VoiceClip
from stages.backends.base import (BackendError, PermanentError, RejectedError, SpeechCapabilities, SpeechRequest,
                                  TransientError, is_refusal)
from stages.core.trust import body_summary

_V2 = ("en", "ja", "zh", "de", "hi", "fr", "ko", "pt", "it", "es", "id", "nl", "tr", "fil", "pl", "sv", "bg", "ro",
       "ar", "cs", "el", "fi", "hr", "ms", "sk", "da", "ta", "uk", "ru")
_V25 = _V2 + ("hu", "no", "vi")
_V3 = ("af", "ar", "hy", "as", "az", "be", "bn", "bs", "bg", "ca", "ceb", "ny", "hr", "cs", "da", "nl", "en", "et",
       "fil", "fi", "fr", "gl", "ka", "de", "el", "gu", "ha", "he", "hi", "hu", "is", "id", "ga", "it", "ja", "jv",
       "kn", "kk", "ky", "ko", "lv", "ln", "lt", "lb", "mk", "ms", "ml", "zh", "mr", "ne", "no", "ps", "fa", "pl",
       "pt", "pa", "ro", "ru", "sr", "sd", "sk", "sl", "so", "es", "sw", "sv", "ta", "te", "th", "tr", "uk", "ur",
       "vi", "cy")
_LANGUAGES = {"eleven_multilingual_v2": _V2, "eleven_flash_v2_5": _V25, "eleven_turbo_v2_5": _V25,
              "eleven_v3": _V3, "eleven_flash_v2": ("en",), "eleven_turbo_v2": ("en",)}
_FORMAT = re.compile(r"^(?:(pcm|wav)_(8000|16000|22050|24000|32000|44100|48000)|"
                     r"mp3_(22050_32|24000_48|44100_(32|64|96|128|192)))$")
_LIST_PAGES = 50  # 100 voices a page: past 5,000 voices with one name something else is wrong


def takes_tags(model: str) -> bool:
    """Whether the model reads inline audio tags (`[whispers]`): eleven_v3 and later."""
    m = re.match(r"eleven_v(\d+)", model)
    return bool(m) and int(m.group(1)) >= 3


def takes_language_code(model: str) -> bool:
    """Whether the model takes `language_code` (multilingual v2 does not; English-only ones need none)."""
    return takes_tags(model) or model in ("eleven_flash_v2_5", "eleven_turbo_v2_5")


def iso639(language: str) -> str | None:
    """An eSpeak voice name (en-us, cmn, yue) as the two-letter code ElevenLabs takes; None if it has none."""
    code = {"cmn": "zh", "yue": "zh"}.get(language.lower(), language.lower().split("-")[0])
    return code if re.fullmatch(r"[a-z]{2}|fil", code) else None


class Options(HostedSpeechOptions):
    """`backends.elevenlabs`: ElevenLabs (voice cloning from each character's reference clip)."""

    model: str = Field("eleven_multilingual_v2", min_length=1, description="the speech model (eleven_v3 takes "
                                                                         "acting notes as audio tags)")
    base_url: str = Field("https://api.elevenlabs.io", min_length=1, description="the API's address")
    api_key_env: str = Field("ELEVENLABS_API_KEY", min_length=1, description="the environment variable holding the key")
    output_format: str = Field("pcm_24000", pattern=_FORMAT.pattern, description="what the audio is sent as "
                                                                               "(pcm_/wav_<rate>, mp3_<rate>_<kbps>)")
    stability: float | None = Field(None, ge=0, le=1, description="lower: a broader emotional range (default: "
                                                                 "the voice's own setting)")
    similarity_boost: float | None = Field(None, ge=0, le=1, description="how closely to keep to the clip's voice")
    style: float | None = Field(None, ge=0, le=1, description="style exaggeration")
    use_speaker_boost: bool | None = Field(None, description="boost the likeness to the clip's speaker")
    seed: int | None = Field(None, ge=0, le=4294967295, description="best-effort repeatable audio")
    remove_background_noise: bool = Field(False, description="clean the clip with ElevenLabs' audio isolation "
                                                             "before cloning (can hurt a clean clip)")


class ElevenLabsSpeech(HostedSpeech):
    name = "elevenlabs"
    section = "elevenlabs"
    Options = Options
    what = "ElevenLabs"
    lookup_hint = "ElevenLabs' My Voices page (https://elevenlabs.io/app/voice-lab)"
    limits = SpeechCapabilities(cloning=True, enrolls=True, acting="tags", languages=_V3, bills="characters",
                                clip_s=(5.0, 180.0))

    def __init__(self, options: Options):
        super().__init__(options)
        # What this model takes: tags only where it reads them (elsewhere they would be spoken aloud).
        self.capabilities = replace(self.capabilities, acting="tags" if takes_tags(options.model) else None,
                                    languages=_LANGUAGES.get(options.model, ()))
        self._sdk = None
        self._unusable: dict[str, str] = {}  # voice id -> why it cannot speak yet (it needs verification)

    def identity(self) -> dict:
        o = self.options
        return {**super().identity(), "output_format": o.output_format, "voice_settings": self._settings(1.0),
                "seed": o.seed, "remove_background_noise": o.remove_background_noise,
                "language_code": takes_language_code(o.model)}

    def account(self) -> dict:
        # a clip cleaned by audio isolation is another voice
        return {**super().account(), **({"remove_background_noise": True}
                                         if self.options.remove_background_noise else {})}

    # --- the SDK ------------------------------------------------------------------------------

    def _client(self):
        if self._sdk is None:
            from elevenlabs.client import ElevenLabs

            self._sdk = ElevenLabs(base_url=self.options.base_url.rstrip("/"), api_key=self.key(),
                                   timeout=self.options.request_timeout_s)
        return self._sdk

    def _request_options(self) -> dict:
        return {"max_retries": 0, "timeout_in_seconds": self.options.request_timeout_s}

    def _call(self, call, doing: str, *, sent_may_count: bool):
        """`call(sdk)`'s answer; the SDK's and httpx's exceptions as our classes (see `_error`)."""
        import httpx
        from elevenlabs.core.api_error import ApiError
        from elevenlabs.core.parse_error import ParsingError

        sdk = self._client()
        try:
            return call(sdk)
        except (ApiError, ParsingError, httpx.HTTPError) as exc:
            raise self._error(exc, doing, sent_may_count=sent_may_count) from None

    def _scrub(self, text: str) -> str:
        import os

        key = os.environ.get(self.options.api_key_env, "")
        return text.replace(key, "***") if len(key) >= 4 else text

    def _error(self, exc: Exception, doing: str, *, sent_may_count: bool) -> BackendError:
        """The SDK's exception as our class. `sent_may_count`: a request that may have been acted on with
        its answer lost is `AnswerLost` (an enrollment), else a plain TransientError (a line)."""
        import httpx

        lost = AnswerLost if sent_may_count else TransientError
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
            return TransientError(f"ElevenLabs {doing}: cannot connect ({type(exc).__name__}: {exc})")
        if isinstance(exc, httpx.HTTPError):  # sent (or partly): a timeout or a dropped connection
            return lost(self._scrub(f"ElevenLabs {doing}: no answer ({type(exc).__name__}: {exc or 'timed out'})"))
        status = getattr(exc, "status_code", None) or 0
        headers = {str(k).lower(): v for k, v in (getattr(exc, "headers", None) or {}).items()}
        code, words = _detail(getattr(exc, "body", None), headers.get("content-type"))
        message = self._scrub(f"ElevenLabs {doing} answered {status}: {code + ': ' if code else ''}{words}")
        if 200 <= status < 300:  # a 2xx that is not the promised JSON (a proxy's page): it may have been made
            return lost(message)
        if status in (408, 409, 429):  # 429: too_many_concurrent_requests / system_busy
            from stages.backends._openai import retry_after_s

            return TransientError(message, retry_after_s=retry_after_s(headers))
        if status >= 500 or not status:
            return lost(message)
        if code == "quota_exceeded":  # answered 401, and no key fixes it
            return PermanentError(f"{message} (the account's credits are used up: top up, or enable usage-based "
                                  f"billing)")
        if code == "voice_not_found" or status in (404, 410):
            return NotFound(message)
        if is_refusal(code, words):
            return RejectedError(message)
        if status in (401, 403):
            return PermanentError(f"{message} (check the key in ${self.options.api_key_env})")
        return PermanentError(message)

    # --- enrollment -----------------------------------------------------------------------------

    def enroll(self, clip: VoiceClip, client_key: str) -> str:
        data = clip.read()
        labels = {"language": iso639(clip.language)} if iso639(clip.language) else {}
        made = self._call(lambda sdk: sdk.voices.ivc.create(
            name=clip.label, files=[(clip.path.name, data, clip.mime)], labels=labels,
            description=f"dramaforge: the voice of {clip.name} ({clip.character}), from a clip with sha256 "
                        f"{clip.sha256[:12]}; job {client_key}",
            remove_background_noise=self.options.remove_background_noise,
            request_options=self._request_options()), f"voice cloning of {clip.character}", sent_may_count=True)
        voice_id = getattr(made, "voice_id", None)
        if not isinstance(voice_id, str) or not voice_id:
            raise AnswerLost(f"ElevenLabs voice cloning of {clip.character} answered without a voice_id")
        if getattr(made, "requires_verification", False):
            self._unusable[voice_id] = _needs_verification(voice_id, clip.label, getattr(made, "library_voice_match",
                                                                                         None))
        return voice_id

    def enrollment(self, voice_id: str) -> Poll:
        """An Instant Voice Clone speaks at once, unless ElevenLabs wants it verified first (asked of the
        voice itself, so an enrollment resumed after a crash is judged the same)."""
        if voice_id in self._unusable:
            return Poll("failed", error=PermanentError(self._unusable[voice_id]))
        voice = self._call(lambda sdk: sdk.voices.get(voice_id, request_options=self._request_options()),
                           f"looking at voice {voice_id}", sent_may_count=False)
        check = getattr(voice, "voice_verification", None)
        if check is not None and check.requires_verification and not check.is_verified:
            return Poll("failed", error=PermanentError(_needs_verification(voice_id, getattr(voice, "name", ""), None)))
        return Poll("done", result=voice_id)

    def find_voice(self, clip: VoiceClip, client_key: str, sent_at: float) -> str | None:
        """The voice named `clip.label` exactly (the search is loose), newest first."""
        token, found = None, []
        for _ in range(_LIST_PAGES):
            page = self._call(lambda sdk, t=token: sdk.voices.search(
                search=clip.label, page_size=100, next_page_token=t, request_options=self._request_options()),
                "voice listing", sent_may_count=False)
            found += [v for v in (page.voices or []) if v.name == clip.label]
            token = page.next_page_token
            if not page.has_more or not token:
                break
        if not found:
            return None
        voice = max(found, key=lambda v: v.created_at_unix or 0)
        check = voice.voice_verification
        if check is not None and check.requires_verification and not check.is_verified:
            self._unusable[voice.voice_id] = _needs_verification(voice.voice_id, clip.label, None)
        return voice.voice_id

    # --- synthesis ------------------------------------------------------------------------------

    def _settings(self, speed: float) -> dict:
        o = self.options
        settings = {"stability": o.stability, "similarity_boost": o.similarity_boost, "style": o.style,
                    "use_speaker_boost": o.use_speaker_boost, "speed": speed if speed != 1.0 else None}
        return {k: v for k, v in settings.items() if v is not None}

    def synthesize(self, request: SpeechRequest, out_wav: Path) -> None:
        from stages.backends.openai_speech import write_pcm16_wav

        o = self.options
        if not request.voice_id:
            raise PermanentError("ElevenLabs speaks only in an enrolled voice, and this line has no voice id")
        text = request.text
        if self.capabilities.acting == "tags" and request.instructions and request.instructions.strip():
            tags = request.instructions.strip()
            text = f"{tags if tags.startswith('[') else f'[{tags}]'} {text}"
        args = {"text": text, "model_id": o.model, "output_format": o.output_format}
        language = iso639(request.language)
        if language and takes_language_code(o.model):
            args["language_code"] = language
        if self._settings(request.speed):
            args["voice_settings"] = self._settings(request.speed)
        if o.seed is not None:
            args["seed"] = o.seed
        doing = f"speech ({o.model}, voice {request.voice_id})"

        def convert(sdk) -> tuple[str, bytes]:
            with sdk.text_to_speech.with_raw_response.convert(request.voice_id, **args,
                                                              request_options=self._request_options()) as resp:
                return (resp.headers.get("content-type") or "").split(";")[0].strip().lower(), b"".join(resp.data)

        kind, body = self._call(convert, doing, sent_may_count=False)
        if kind.startswith(("text/", "application/json")):  # a 200 page from a proxy, not audio
            raise TransientError(f"ElevenLabs {doing} answered 200 with {body_summary(body, kind)}, not audio")
        what = f"ElevenLabs {doing}"
        if o.output_format.startswith("pcm_") and not body.startswith(b"RIFF"):  # raw samples, no header
            write_pcm(body, int(o.output_format.split("_")[1]), out_wav, what=what)
        else:
            write_pcm16_wav(body, out_wav, what=what)


def write_pcm(body: bytes, rate: int, out_wav: Path, *, what: str) -> None:
    """Raw 16-bit little-endian mono samples as a WAV."""
    body = body[:len(body) - len(body) % 2]  # a stream cut mid-sample ends on a whole one
    if not body:
        raise TransientError(f"{what} sent no audio")
    with wave.open(str(out_wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(body)


def _detail(body, content_type: str | None) -> tuple[str, str]:
    """(code, words) of an error body: `{"detail": {"status", "message"}}`, a 422's list, or a description
    of a body that is not JSON (never its text: a proxy's page may echo the request)."""
    if isinstance(body, (str, bytes)):
        try:
            body = json.loads(body) if body.strip() else None
        except ValueError:
            return "", body_summary(body, content_type)
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, dict):
        code = str(detail.get("status") or detail.get("code") or "")
        return code, str(detail.get("message") or json.dumps(detail, ensure_ascii=False))[:500]
    if isinstance(detail, list):  # a validation error: [{loc, msg, type}]
        parts = [f"{'.'.join(str(x) for x in d.get('loc', []))}: {d.get('msg')}" if isinstance(d, dict) else str(d)
                 for d in detail]
        return "validation_error", "; ".join(parts)[:500]
    return "", str(detail)[:500] if detail else "no body"


def _needs_verification(voice_id: str, label: str, match) -> str:
    why = (f"its clip matches the protected Voice Library voice {match.library_voice_id}"
           if getattr(match, "library_voice_id", None) else "ElevenLabs asks for it")
    return (f"ElevenLabs made voice {voice_id} ({label}) but it needs verification before it can speak ({why}). "
            f"Use a clip of a voice you may clone (a rerun sends the clip again and makes another voice)")
