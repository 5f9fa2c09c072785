"""MiniMax speech (T2A v2): each character's voice cloned once from their reference clip, every line
spoken in it.

MiniMax ships no Python SDK for speech; the official clients (MiniMax-AI/MiniMax-MCP `server.py`,
`client.py`; MiniMax-AI/cli `commands/speech/clone.ts`, `errors/api.ts`, `types/api.ts`;
MiniMax-AI/skills `minimax-voice/scripts/voice_manager.py`, `minimax-multimodal-toolkit/references/
tts-guide.md`) make one plain HTTPS request per call, as this file does through `Http`. Each field
below: CONFIRMED (where) or NOT CONFIRMED.

- Host: `https://api.minimax.io` (global), `https://api.minimaxi.com` (mainland China; its keys are
  other keys). CONFIRMED (MCP README). `Authorization: Bearer <key>`, CONFIRMED (MCP client.py).
  MiniMax's own clients read the host from $MINIMAX_API_HOST; here it is `base_url` (`region`
  mainland makes api.minimaxi.com the default, so it counts as MiniMax's own address).
- Upload: `POST /v1/files/upload`, multipart `file` + `purpose=voice_clone` -> `{file: {file_id}}`.
  CONFIRMED (MCP server.py, cli clone.ts). Clip: mp3/m4a/wav, 10 s - 5 min, <= 20 MB. CONFIRMED
  (platform.minimax.io/docs/guides/speech-voice-clone; skills tts-guide.md).
- Clone: `POST /v1/voice_clone {file_id, voice_id, need_noise_reduction, need_volume_normalization,
  language_boost}` -> `{input_sensitive, demo_audio, base_resp}`, no id in the answer: the client
  chooses `voice_id` (8-256 chars, a letter first, letters/digits/-/_, not ending in - or _).
  CONFIRMED (platform.minimax.io/docs/api-reference/voice-cloning-clone example; skills
  voice_manager.py for the fields and the id rules). No `text`/`model` is sent: a preview is billed.
- "If a cloned voice is not used within 7 days, the system will delete it" (voice-cloning-clone),
  and "the new voice will be charged upon first use" (MCP server.py): cloning itself is free, the
  first line spoken pays the voice's fee. CONFIRMED (those two sources). A voice enrolled but never
  spoken for 7 days is gone: its lines then fail naming `rerun --shot voice-<character>-minimax-tts
  --new-job`, which enrolls it again.
- Lookup: `POST /v1/get_voice {voice_type: voice_cloning}` -> `{voice_cloning: [{voice_id, ...}]}`.
  CONFIRMED (MCP server.py, skills voice_manager.py). It is one unpaged list of every cloned voice of
  the account (no paging is documented or used by any official client), so `lookup_complete`: a
  voice id missing from it once the request has settled was not made. Re-sending is safe anyway:
  the id is ours, a second clone of it answers 2039 (duplicate voice_id; NOT CONFIRMED officially,
  the code table's excerpt ends there), which is taken as made once the list shows it.
- Speak: `POST /v1/t2a_v2 {model, text, stream: false, output_format: "hex", voice_setting: {voice_id,
  speed [0.5, 2], vol (0, 10], pitch [-12, 12], emotion}, audio_setting: {sample_rate, format,
  channel}, language_boost}` -> `{data: {audio: <hex>}, extra_info, base_resp}`. CONFIRMED (MCP
  server.py; cli types/api.ts). `emotion` for speech-2.6 and older: happy, sad, angry, fearful,
  disgusted, surprised, neutral, CONFIRMED (MCP server.py docstring; the 2.6 reference as mirrored by
  PPIO). calm/whisper (2.8) and fluent (2.6 only, LiveKit) are NOT used. `language_boost` names:
  the 24 of the MCP docstring CONFIRMED; the newer 16 of the 40-language list (Bulgarian ...
  Afrikaans) are NOT CONFIRMED as boost values, so those lines are sent `auto`.
- Errors: HTTP 200 with `base_resp.status_code` != 0. CONFIRMED (MCP client.py). 1002 rate limit,
  1004 auth, 1008 balance, 2013 invalid params, 20132 invalid samples or voice_id, 2037 clip too
  short/long, 2038 no cloning permission (real-name verification): CONFIRMED (platform errorcode page,
  MCP client.py for 2038). 1026/1027 sensitive input/output (cli errors/api.ts), 2039 duplicate
  voice_id, 2042 no access to the voice_id, 2049 invalid key, 1039/1041 token/connection limits,
  1043/1044 clone similarity checks: NOT CONFIRMED officially (third-party code tables).
- Billing: per character of `text` (`extra_info.usage_characters`). Price (NOT CONFIRMED from
  MiniMax's own page): speech-2.6-hd / 2.8-hd about $100 per million characters, turbo about $60.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from stages.backends._http import AnswerLost, Http
from stages.backends._voices import HostedSpeech, HostedSpeechOptions, VoiceClip
from stages.backends.base import (PermanentError, RejectedError, SpeechCapabilities, SpeechRequest,
                                  TransientError, is_refusal)

HOSTS = {"global": "https://api.minimax.io", "mainland": "https://api.minimaxi.com"}
EMOTIONS = ("happy", "sad", "angry", "fearful", "disgusted", "surprised", "neutral")
CLIP_TYPES = {".wav", ".mp3", ".m4a"}
CLIP_S, CLIP_BYTES = (10.0, 300.0), 20 * 1024 * 1024
TEXT_MAX = 10_000  # characters a line may have ("< 10000")
# a project language (eSpeak name or ISO code, first part) -> MiniMax's `language_boost`
BOOST = {"zh": "Chinese", "cmn": "Chinese", "yue": "Chinese,Yue", "en": "English", "ar": "Arabic",
         "ru": "Russian", "es": "Spanish", "fr": "French", "pt": "Portuguese", "de": "German", "tr": "Turkish",
         "nl": "Dutch", "uk": "Ukrainian", "vi": "Vietnamese", "id": "Indonesian", "ja": "Japanese",
         "it": "Italian", "ko": "Korean", "th": "Thai", "pl": "Polish", "ro": "Romanian", "el": "Greek",
         "cs": "Czech", "fi": "Finnish", "hi": "Hindi"}
LANGUAGES = (*sorted(k for k in BOOST if len(k) == 2), "yue", "bg", "da", "he", "ms", "fa", "sk", "sv", "hr",
             "tl", "hu", "no", "sl", "ca", "nn", "ta", "af")
BUSY = {1002, 1039, 1041}  # rate limit, token limit, connection limit
UNKNOWN = {1000, 1001, 1013, 1024}  # unknown, timeout, internal: as a 5xx (a clone may have been made)
AUTH = {1004, 2049}  # authentication failed (or a key of the other host), invalid key
REFUSED = {1026, 1027}  # sensitive input / output
GONE = {2042, 20132}  # no access to the voice id / invalid voice id: an expired or foreign voice
DUPLICATE = 2039


class Options(HostedSpeechOptions):
    """`backends.minimax_tts`: MiniMax speech (voice cloning from each character's reference clip)."""

    model: str = Field("speech-2.6-hd", min_length=1, description="the speech model: speech-2.6-hd, "
                       "speech-2.6-turbo, speech-2.8-hd, speech-2.8-turbo, speech-02-hd, speech-02-turbo")
    region: Literal["global", "mainland"] = Field("global", description="whose platform the key is from: global "
                                                   "(platform.minimax.io) or mainland (platform.minimaxi.com)")
    base_url: str = Field("https://api.minimax.io", min_length=1,
                          description="the API's address (what MiniMax's own clients read from $MINIMAX_API_HOST); "
                                      "default: https://api.minimax.io, or https://api.minimaxi.com for region "
                                      "mainland (a key works only on its own platform's host)")
    api_key_env: str = Field("MINIMAX_API_KEY", min_length=1, description="the environment variable holding the key")
    audio_format: Literal["wav", "mp3"] = Field("wav", description="what MiniMax sends (made 16-bit PCM WAV here)")
    sample_rate: Literal[8000, 16000, 22050, 24000, 32000, 44100] = Field(32000, description="sample rate asked for")
    noise_reduction: bool = Field(False, description="MiniMax cleans the clip's noise before cloning")
    volume_normalization: bool = Field(False, description="MiniMax evens the clip's volume before cloning")

    @model_validator(mode="before")
    @classmethod
    def _host_of_region(cls, data):
        if isinstance(data, dict) and "base_url" not in data:  # the region's host is MiniMax's own, as the default
            data = {**data, "base_url": HOSTS.get(data.get("region", "global"), HOSTS["global"])}
        return data


def voice_id_for(label: str, *, noise_reduction: bool = False, volume_normalization: bool = False) -> str:
    """The voice id we give MiniMax for a clip (its label, within MiniMax's rules: 8-256 of letters,
    digits, - and _, a letter first, not ending in - or _); the clone settings are part of it, so
    another setting is another voice, never the old one found again."""
    vid = re.sub(r"[^A-Za-z0-9_-]", "_", label)
    vid = vid if vid[:1].isalpha() else f"v{vid}"
    vid += ("-nr" if noise_reduction else "") + ("-vn" if volume_normalization else "")
    if len(vid) > 256:
        vid = vid[:231] + "-" + vid[-24:]  # the clip's digest and the settings are at the end
    vid = vid.rstrip("-_") or "voice"
    return vid if len(vid) >= 8 else vid + "-voice00"


def language_boost(language: str | None) -> str:
    head = (language or "").lower().replace("_", "-")
    if head in ("zh-hk", "zh-yue"):
        return "Chinese,Yue"
    return BOOST.get(head.split("-")[0], "auto")


class MinimaxSpeech(HostedSpeech):
    name = "minimax-tts"
    section = "minimax_tts"
    Options = Options
    what = "MiniMax speech"
    lookup_hint = "the MiniMax console's voice list (or POST /v1/get_voice)"
    lookup_complete = True  # get_voice lists every cloned voice of the account in one answer
    unused_expiry_s = 7 * 24 * 3600  # MiniMax deletes a cloned voice not spoken with within 7 days
    billed_on_first_use = True  # the clone is free; the first line spoken in it pays the voice's fee
    limits = SpeechCapabilities(cloning=True, enrolls=True, acting="emotion", emotions=EMOTIONS, languages=LANGUAGES,
                                bills="characters", clip_s=CLIP_S)

    def identity(self) -> dict:
        o = self.options
        return {**super().identity(), "format": o.audio_format, "sample_rate": o.sample_rate}

    def account(self) -> dict:
        o, out = self.options, super().account()
        if o.noise_reduction or o.volume_normalization:  # another clone setting is another voice
            out["clone"] = {"noise_reduction": o.noise_reduction, "volume_normalization": o.volume_normalization}
        return out

    def voice_id(self, clip: VoiceClip) -> str:
        return voice_id_for(clip.label, noise_reduction=self.options.noise_reduction,
                            volume_normalization=self.options.volume_normalization)

    # --- HTTP ---------------------------------------------------------------------------------

    def http(self) -> Http:
        if self._http is None:
            self._http = Http({"Authorization": f"Bearer {self.key()}"}, what=self.what,
                              key_env=self.options.api_key_env, timeout_s=self.options.request_timeout_s)
        return self._http

    def url(self, path: str) -> str:
        return self.options.base_url.rstrip("/") + path

    def error(self, answer: dict, doing: str) -> Exception | None:
        """The error class for an answer whose `base_resp` is not success, else None."""
        from stages.backends.minimax import base_resp

        code, said = base_resp(answer)
        if code == 0:
            return None
        text = self.http().scrub(f"{self.what} {doing}: MiniMax says {code} {said}".rstrip())
        err: Exception
        if code in REFUSED or is_refusal(None, said):
            err = RejectedError(text)
        elif code in BUSY:
            err = TransientError(text)
        elif code in UNKNOWN:
            err = AnswerLost(text)
        elif code in AUTH:
            err = PermanentError(f"{text} (check the key in ${self.options.api_key_env}: a global key works only "
                                 f"on api.minimax.io, a mainland one only on api.minimaxi.com)")
        elif code == 1008:
            err = PermanentError(f"{text} (the account's balance is used up: top it up in the MiniMax console)")
        elif code == 2038:
            err = PermanentError(f"{text} (cloning needs the account's real-name verification in the console)")
        else:
            err = PermanentError(text)
        err.code = code
        return err

    def post(self, path: str, doing: str, body: dict) -> dict:
        answer = self.http().call("POST", self.url(path), doing, body=body)
        err = self.error(answer, doing)
        if err is not None:
            raise err
        return answer

    # --- enrollment ---------------------------------------------------------------------------

    def check_clip(self, clip: VoiceClip) -> bytes:
        """The clip's bytes, refused here when MiniMax would refuse it (no request made)."""
        from stages.core.media import probe

        if clip.path.suffix.lower() not in CLIP_TYPES:
            raise PermanentError(f"{self.what} clones from mp3, m4a or wav clips; {clip.path.name} is not one "
                                 f"(convert it, e.g. `ffmpeg -i {clip.path.name} {clip.path.stem}.wav`)")
        data = clip.read()
        if len(data) > CLIP_BYTES:
            raise PermanentError(f"{self.what} takes a reference clip of at most 20 MB; {clip.path.name} has "
                                 f"{len(data) / 2**20:.1f} MB")
        try:
            seconds = probe(clip.path).duration_s
        except Exception as exc:  # any decoder's complaint: the clip cannot be read
            raise PermanentError(f"the reference clip {clip.path} cannot be decoded: {exc}") from exc
        if not CLIP_S[0] <= seconds <= CLIP_S[1]:
            raise PermanentError(f"{self.what} clones from 10 s to 5 min of speech; {clip.path.name} lasts "
                                 f"{seconds:.1f} s")
        return data

    def enroll(self, clip: VoiceClip, client_key: str) -> str:
        data, vid = self.check_clip(clip), self.voice_id(clip)
        try:
            up = self.http().call_multipart(self.url("/v1/files/upload"), "uploading the reference clip",
                                            data={"purpose": "voice_clone"},
                                            files={"file": (clip.path.name, data, clip.mime)})
        except AnswerLost as exc:  # an upload is not a voice: nothing paid, at most a stray file
            raise TransientError(str(exc), retry_after_s=exc.retry_after_s) from None
        err = self.error(up, "uploading the reference clip")
        if isinstance(err, AnswerLost):
            raise TransientError(str(err))
        if err is not None:
            raise err
        file_id = (up.get("file") or {}).get("file_id") if isinstance(up.get("file"), dict) else None
        if not file_id:
            raise TransientError(f"{self.what} uploading the reference clip: the answer names no file_id")
        body = {"file_id": int(file_id) if str(file_id).isdigit() else file_id, "voice_id": vid,
                "need_noise_reduction": self.options.noise_reduction,
                "need_volume_normalization": self.options.volume_normalization}
        if language_boost(clip.language) != "auto":
            body["language_boost"] = language_boost(clip.language)
        try:
            self.post("/v1/voice_clone", f"cloning voice {vid}", body)
        except PermanentError as exc:
            if getattr(exc, "code", None) != DUPLICATE:
                raise
            if self.find_voice(clip, client_key, 0.0) != vid:  # taken, yet not among this account's voices
                raise PermanentError(f"{exc}; the id is taken but this account lists no such voice (another "
                                     "account's, or one MiniMax deleted after 7 days unused): set "
                                     "noise_reduction or volume_normalization to enroll under another id") from None
        return vid  # made now, or earlier by a request whose answer was lost

    def find_voice(self, clip: VoiceClip, client_key: str, sent_at: float) -> str | None:
        vid = self.voice_id(clip)
        answer = self.post("/v1/get_voice", "listing cloned voices", {"voice_type": "voice_cloning"})
        voices = answer.get("voice_cloning") or []
        return vid if any(isinstance(v, dict) and v.get("voice_id") == vid for v in voices) else None

    # --- speech -------------------------------------------------------------------------------

    def emotion(self, request: SpeechRequest) -> str | None:
        said = (request.instructions or "").strip().lower()
        if not said:
            return None
        if said not in EMOTIONS:
            raise PermanentError(f"{self.what} takes one emotion of {', '.join(EMOTIONS)}; the acting template "
                                 f"(templates/acting/{self.name}.j2) gave {said[:60]!r}")
        return said

    def synthesize(self, request: SpeechRequest, out_wav: Path) -> None:
        from stages.backends.openai_speech import write_pcm16_wav

        if not request.voice_id:
            raise PermanentError(f"{self.what} speaks in a cloned voice: the line has no enrolled voice id")
        if len(request.text) >= TEXT_MAX:
            raise PermanentError(f"{self.what} speaks under {TEXT_MAX:,} characters a request; this line has "
                                 f"{len(request.text):,}")
        o = self.options
        voice = {"voice_id": request.voice_id, "speed": round(min(2.0, max(0.5, request.speed or 1.0)), 2),
                 "vol": 1.0, "pitch": 0}
        emotion = self.emotion(request)
        if emotion:
            voice["emotion"] = emotion
        body = {"model": o.model, "text": request.text, "stream": False, "output_format": "hex",
                "voice_setting": voice,
                "audio_setting": {"sample_rate": o.sample_rate, "format": o.audio_format, "channel": 1},
                "language_boost": language_boost(request.language)}
        doing = f"speaking a line in voice {request.voice_id}"
        try:
            answer = self.post("/v1/t2a_v2", doing, body)
        except PermanentError as exc:
            if getattr(exc, "code", None) in GONE:
                raise PermanentError(f"{exc}: the voice may be gone (MiniMax deletes a cloned voice not used within "
                                     "7 days of cloning); to enroll it again: `dramaforge rerun PROJECT --shot voice-<character>-"
                                     "minimax-tts --new-job`") \
                    from None
            raise
        audio = (answer.get("data") or {}).get("audio") if isinstance(answer.get("data"), dict) else None
        try:
            body_bytes = bytes.fromhex(audio or "")
        except (TypeError, ValueError):
            raise TransientError(f"{self.what} {doing}: data.audio is not hex ({len(audio or '')} chars)") from None
        write_pcm16_wav(body_bytes, out_wav, what=self.what)
