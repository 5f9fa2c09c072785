"""Volcengine (Doubao) speech, 声音复刻: each character's voice trained into a voice slot bought in the console
(a speaker id `S_...`), every line spoken with the v1 HTTP TTS. There is no official Python SDK: `Http`.

A slot, not a made voice: the API cannot create a speaker id; the console sells them, each with a few
trainings. `speakers` maps each character to theirs; `enroll` uploads the clip into it (a paid training that
is not idempotent). A character's new clip retrains the same slot, and their earlier voice is gone.
The voice id kept is `<slot>@<first 12 of the clip's sha256>`: one slot serves every clip a character ever
had, and the job journal refuses a looked-up id that another row already holds.

A lost upload answer is looked up with the slot's status (free, `find_voice`): training (1), trained (2),
failed (3) or active (4) with a `create_time` no earlier than `SKEW_S` (60 s) before the upload was sent
means this upload was made. An older training, or none (0), is not taken for it: the row stays unknown and
nothing is re-sent. `create_time` is NOT CONFIRMED to change on a retraining, so the lookup is never called
complete: no newer training proves nothing. For the same reason a poll right after an upload reads a slot
still showing an older training as not yet updated, for `STALE_S` at most.

Fields (C = CONFIRMED, with its source; N = NOT CONFIRMED). Docs: [clone]
https://www.volcengine.com/docs/6561/1305191 (声音复刻API-2.0) and /6561/1167808; [tts] /6561/79820 (HTTP
一次性合成, read in its mirror MatthewHA233/LingFlow `文档/大模型语音合成API--豆包语音-火山引擎.md`);
[billing] https://www.volcengine.com/docs/6561/1359369. The console lists both v1 APIs as 不推荐 now.
- C [clone]: `POST /api/v1/mega_tts/audio/upload`, headers `Authorization: Bearer;{token}` and `Resource-Id:
  volc.megatts.voiceclone`; body `appid`, `speaker_id`, `audios: [{audio_bytes (base64), audio_format}]` (one
  file, <= 10 MB, wav/mp3/ogg/m4a/aac/pcm), `source: 2`, `language` (cn = 0), `model_type` 1 (the ICL voice,
  spoken with cluster `volcano_icl`, `volcano_icl_concurr` on concurrency billing); answer `{BaseResp:
  {StatusCode: 0, StatusMessage}, speaker_id}`; code 1109 (WER). `POST /api/v1/mega_tts/status {appid, speaker_id}`.
- N: language 1 en, 2 ja, 3 es, 4 id, 5 pt (SDKs); model_type 4 with Resource-Id `seed-icl-2.0` (third-party
  Go SDK); status 0 none, 1 training, 2 trained, 3 failed, 4 active, `create_time` (ms), `version` (SDKs);
  upload codes 1001 bad request, 1104 too like a known voice, 1107 unknown slot, 1123 no trainings left and
  1101-1122 clip faults (a third-party client's table); the HTTP status of error answers (issues show 403
  with code 3001): the code in the body decides.
- C [tts]: `POST /api/v1/tts` `{app: {appid, token (any non-empty: no key goes in the body), cluster},
  user: {uid}, audio: {voice_type, encoding wav, rate 8000/16000/24000, speed_ratio [0.1, 2],
  explicit_language ja/es-mx/id/pt-br}, request: {reqid (new per call: a reused one is 3006), text (<= 1024
  UTF-8 bytes), operation: query}}` -> `{code: 3000, data (base64 audio)}`; codes 3001 invalid, 3003
  concurrency, 3005 busy, 3010 too long, 3011 bad text, 3030-3040 retry, 3050 no such voice; messages
  "requested grant not found" (auth), "access denied" (voice not granted), "quota exceeded for types: ...".
- N: `emotion` + `enable_emotion` for cloned voices: [tts] lists them only for the "multi-emotion" stock voices
  (its example: angry), so acting is off unless `emotion: true`; the other emotion words are from that list.
- Billing, C [billing]: cloned-voice synthesis by characters; slots by count and a monthly storage fee
  (prepaid). The amounts: N.
"""

from __future__ import annotations

import base64
import json
import os
import re
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from stages.backends._http import AnswerLost, Http
from stages.backends._jobs import Poll
from stages.backends._voices import HostedSpeech, HostedSpeechOptions, VoiceClip
from stages.backends.base import (BackendError, PermanentError, RejectedError, SpeechCapabilities, SpeechRequest,
                                  TransientError, is_refusal)
