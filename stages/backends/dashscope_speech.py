"""Alibaba Cloud Model Studio (DashScope) speech in a cloned voice: Qwen voice cloning and Qwen3-TTS-VC.

Why Qwen and not CosyVoice: CosyVoice's `voice-enrollment` `create_voice` takes the clip as a public `url`
(SDK `dashscope/v2/resources/audio/customization.py` `Voices.create(url=...)`; the CosyVoice clone docs),
so a local clip would have to be hosted first. Qwen's enrollment takes it inline as a `data:` URI. (A
late-2026 guide, help.aliyun.com/en/document_detail/3032823.html, says CosyVoice and Qwen-Audio-TTS now
take a Base64 data URI too: not relied on here.)

Protocol. C = CONFIRMED (source), N = NOT CONFIRMED.
- hosts (C, SDK `dashscope/v2/_config.py` LEGACY_GATEWAY_HOSTS + "/api/v1"; Qwen voice cloning is offered
  in both regions: the Model Studio voice cloning guide): `region` beijing `https://dashscope.aliyuncs.com`,
  singapore `https://dashscope-intl.aliyuncs.com`, or a `workspace`'s own host
  `https://{id}.{cn-beijing|ap-southeast-1}.maas.aliyuncs.com`, each with `/api/v1`. Keys are per region.
  Auth `Authorization: Bearer $DASHSCOPE_API_KEY` (C, SDK `v2/transport/http.py` `_build_headers`).
- enroll (C, alibabacloud.com/help/en/model-studio/qwen-tts-voice-cloning, docs.qwencloud.com/api-reference/
  speech-synthesis/voice-cloning/qwen/create-voice): `POST /services/audio/tts/customization` `{model:
  "qwen-voice-enrollment", input: {action: "create", target_model, preferred_name ([A-Za-z0-9_]{1,16}),
  audio: {data: "data:audio/wav|mpeg|mp4;base64,..." (< 10 MB)}, text?, language?}}` -> `{output: {voice,
  target_model, fallback_mode?, fallback_reason?}, usage: {count}, request_id}`. The voice is named
  `qwen-tts-vc-<preferred_name>-voice-<timestamp>-<4 hex>` (C, same pages' example) and usable at once: no
  training, no status (C, "returns a voice identifier instantly"), so `enrollment` is the base class's.
  Clip: WAV 16-bit / MP3 / M4A, mono, >= 24 kHz, <= 60 s (10-20 s recommended), >= 3 s of clean speech (C).
  No idempotency key (C: none documented): a lost answer is looked up by `preferred_name`.
- list (C, docs.qwencloud.com .../qwen/list-voices): same path, `{action: "list", page_size, page_index}` ->
  `output: {voice_list: [{voice, target_model, language, gmt_create, gmt_modified}], total_count}`. The
  page size limit (N): pages of 10, the docs' example. Whether a just-made voice is listed at once (N): a
  lost enrollment not found stops as unknown-job (`lookup_complete` False), never re-sent.
- speak (C, SDK `v2/resources/audio/http_tts.py` `HttpTts.synthesize`, routed there for `qwen*` models; the
  "Speech synthesis (Qwen-TTS)" API reference): `POST /services/aigc/multimodal-generation/generation`
  `{model: <the voice's target_model> (C), input: {text, voice, language_type}}` -> `output.audio {url (a
  temporary link), data, id, expires_at}`. `language_type` values Auto, Chinese, English, German, Italian,
  Portuguese, Spanish, Japanese, Korean, French, Russian (N: third-party copies of the reference);
  `usage.characters` (N). The audio is a WAV (N: taken as it comes; `write_pcm16_wav` converts any format).
- acting: none. `instructions` belongs to `qwen3-tts-instruct-flash` (C, the API reference's example),
  which speaks system voices only (N: third-party gateways' voice enums); the VC model is Qwen3-TTS's
  voice-clone model, which takes no instruction (N: the open Base model has none). No speed control (N).
- errors (C, SDK `v2/errors.py` + Model Studio error codes): HTTP status + `{request_id, code, message}`;
  Throttling* 429, InvalidApiKey 401, AccessDenied 403, DataInspectionFailed 400 (content refused),
  Arrearage (balance), InvalidParameter / Audio.PreprocessError 400, InternalError 500.
- price (N, third-party pages quoting the intl price list): qwen3-tts-vc-2026-01-22 $0.115 per 10k
  characters; qwen-voice-enrollment $0.01 per voice.

Calls go through the `dashscope` 2.x `Client` (its own base URL and key per backend, `max_retries=0`):
synthesis through `audio.tts.http.synthesize`, enrollment and the listing through its transport (the SDK
wraps only CosyVoice's `create_voice`/`list_voice` actions), so one error mapping covers both.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import logging
import os
import re
import threading
import wave
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from stages.backends._http import AnswerLost, Http, NotFound, body_summary
from stages.backends._openai import retry_after_s
from stages.backends._voices import HostedSpeech, HostedSpeechOptions, VoiceClip
from stages.backends.base import (
    PermanentError,
    RejectedError,
    SpeechCapabilities,
    SpeechRequest,
    TransientError,
    is_refusal,
)

log = logging.getLogger(__name__)

HOSTS = {"beijing": "https://dashscope.aliyuncs.com/api/v1", "singapore": "https://dashscope-intl.aliyuncs.com/api/v1"}
WORKSPACE_REGIONS = {"beijing": "cn-beijing", "singapore": "ap-southeast-1"}
ENROLLMENT_MODEL = "qwen-voice-enrollment"
CUSTOMIZATION = "/services/audio/tts/customization"
LIST_PAGE = 10  # the docs' example page size; a larger one is not documented
LIST_PAGES = 500  # at most this many pages are read (5,000 voices)
MAX_DATA_URI = 10_000_000  # "keep encoded data under 10 MB"
MAX_CLIP_S = 60.0
MIN_RATE = 24000
LANGUAGE_TYPES = {"zh": "Chinese", "en": "English", "de": "German", "it": "Italian", "pt": "Portuguese",
                  "es": "Spanish", "ja": "Japanese", "ko": "Korean", "fr": "French", "ru": "Russian"}
_ISO = {"cmn": "zh", "yue": "zh", "zho": "zh", "eng": "en", "deu": "de", "ita": "it", "por": "pt", "spa": "es",
        "jpn": "ja", "kor": "ko", "fra": "fr", "rus": "ru"}
_REFUSED = ("DataInspectionFailed", "DataInspection", "IPInfringementSuspect")
_VOICE_NAME = re.compile(r"qwen-[a-z]+-vc-(?P<name>[A-Za-z0-9_]+)-voice-")


class Options(HostedSpeechOptions):
    """`backends.dashscope_tts`: Alibaba DashScope speech (voice cloning from each character's reference clip)."""

    model: str = Field("qwen3-tts-vc-2026-01-22", min_length=1,
                       description="the Qwen3-TTS-VC model that speaks; each voice is enrolled for it (a voice "
                                   "made for one model cannot speak in another)")
    region: Literal["beijing", "singapore"] = Field(
        "beijing", description="whose host and keys (keys are per region): beijing (dashscope.aliyuncs.com) or "
                               "singapore (dashscope-intl.aliyuncs.com); both offer Qwen voice cloning")
    workspace: str | None = Field(None, pattern=r"^[A-Za-z0-9-]+$", description="a workspace id: its own host, "
                                  "{id}.{cn-beijing|ap-southeast-1}.maas.aliyuncs.com")
    base_url: str | None = Field(None, description="the API's address (default: the region's or the workspace's "
                                                   "host, with /api/v1)")
    api_key_env: str = Field("DASHSCOPE_API_KEY", min_length=1, description="the environment variable holding the key")

    @model_validator(mode="after")
    def _host(self) -> Options:
        if self.base_url is None:
            self.base_url = (f"https://{self.workspace}.{WORKSPACE_REGIONS[self.region]}.maas.aliyuncs.com/api/v1"
                             if self.workspace else HOSTS[self.region])
        return self


def iso_language(language: str | None) -> str:
    """`en-us`, `cmn`, `zh-CN` -> `en`, `zh`, `zh` (eSpeak names and BCP 47 tags to ISO 639-1)."""
    code = (language or "").lower().replace("_", "-").split("-")[0]
    return _ISO.get(code, code)


def preferred_name(clip: VoiceClip) -> str:
    """The clip's name at DashScope (16 of [A-Za-z0-9_]): unique per character and clip, as `clip.label` is."""
    return "df" + hashlib.sha256(clip.label.encode()).hexdigest()[:14]


class DashscopeSpeech(HostedSpeech):
    name = "dashscope-tts"
    section = "dashscope_tts"
    Options = Options
    what = "Alibaba DashScope speech"
    lookup_hint = ("Model Studio's voice list (POST /api/v1/services/audio/tts/customization with model "
                   "qwen-voice-enrollment, action list)")
    limits = SpeechCapabilities(cloning=True, enrolls=True, acting=None, bills="characters",
                                languages=tuple(LANGUAGE_TYPES), clip_s=(3.0, MAX_CLIP_S),
                                extra="dashscope", requires=("dashscope",))

    def __init__(self, options: Options):
        super().__init__(options)
        self._client, self._lock = None, threading.Lock()

    def identity(self) -> dict:
        return {**super().identity(), "enrollment": ENROLLMENT_MODEL, "format": "wav"}

    def account(self) -> dict:
        # a Qwen voice speaks only with the model it was enrolled for (its target_model)
        return {**super().account(), "model": self.options.model}

    # --- the SDK client -------------------------------------------------------------------------

    def client(self):
        """One `dashscope.Client` for this backend: its own address, no retries (the flows retry)."""
        with self._lock:
            if self._client is None:
                import warnings

                from dashscope.v2.client import Client

                o = self.options
                client = Client(api_key=self.key(), base_url=_api_root(o.base_url), timeout=o.request_timeout_s,
                                max_retries=0)
                with warnings.catch_warnings():  # "the 2.0 audio API is a preview": we pin the SDK's version
                    warnings.simplefilter("ignore", FutureWarning)
                    client.audio  # noqa: B018 (mounts the audio resources once)
                self._client = client
            return self._client

    def _post(self, path: str, body: dict, doing: str, *, sent_matters: bool) -> dict:
        """One JSON POST through the SDK's transport; its answer, or the error class for what went wrong."""
        from dashscope.v2.errors import DashScopeError
        from dashscope.v2.types.common import response_body

        key = self.key()
        try:
            resp = self.client().transport.request("POST", path, json=body, api_key=key, sdk_module="audio",
                                                   timeout=self.options.request_timeout_s)
        except DashScopeError as exc:
            raise self._error(exc, doing, sent_matters=sent_matters) from None
        try:
            return response_body(resp)
        except DashScopeError as exc:
            raise self._error(exc, doing, sent_matters=sent_matters) from None
        except ValueError:  # a 2xx whose body is not a JSON object (a proxy's page)
            raise (AnswerLost if sent_matters else TransientError)(
                f"{self.what} {doing}: answered {resp.status_code} with "
                f"{body_summary(resp.text, resp.headers.get('content-type'))}") from None

    def _error(self, exc, doing: str, *, sent_matters: bool) -> Exception:
        """A DashScope SDK error as the class a flow acts on. `sent_matters`: a request that may have made a
        voice, whose lost answer must be `AnswerLost`, never an error that invites sending it again."""
        import httpx
        from dashscope.v2.errors import APIConnectionError

        if isinstance(exc, APIConnectionError):
            cause = exc.__cause__
            never_sent = isinstance(cause, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
            lost = AnswerLost if sent_matters and not never_sent else TransientError
            return lost(f"{self.what} {doing}: {'cannot connect' if never_sent else 'no answer'} "
                        f"({type(cause or exc).__name__}: {cause or exc})")
        status, code = exc.status_code or 0, exc.code or ""
        body = exc.body if isinstance(exc.body, dict) else {}
        said = next((v for v in (body.get("message"), body.get("detail")) if isinstance(v, str) and v), "")
        # a body that is not JSON is described, never quoted (a proxy's page may echo the request)
        detail = said or (exc.message if status == 200 else body_summary(exc.message or ""))
        request_id = f" (request {exc.request_id})" if exc.request_id else ""
        message = self._scrub(f"{self.what} {doing} answered {status}{' ' + code if code else ''}: "
                              f"{detail}{request_id}")
        if code.startswith(_REFUSED) or is_refusal(code, said):
            return RejectedError(message)
        if status == 429 or code.startswith("Throttling"):
            return TransientError(message, retry_after_s=retry_after_s(exc.headers))
        if status in (401, 403) or code in ("InvalidApiKey", "AccessDenied"):
            return PermanentError(f"{message} (check the key in ${self.options.api_key_env}; keys are per region: "
                                  f"{_api_root(self.options.base_url)})")
        if code == "Arrearage":
            return PermanentError(f"{message} (the account's balance is overdue: top it up in the console)")
        if status >= 500 or status == 408:
            return (AnswerLost if sent_matters else TransientError)(message,
                                                                    retry_after_s=retry_after_s(exc.headers))
        return PermanentError(message)

    def _scrub(self, message: str) -> str:
        key = os.environ.get(self.options.api_key_env, "")
        return message.replace(key, "***") if len(key) >= 4 else message

    # --- enrollment -----------------------------------------------------------------------------

    def enroll(self, clip: VoiceClip, client_key: str) -> str:
        o = self.options
        name = preferred_name(clip)
        fields = {"action": "create", "target_model": o.model, "preferred_name": name,
                  "audio": {"data": clip_data_uri(clip)}}
        if clip.text.strip():
            fields["text"] = clip.text.strip()  # checked against the audio: a better voice, or a clear refusal
        if iso_language(clip.language) in LANGUAGE_TYPES:
            fields["language"] = iso_language(clip.language)
        answer = self._post(CUSTOMIZATION, {"model": ENROLLMENT_MODEL, "input": fields},
                            f"voice enrollment of {clip.name} ({o.model})", sent_matters=True)
        output = answer.get("output") if isinstance(answer.get("output"), dict) else {}
        voice = output.get("voice")
        if not isinstance(voice, str) or not voice:
            raise AnswerLost(f"{self.what} voice enrollment of {clip.name}: the answer names no voice "
                             f"(request {answer.get('request_id')})")
        if output.get("fallback_mode"):
            log.warning("%s: %s's voice %s was made in degraded mode (%s): a cleaner 10-20 s clip, with its "
                        "transcript, clones better", self.what, clip.name, voice, output.get("fallback_reason"))
        return voice

    def find_voice(self, clip: VoiceClip, client_key: str, sent_at: float) -> str | None:
        """The newest voice of this model named for this clip (its `preferred_name`), or None."""
        name, found = preferred_name(clip), []
        for page in range(LIST_PAGES):
            answer = self._post(CUSTOMIZATION, {"model": ENROLLMENT_MODEL, "input": {
                "action": "list", "page_size": LIST_PAGE, "page_index": page}}, "voice listing", sent_matters=False)
            output = answer.get("output") if isinstance(answer.get("output"), dict) else {}
            voices = [v for v in output.get("voice_list") or [] if isinstance(v, dict)]
            found += [v for v in voices if _named(v, name) and v.get("target_model", self.options.model)
                      == self.options.model]
            total = output.get("total_count")
            if not voices or (isinstance(total, int) and (page + 1) * LIST_PAGE >= total):
                break
        found.sort(key=lambda v: str(v.get("gmt_create") or ""), reverse=True)
        return found[0]["voice"] if found else None

    # --- speech ---------------------------------------------------------------------------------

    def synthesize(self, request: SpeechRequest, out_wav: Path) -> None:
        from dashscope.v2.errors import DashScopeError

        from stages.backends.openai_speech import write_pcm16_wav

        o = self.options
        if not request.voice_id:
            raise PermanentError(f"{self.what}: this line has no enrolled voice (enroll the character's clip first)")
        doing = f"speech ({o.model})"
        try:
            answer = self.client().audio.tts.http.synthesize(
                request.text, model=o.model, voice=request.voice_id,
                language_type=LANGUAGE_TYPES.get(iso_language(request.language), "Auto"),
                timeout=o.request_timeout_s, api_key=self.key())
        except DashScopeError as exc:
            raise self._error(exc, doing, sent_matters=False) from None
        except ValueError:  # a 2xx that is not JSON
            raise TransientError(f"{self.what} {doing}: the answer is not JSON") from None
        audio = answer.output.get("audio") if isinstance(answer.output.get("audio"), dict) else {}
        if audio.get("data"):
            try:
                body = base64.b64decode(audio["data"], validate=True)
            except ValueError:
                raise TransientError(f"{self.what} {doing}: the audio data is not base64") from None
        elif audio.get("url"):
            body = self._download(audio["url"], out_wav, doing)
        else:
            raise TransientError(f"{self.what} {doing}: the answer carries no audio (request {answer.request_id})")
        write_pcm16_wav(body, out_wav, what=f"{self.what} {doing}")

    def _download(self, url: str, out_wav: Path, doing: str) -> bytes:
        from stages.core.artifacts import partial_file

        fd, tmp = partial_file(out_wav.parent, out_wav.stem.lstrip("."), ".audio", tag="download")
        os.close(fd)
        try:
            Http({}, what=self.what, key_env=self.options.api_key_env).download(url, tmp, f"{doing} download",
                                                                                timeout_s=self.options.request_timeout_s)
            return tmp.read_bytes()
        except NotFound as exc:  # a link gone at once: speak the line again
            raise TransientError(str(exc)) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _api_root(base_url: str) -> str:
    """The native API's root: `base_url` as given, `/api/v1` added to a bare host."""
    root = base_url.rstrip("/")
    return root if root.endswith("/api/v1") else f"{root}/api/v1"


def _named(voice: dict, name: str) -> bool:
    """Whether a listed voice was made with `preferred_name` `name` (its name embeds it; a list that carries
    the field is matched on it)."""
    if voice.get("preferred_name") is not None:
        return voice.get("preferred_name") == name
    m = _VOICE_NAME.match(str(voice.get("voice") or ""))
    return bool(m) and m.group("name") == name


def clip_data_uri(clip: VoiceClip) -> str:
    """The clip as a `data:` URI the enrollment takes: WAV (16-bit PCM, mono, >= 24 kHz), MP3 or M4A as they
    are; anything else converted to such a WAV. Refused here when longer or larger than the docs allow."""
    data, mime = clip.read(), clip.mime
    if mime not in ("audio/wav", "audio/mpeg", "audio/mp4") or (mime == "audio/wav" and not _fit_wav(data)):
        data, mime = _to_wav(clip), "audio/wav"
    if mime == "audio/wav":
        with wave.open(io.BytesIO(data)) as w:
            seconds = w.getnframes() / w.getframerate()
        if seconds > MAX_CLIP_S:
            raise PermanentError(f"{clip.name}'s reference clip {clip.path} is {seconds:.0f} s long; DashScope takes "
                                 f"at most {MAX_CLIP_S:.0f} s (10-20 s of clean speech is best)")
    uri = f"data:{mime};base64,{base64.b64encode(data).decode()}"
    if len(uri) >= MAX_DATA_URI:
        raise PermanentError(f"{clip.name}'s reference clip {clip.path} is {len(data):,} bytes; DashScope takes "
                             "under 10 MB encoded (10-20 s of speech is best)")
    return uri


def _fit_wav(data: bytes) -> bool:
    try:
        with wave.open(io.BytesIO(data)) as w:
            return w.getsampwidth() == 2 and w.getnchannels() == 1 and w.getframerate() >= MIN_RATE
    except (wave.Error, EOFError):
        return False


def _to_wav(clip: VoiceClip) -> bytes:
    """The clip as a 16-bit mono WAV at 24 kHz (the least the docs take; the model speaks at 24 kHz)."""
    import tempfile

    from stages.core.errors import RenderError
    from stages.core.media import run_ffmpeg

    with tempfile.TemporaryDirectory(prefix="dashscope-clip-") as tmp:
        out = Path(tmp) / "clip.wav"
        try:
            run_ffmpeg(["-i", str(clip.path), "-vn", "-ac", "1", "-ar", str(MIN_RATE), "-c:a", "pcm_s16le",
                        str(out)], what="converting the reference clip", timeout_s=120)
        except RenderError as exc:
            raise PermanentError(f"{clip.name}'s reference clip {clip.path} cannot be decoded: {exc.message}") from exc
        return out.read_bytes()