from stages.core.trust import join_url

MODELS = {"seed-icl-1.0": (1, "volc.megatts.voiceclone"), "seed-icl-2.0": (4, "seed-icl-2.0")}  # model_type, header
FORMATS = ("wav", "mp3", "ogg", "m4a", "aac")  # as uploaded; others become WAV first (pcm: raw 24 kHz only)
MAX_CLIP_BYTES = 10 * 1024 * 1024
LANGUAGES = {"zh": 0, "cmn": 0, "yue": 0, "en": 1, "ja": 2, "es": 3, "id": 4, "pt": 5}  # the upload's codes
EXPLICIT = {"ja": "ja", "es": "es-mx", "id": "id", "pt": "pt-br"}  # zh and en: the default reads both
EMOTIONS = ("happy", "sad", "angry", "surprised", "fear", "hate", "excited", "coldness", "neutral")
SKEW_S = 60.0  # a training this long before the upload was sent still counts as its (clocks differ)
STALE_S = 120.0  # right after an upload, a status showing an older training is read as not yet updated
MAX_TEXT_BYTES = 1024
_RETRY = {3003, 3005, 3006, 3030, 3031, 3032, 3040}  # 3006: a reused reqid; every call sends a new one
_AUTH = re.compile(r"grant not found|authenticate request|invalid auth|invalid token", re.IGNORECASE)
_CLIP_FAULTS = {1101, 1102, 1103, 1105, 1108, 1109, 1111, 1112, 1113, 1114, 1122}


class Options(HostedSpeechOptions):
    """`backends.volcengine_tts`: Volcengine speech, each character's voice trained into a slot bought in the
    console (声音复刻) and spoken with the HTTP TTS."""

    model: str = Field("seed-icl-1.0", min_length=1, description="seed-icl-1.0 (声音复刻 ICL, model_type 1) or "
                                                                 "seed-icl-2.0 (model_type 4: not confirmed)")
    base_url: str = Field("https://openspeech.bytedance.com", min_length=1, description="the API's address")
    api_key_env: str = Field("VOLCENGINE_TTS_ACCESS_TOKEN", min_length=1,
                             description="the environment variable holding the access token")
    app_id_env: str = Field("VOLCENGINE_TTS_APP_ID", description="the environment variable holding the console's "
                                                                 "APP ID (not secret; kept out of project files)")
    speakers: dict[str, str] = Field(default_factory=dict, description="each character id -> the speaker id "
                                                                        "(S_...) of a voice slot bought for them")
    cluster: str = Field("volcano_icl", pattern=r"^volcano_icl(_concurr)?$",
                         description="volcano_icl (billed by characters) or volcano_icl_concurr (by concurrency)")
    rate: Literal[8000, 16000, 24000] = Field(24000, description="the sample rate asked for")
    emotion: bool = Field(False, description="send each line's acting note as audio.emotion (the docs confirm it "
                                             "only for stock multi-emotion voices, not for cloned ones)")

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        if value not in MODELS:
            raise ValueError(f"model {value!r} is not one of {', '.join(MODELS)}")
        return value

    @field_validator("app_id_env")
    @classmethod
    def _app_env(cls, value: str) -> str:  # the value goes in request bodies: only an app id's variable
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*APP_?ID", value):
            raise ValueError(f"app_id_env {value!r} must name an app id's variable (…_APP_ID)")
        return value

    @field_validator("speakers")
    @classmethod
    def _slots(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [f"{c}: {s!r}" for c, s in value.items() if not re.fullmatch(r"S_[A-Za-z0-9_]+", s)]
        if bad:
            raise ValueError(f"speaker ids are the console's S_... slot ids, not {', '.join(bad)}")
        shared = sorted({s for s in value.values() if list(value.values()).count(s) > 1})
        if shared:
            raise ValueError(f"one slot holds one voice: {', '.join(shared)} is given to two characters")
        return value


class VolcengineSpeech(HostedSpeech):
    name = "volcengine-tts"
    section = "volcengine_tts"
    Options = Options
    what = "Volcengine speech"
    lookup_hint = "the Volcengine speech console (声音复刻: the slot's training time and trainings left)"
    one_voice_per_character = True  # each character's slot holds the voice of the clip it was trained with last
    # Clip lengths: the docs give only "<= 10 MB"; 10-30 s is the common advice (NOT CONFIRMED).
    limits = SpeechCapabilities(cloning=True, enrolls=True, acting=None, bills="characters", clip_s=(10.0, 30.0),
                                languages=("zh", "en", "ja", "es", "id", "pt"))

    def __init__(self, options: Options):
        super().__init__(options)
        if options.emotion:
            self.capabilities = replace(self.capabilities, acting="emotion", emotions=EMOTIONS)
        self._sent: dict[str, float] = {}  # slot -> when this process uploaded into it

    def identity(self) -> dict:
        o = self.options
        return {**super().identity(), "encoding": "wav", "rate": o.rate, **({"emotion": True} if o.emotion else {})}

    def account(self) -> dict:
        # A slot trained with one model is retrained for another; the app holds the slots.
        return {**super().account(), "app": self.options.app_id_env, "model": self.options.model}

    def account_for(self, character: str) -> dict:
        # a character moved to another slot is trained there: their old slot's voice is not theirs any more
        return {**self.account(), "slot": self.options.speakers.get(character)}

    def missing(self, *, keys: bool = True) -> list[tuple[str, str]]:
        gaps = super().missing(keys=keys)
        env = self.options.app_id_env
        if keys and not os.environ.get(env):
            gaps.append((f"${env} is not set", f"export {env}=<the APP ID of your Volcengine speech app>"))
        return gaps

    # --- the protocol -------------------------------------------------------------------------------

    def enroll(self, clip: VoiceClip, client_key: str) -> str:
        slot = self._slot(clip)
        audio, fmt = clip_audio(clip)
        model_type, resource = MODELS[self.options.model]
        body = {"appid": self._app_id(), "speaker_id": slot,
                "audios": [{"audio_bytes": base64.b64encode(audio).decode(), "audio_format": fmt}],
                "source": 2, "language": self._language(clip), "model_type": model_type}
        self._sent[slot] = time.time()
        data, status = self._post("/api/v1/mega_tts/audio/upload", body, f"voice upload for {clip.name}",
                                  headers={"Resource-Id": resource})
        code = (data.get("BaseResp") or {}).get("StatusCode") if isinstance(data.get("BaseResp"), dict) else None
        if status < 300 and code is None:  # an answer that does not say: it may have trained the slot
            raise AnswerLost(f"{self.what} voice upload for {clip.name}: answered {status} without a BaseResp")
        if status >= 300 or code != 0:
            raise self._clone_failed(data, status, slot, clip)
        return f"{slot}@{clip.sha256[:12]}"

    def enrollment(self, voice_id: str) -> Poll:
        slot = voice_id.split("@")[0]
        data = self._status(slot, f"training status of {slot}")
        state, made, sent = data.get("status"), created_s(data), self._sent.get(slot)
        if state in (2, 3, 4) and sent is not None and made is not None and made < sent - SKEW_S \
                and time.time() < sent + STALE_S:  # after that, trust it (create_time may not follow retraining)
            return Poll("queued", detail="the slot still shows its earlier training")
        if state in (2, 4):
            return Poll("done", result=voice_id)
        if state == 1:
            return Poll("running", detail="training")
        if state == 3:
            return Poll("failed", error=PermanentError(
                f"{self.what}: training {slot} failed (the training was used); record a cleaner clip (one "
                "speaker, no music or noise) and run again"))
        return Poll("queued", detail=f"status {state!r}")

    def find_voice(self, clip: VoiceClip, client_key: str, sent_at: float) -> str | None:
        slot = self._slot(clip)
        data = self._status(slot, f"looking up the lost voice upload into {slot}")
        made = created_s(data)
        if data.get("status") in (1, 2, 3, 4) and made is not None and made >= sent_at - SKEW_S:
            return f"{slot}@{clip.sha256[:12]}"
        return None

    def synthesize(self, request: SpeechRequest, out_wav: Path) -> None:
        from stages.backends.openai_speech import write_pcm16_wav

        o = self.options
        if not request.voice_id:
            raise PermanentError(f"{self.what} speaks only enrolled voices, and this line has no voice id")
        slot = request.voice_id.split("@")[0]
        if len(request.text.encode("utf-8")) > MAX_TEXT_BYTES:
            raise PermanentError(f"{self.what} takes at most {MAX_TEXT_BYTES} UTF-8 bytes a line: split "
                                 f"{request.text[:40]!r}…")
        if not 0.1 <= request.speed <= 2.0:
            raise PermanentError(f"{self.what} speaks at 0.1x to 2x, not voice.speed {request.speed:g}")
        audio: dict = {"voice_type": slot, "encoding": "wav", "rate": o.rate, "speed_ratio": round(request.speed, 2)}
        lang = primary(request.language)
        if lang in EXPLICIT:
            audio["explicit_language"] = EXPLICIT[lang]
        if o.emotion and request.instructions:
            if request.instructions not in EMOTIONS:
                raise PermanentError(f"{self.what}: emotion {request.instructions!r} is not one of "
                                     f"{', '.join(EMOTIONS)}")
            audio.update(emotion=request.instructions, enable_emotion=True)
        body = {"app": {"appid": self._app_id(), "token": "dramaforge", "cluster": o.cluster},
                "user": {"uid": "dramaforge"}, "audio": audio,
                "request": {"reqid": str(uuid.uuid4()), "text": request.text, "operation": "query"}}
        data, status = self._post("/api/v1/tts", body, f"speech in {slot}")
        if status >= 300 or data.get("code") != 3000:
            raise self._tts_failed(data, status, slot)
        try:
            sound = base64.b64decode(data.get("data") or "", validate=True)
        except ValueError:
            raise TransientError(f"{self.what} speech in {slot}: `data` is not base64 audio") from None
        write_pcm16_wav(sound, out_wav, what=f"{self.what} ({o.model}, {slot})")

    # --- helpers --------------------------------------------------------------------------------------

    def _client(self) -> Http:
        if self._http is None:
            self._http = Http({"Authorization": f"Bearer;{self.key()}"}, what=self.what,
                              key_env=self.options.api_key_env, timeout_s=self.options.request_timeout_s)
        return self._http

    def _post(self, path: str, body: dict, doing: str, *, headers: dict | None = None) -> tuple[dict, int]:
        """One JSON POST: (its JSON answer, the HTTP status). A 4xx that carries the provider's own code comes
        back for the caller to read; any other failure is the class `Http` maps it to (a 5xx, a timeout
        after sending: `AnswerLost`)."""
        import httpx2 as httpx

        http = self._client()
        try:
            resp = http.client().post(join_url(self.options.base_url, path), json=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise TransientError(f"{self.what} {doing}: cannot connect ({type(exc).__name__}: {exc})") from exc
        except httpx.HTTPError as exc:  # sent (or partly): the provider may have acted on it
            raise AnswerLost(f"{self.what} {doing}: no answer ({type(exc).__name__}: {exc or 'timed out'})") from exc
        if 400 <= resp.status_code < 500 and resp.status_code not in (408, 409, 429):
            try:
                data = json.loads(resp.text)
            except ValueError:
                data = None
            if isinstance(data, dict) and ("code" in data or isinstance(data.get("BaseResp"), dict)):
                return data, resp.status_code
        return http.answer(resp, doing), resp.status_code

    def _app_id(self) -> str:
        env = self.options.app_id_env
        value = os.environ.get(env, "").strip()
        if not value:
            raise PermanentError(f"{self.what}: set ${env} to your app's APP ID (the speech console)")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
            raise PermanentError(f"{self.what}: ${env} does not hold an APP ID (letters and digits)")
        return value

    def _slot(self, clip: VoiceClip) -> str:
        slot = self.options.speakers.get(clip.character)
        if slot is None:
            raise PermanentError(
                f"{self.what}: {clip.name} ({clip.character}) has no voice slot. Buy one in the Volcengine speech "
                f"console (声音复刻, a speaker id S_...) and set backends.{self.section}.speakers: "
                f"{{{clip.character}: S_...}}")
        return slot

    def _language(self, clip: VoiceClip) -> int:
        code = LANGUAGES.get(primary(clip.language))
        if code is None:
            raise PermanentError(f"{self.what} clones voices in zh, en, ja, es, id and pt, not {clip.language!r} "
                                 f"({clip.name})")
        return code

    def _status(self, slot: str, doing: str) -> dict:
        data, status = self._post("/api/v1/mega_tts/status", {"appid": self._app_id(), "speaker_id": slot}, doing,
                                  headers={"Resource-Id": MODELS[self.options.model][1]})
        code = (data.get("BaseResp") or {}).get("StatusCode") if isinstance(data.get("BaseResp"), dict) else 0
        if status >= 300 or code != 0:
            raise self._clone_failed(data, status, slot, None)
        if not isinstance(data.get("status"), int):
            raise TransientError(f"{self.what} {doing}: answered without a status")
        return data

    def _auth(self, said: str) -> PermanentError:
        return PermanentError(f"{said} (check ${self.options.api_key_env}, the access token, and "
                              f"${self.options.app_id_env}, the APP ID of the same app)")

    def _clone_failed(self, data: dict, status: int, slot: str, clip: VoiceClip | None) -> BackendError:
        """The error class for an upload or status answer that is not success (no voice was made)."""
        base = data.get("BaseResp") if isinstance(data.get("BaseResp"), dict) else {}
        code = base.get("StatusCode")
        message = self._client().scrub(str(base.get("StatusMessage") or data.get("message") or "")[:300])
        doing = "voice upload" if clip else "status"
        said = f"{self.what} {doing} for {slot} answered {code}: {message or 'no message'}"
        if "not granted" in message or "license not found" in message:
            model = self.options.model
            return PermanentError(f"{said}: this app has no 声音复刻 resource {MODELS[model][1]} (model {model}); "
                                  "see the console")
        if status in (401, 403) or _AUTH.search(message):
            return self._auth(said)
        if code == 1104 or is_refusal(None, message):
            return RejectedError(f"{said} (the voice was refused)")
        if code == 1107:
            return PermanentError(f"{said}: {slot} is not a voice slot of this app (see the console)")
        if code == 1123:
            return PermanentError(f"{said}: {slot} has no trainings left; buy more in the console or give the "
                                  "character another slot")
        if code in _CLIP_FAULTS and clip is not None:
            return PermanentError(f"{said}: the clip {clip.path} cannot be used; record a clean one (one speaker, "
                                  "no music or noise)" + (", and check voice.reference_text" if code == 1109 else ""))
        return PermanentError(said)

    def _tts_failed(self, data: dict, status: int, slot: str) -> BackendError:
        code = data.get("code")
        message = self._client().scrub(str(data.get("message") or "")[:300])
        said = f"{self.what} speech in {slot} answered {code}: {message or 'no message'}"
        if status < 300 and not isinstance(code, int):
            return TransientError(f"{self.what} speech in {slot}: answered {status} without a code")
        if status == 401 or _AUTH.search(message):
            return self._auth(said)
        if code in _RETRY or "concurrency" in message:
            return TransientError(said)
        if "access denied" in message or "not granted" in message or status == 403:
            return PermanentError(f"{said}: this app may not use {slot} on {self.options.cluster} (see the console)")
        if code == 3050:
            return PermanentError(f"{said}: {slot} is not a trained voice of this app")
        if "quota exceeded" in message:
            return PermanentError(f"{said}: the trial or bought quota is used up")
        if is_refusal(None, message):
            return RejectedError(said)
        return PermanentError(said)


def primary(language: str | None) -> str:
    """`en-us` -> `en`, `zh_CN` -> `zh`, `cmn` -> `zh`."""
    head = re.split(r"[-_]", (language or "").strip().lower())[0]
    return "zh" if head in ("cmn", "yue", "zho", "chi") else head


def created_s(data: dict) -> float | None:
    """A status answer's `create_time` in epoch seconds (it is given in ms), or None."""
    try:
        value = float(data.get("create_time"))
    except (TypeError, ValueError):
        return None
    return value / 1000 if value > 1e11 else value if value > 0 else None


def clip_audio(clip: VoiceClip) -> tuple[bytes, str]:
    """The clip as uploaded: its own bytes when the provider takes its format and size, else a 24 kHz mono WAV."""
    from stages.core.errors import RenderError
    from stages.core.media import run_ffmpeg

    ext = clip.path.suffix.lower().lstrip(".")
    fmt = {"wave": "wav", "oga": "ogg"}.get(ext, ext)
    data = clip.read()
    if fmt in FORMATS and len(data) <= MAX_CLIP_BYTES:
        return data, fmt
    with tempfile.TemporaryDirectory(prefix="volc-clip-") as tmp:
        out = Path(tmp) / "clip.wav"
        try:
            run_ffmpeg(["-i", str(clip.path), "-vn", "-ac", "1", "-ar", "24000", "-c:a", "pcm_s16le", str(out)],
                       what="converting the reference clip")
        except RenderError as exc:
            raise PermanentError(f"the reference clip {clip.path} cannot be read: {exc.message}") from exc
        data = out.read_bytes()
    if len(data) > MAX_CLIP_BYTES:
        raise PermanentError(f"the reference clip {clip.path} is too long (the upload takes 10 MB; keep it to 30 s)")
    return data, "wav"
