"""The domain model: a project, its script, and the shots planned from it.

Every model forbids unknown keys, so a typo in project.yaml or an edited shot list is an error
at load time, never a silently ignored setting.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, create_model, field_validator, model_validator

from stages.backends import registry
from stages.backends.base import ImageOptions
from stages.backends.openai_translate import TranslationOptions
from stages.core.model import Model
from stages.schema_rates import ImageRate, LipSyncRate, Rates, SpeechRate, TextRate, VideoRate  # noqa: F401


# --- project.yaml ------------------------------------------------------------------------------

ID_PATTERN = r"^[a-z][a-z0-9_]*$"
ShotSize = Literal["establishing", "wide", "medium", "two-shot", "over-shoulder", "close-up", "extreme-close-up", "insert"]
# How a line is voiced: our voice laid over the clip; our voice, then the clip's lips synced to it; or
# the video model speaks it (its own voice and sound: lip sync, but no voice of ours, no re-dub).
DialogueMode = Literal["tts", "tts+lipsync", "native"]


class Voice(Model):
    """How one character sounds. `backend` picks the engine (default: `backends.speech`);
    each engine reads its own fields and ignores the rest."""

    backend: SpeechBackendName | None = Field(None, description=", ".join(registry.SPEECH) + "; default: "
                                              "backends.speech")
    language: str = Field("en-us", description="eSpeak NG voice/language name, e.g. en-us, en-gb, cmn, yue")
    variant: str | None = Field(None, description="eSpeak NG variant, e.g. m3, f2, klatt")
    pitch: int = Field(50, ge=0, le=99, description="base pitch 0-99 (eSpeak scale)")
    speed_wpm: int = Field(165, ge=80, le=450, description="words per minute (eSpeak)")
    voice: str | None = Field(None, description="openai: a voice name (coral, onyx, ...); piper: a voice "
                                                "file (.onnx, its .onnx.json beside it), relative to the project")
    speaker: int | None = Field(None, ge=0, description="piper: speaker id in a multi-speaker voice")
    speed: float = Field(1.0, ge=0.25, le=4.0, description="speaking rate, 1 = normal (every engine but espeak, which "
                                                             "takes speed_wpm)")
    ids: dict[str, str] = Field(default_factory=dict, description="dialogue: native: a provider's id for this "
                                "voice, by video backend ({vidu: <voice_id>}); sent where the provider takes one")
    notes: str = Field("", description="how this character speaks (accent, age, manner): with each line's "
                                       "parenthetical, the acting notes (templates/acting/<backend>.j2)")
    reference: Path | None = Field(None, description="a clip of this character's voice (WAV/MP3, 10-30 s of "
                                   "clean speech), relative to the project: a cloning backend speaks every line "
                                   "in it, and each line's speaker-similarity figure is measured against it")
    reference_text: str = Field("", description="what is said in the reference clip, word for word (some "
                                                "backends need it; all clone better with it)")


class Look(Model):
    """A wardrobe change from one episode on: how the character looks now, and optional images."""

    description: str = Field(..., min_length=1, description="replaces the character's description from "
                                                            "this episode on (keep face and hair the same)")
    references: list[Path] = Field(default_factory=list, description="your own images of this look")


class Character(Model):
    """A member of the cast. `description` is used verbatim in every prompt that shows them."""

    id: str = Field(..., pattern=ID_PATTERN)
    name: str = Field(..., min_length=1, description="the name as written in script cues")
    aliases: list[str] = Field(default_factory=list, description="other spellings used in cues")
    description: str = Field(..., min_length=1)
    reference_image: Path | None = Field(None, description="one image of the character (same as references: [it])")
    references: list[Path] = Field(default_factory=list, description="your own reference images; otherwise "
                                   "a sheet (front, three-quarter) is generated once by the image backend")
    looks: dict[int, Look] = Field(default_factory=dict, description="episode number -> a wardrobe change "
                                                                     "from that episode on")
    voice: Voice = Field(default_factory=Voice)
    assets: dict[str, str] = Field(default_factory=dict, description="ids a provider keeps for this character, by "
                                   "video backend: {kling: <saved element id>, seedance: asset://<face asset>}; "
                                   "sent in place of an image, in the same reference slots")
    dialogue: DialogueMode | None = Field(None, description="how this character's lines are voiced; default: the "
                                                            "project's dialogue.mode")
    voices: dict[str, Voice] = Field(default_factory=dict, description="the voice in each dub language (`languages`), "
                                     "by language: {es: {variant: m5}}; what it sets replaces `voice`'s fields, the rest "
                                     "are `voice`'s with the language's eSpeak voice")

    def look(self, episode: int) -> tuple[str, list[Path]]:
        """(description, own reference images) for `episode`: the latest look at or before it."""
        starts = [n for n in self.looks if n <= episode]
        if not starts:
            return self.description, [*([self.reference_image] if self.reference_image else []), *self.references]
        look = self.looks[max(starts)]
        return look.description, list(look.references)


def _literal(names):
    return Literal[tuple(names)]


SpeechBackendName = _literal(registry.SPEECH)
VideoBackendName = _literal(registry.VIDEO)
ImageBackendName = _literal(registry.IMAGE)


class ImageSettings(ImageOptions):
    kind: ImageBackendName = Field("animatic", description="the image backend: " + ", ".join(registry.IMAGE))


class _BackendsBase(Model):
    @model_validator(mode="after")
    def _configured(self) -> "Backends":
        """A selected backend whose options have required fields needs its section."""
        for kind, name in (("video", self.video), ("lipsync", self.lipsync)):
            cls = registry.backend_class(kind, name)
            if cls.section is not None and getattr(self, cls.section) is None:
                raise ValueError(f"{kind}: {name} needs a {cls.section}: {{...}} section (required: "
                                 f"{', '.join(n for n, f in cls.Options.model_fields.items() if f.is_required())})")
        return self


def _backends_model() -> type[Model]:
    """`backends:` from the registry: which video and speech backend, the image backend, and one
    section of options per backend that takes them (its options' defaults where it needs nothing)."""
    fields: dict = {
        "video": (_literal(registry.VIDEO), Field("animatic", description="the video backend: "
                                                  + ", ".join(registry.VIDEO))),
        "speech": (_literal(registry.SPEECH), Field("espeak", description="the default speech engine; a "
                                                    "character's voice.backend overrides it")),
        "image": (ImageSettings, Field(default_factory=ImageSettings)),
        "lipsync": (_literal(registry.LIPSYNC), Field("animatic", description="the lip-sync backend (dialogue: "
                                                      "tts+lipsync): " + ", ".join(registry.LIPSYNC))),
    }
    for kind in ("video", "speech", "lipsync"):
        for section, options in registry.sections(kind).items():
            required = any(f.is_required() for f in options.model_fields.values())
            doc = (options.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
            # required settings (a model's path): absent until given; else the defaults, never null
            fields[section] = (options | None, Field(None, description=doc)) if required else \
                (options, Field(default_factory=options, description=doc))
    return create_model("Backends", __base__=_BackendsBase, __module__=__name__, **fields)


Backends = _backends_model()


class DialogueOptions(Model):
    """`dialogue:` how lines are voiced (a character's `dialogue`, then a shot's, override the mode).

    tts: our voices laid over the clip (no lip sync). tts+lipsync: our voices, then the lip-sync
    backend (`backends.lipsync`) moves the speaker's lips in every eligible shot: the speaker on
    screen, a line that is not V.O. or O.S., and a framing in `sizes` (a shot's `lipsync: true/false`
    overrides the framing rule). native: the video model speaks the line (words and acting note in
    its prompt); the clip's own sound is the dialogue of the mix.
    """

    mode: DialogueMode = "tts"
    sizes: list[ShotSize] = Field(default_factory=lambda: ["close-up", "extreme-close-up", "medium", "two-shot",
                                                          "over-shoulder"],
                                  min_length=1, description="framings that show the speaker's face well enough to "
                                                            "sync")
    min_voice: float = Field(0.5, ge=0, le=1, description="a line whose speaker-similarity figure against its "
                                                          "character's reference clip is below this is flagged "
                                                          "in status and the review (a rough figure: see README)")
    min_sync: float = Field(0.4, ge=-1, le=1, description="a synced shot whose sync figure (mouth motion against "
                                                          "speech, correlation at the best lag) is below this is "
                                                          "flagged in status and the review")


class Planner(Model):
    """Who plans the shots: the offline rules, or an LLM through any OpenAI-compatible server."""

    kind: Literal["rules", "llm"] = "rules"
    model: str = Field("gpt-4.1-mini", description="chat model name on the server")
    base_url: str | None = Field(None, description="e.g. http://localhost:8000/v1 for a local server; "
                                                   "default: OpenAI")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key")
    max_repairs: int = Field(2, ge=0, le=5, description="rounds that send validation errors back")
    timeout_s: float = Field(120, gt=0, le=900)
    max_shot_s: float = Field(10, gt=0, le=60, description="longest shot the video backend can make")


class IdentityCheck(Model):
    """`identity:`: is the person on screen the character? (faces in sampled frames of every take against
    their reference faces; needs the identity extra)."""

    check: bool = Field(False, description="check every take: a verdict per take in status, the report and "
                                           "the review page; picks the best take of a shot the user has not picked")
    min_similarity: float = Field(0.45, ge=0, le=1, description="1 - the face embeddings' distance a take needs "
                                  "for each character (dlib reads 0.4 and up as the same person)")
    on_drift: Literal["flag", "retake"] = Field(
        "flag", description="when no take of a shot matches: flag it, or make one more take (once per shot, "
                            "priced by estimate)")


class Limits(Model):
    """How hard to push the backends, and when an episode gives up."""

    video_concurrency: int | None = Field(
        None, ge=1, le=256, description="shots generated at once; default: the backend's own "
        "(animatic: CPU cores; a local GPU model: 1; a hosted API: 4)")
    video_per_minute: float | None = Field(None, gt=0, description="start at most this many shots a minute "
                                                                  "(a hosted API's rate limit)")
    failed_shots_per_episode: int = Field(10, ge=1, description="after this many failed shots an episode "
                                                                "stops starting new ones")
    recreate_failed_jobs: int = Field(0, ge=0, le=5, description="paid jobs a hosted video backend may "
                                      "re-create per shot in one run after the provider failed, cancelled, "
                                      "expired or lost one (each is billed again); 0: the shot fails instead")


class Timing(Model):
    lead_in_s: float = Field(0.25, ge=0, le=5, description="silence before a line starts")
    lead_out_s: float = Field(0.35, ge=0, le=5, description="hold after a line ends")
    action_s: float = Field(2.5, gt=0, le=20, description="length of an action beat without speech")
    establishing_s: float = Field(2.0, gt=0, le=20)


LOUDNESS_PRESETS = {  # integrated LUFS, true peak dBTP
    # TikTok, Douyin, Kuaishou, Reels and YouTube Shorts all play at about -14; -1.5 leaves room for AAC.
    "mobile": (-14.0, -1.5),
    "apple": (-16.0, -1.0),      # Apple's sound-check reference
    "broadcast": (-23.0, -1.0),  # EBU R128
}


class Music(Model):
    """Music under the series: a project bed, per-episode overrides, and `[[music: file]]` per scene.

    Files are relative to the project folder, in any format ffmpeg reads. Each span is looped or
    trimmed to fit, faded in and out, set to `level_lufs`, and ducked under every spoken line.
    """

    file: str | None = Field(None, description="the bed for every episode; none: no music")
    episodes: dict[int, str] = Field(default_factory=dict, description="episode number -> file, or 'none'")
    level_lufs: float = Field(-30.0, ge=-60, le=-10, description="loudness of the music before ducking "
                                                                 "(speech sits near -20)")
    duck_db: float = Field(12.0, ge=0, le=40, description="how far music drops under dialogue")
    attack_s: float = Field(0.15, ge=0, le=2, description="how long the drop takes, ending as a line starts")
    release_s: float = Field(0.5, ge=0, le=5, description="how long the music takes to come back")
    fade_s: float = Field(1.0, ge=0, le=10, description="fade in and out at each span's edges")
    sfx_db: float = Field(-6.0, ge=-40, le=12, description="gain of [[sfx: file]] effects")


class Audio(Model):
    """The episode mix: loudness for the platform, music, and the voice-over treatment."""

    preset: Literal["mobile", "apple", "broadcast"] = Field(
        "mobile", description="loudness preset: mobile = -14 LUFS / -1.5 dBTP (TikTok, Douyin, Shorts, "
                              "Reels); apple = -16 / -1; broadcast = EBU R128 -23 / -1")
    loudness_lufs: float | None = Field(None, ge=-40, le=-5, description="integrated loudness target; "
                                                                         "default: the preset's")
    true_peak_db: float | None = Field(None, ge=-9, le=0, description="true-peak ceiling, dBTP; default: the preset's")
    voice_over: Literal["none", "radio", "phone"] = Field(
        "none", description="treatment of (V.O.) lines: radio = band-limited and warm, phone = narrow and "
                            "crunchy; (O.S.) and (CONT'D) always keep the plain voice")
    music: Music = Field(default_factory=Music)

    @property
    def target(self) -> tuple[float, float]:
        """(LUFS, dBTP) this mix is normalised to."""
        lufs, peak = LOUDNESS_PRESETS[self.preset]
        return (self.loudness_lufs if self.loudness_lufs is not None else lufs,
                self.true_peak_db if self.true_peak_db is not None else peak)


class Translation(TranslationOptions):
    """A second subtitle language, translated through any OpenAI-compatible chat server."""

    language: str = Field(..., min_length=2, description="target language, e.g. en, zh-Hans, es")
    mode: Literal["second_line", "separate"] = Field(
        "second_line", description="second_line: burned in under the original; separate: its own "
                                   "epNN.<language>.srt/.vtt only")


class SubtitleStyle(Model):
    """Burned-in subtitles. Pixel sizes are for a 1080x1920 frame and scale with the output."""

    font: str = "Noto Sans CJK SC"
    size_px: int = Field(64, ge=12, le=200)
    outline_px: int = Field(4, ge=0, le=20)
    color: str = Field("#FFFFFF", pattern=r"^#[0-9A-Fa-f]{6}$", description="text colour")
    outline_color: str = Field("#000000", pattern=r"^#[0-9A-Fa-f]{6}$")
    margin_bottom_px: int = Field(360, ge=0, le=1900, description="from the bottom edge to the subtitles' band; keeps "
                                  "clear of the platform's caption and buttons")
    margin_top_px: int = Field(240, ge=0, le=1900, description="from the top edge: a subtitle moved up off a face "
                               "(the animatic says where faces are) stays below this (the platform's top bar)")
    safe_width: float = Field(0.8, gt=0.3, le=1.0, description="fraction of the frame width text may use")
    translation: Translation | None = Field(None, description="an optional second language")
    bilingual: list[str] | None = Field(None, min_length=2, max_length=2, description="two languages burned in at once, "
                                        "the first above, e.g. [zh, en]: the script's and a dub's (on that dub) or "
                                        "subtitles.translation's (on the original); each wrapped by its own rules")


PRESETS = {  # width, height, fps
    "vertical-1080": (1080, 1920, 30),  # TikTok, Douyin, Kuaishou, Shorts, Reels
    "vertical-720": (720, 1280, 30),  # previews
    "square-1080": (1080, 1080, 30),
    "landscape-1080": (1920, 1080, 30),
}


class Encoding(Model):
    """How the finished episodes are encoded (H.264 High yuv420p + AAC 48 kHz stereo, +faststart)."""

    crf: int = Field(20, ge=0, le=51, description="x264 quality: lower is better and bigger (18-23 is usual)")
    x264_preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower"] = \
        Field("veryfast", description="x264 speed/size trade-off")
    audio_kbps: int = Field(192, ge=64, le=512)


class Cards(Model):
    """Opening and end cards, drawn in the subtitle font (CJK included)."""

    opening: bool = Field(True, description="series title, episode number and title at the start")
    opening_s: float = Field(1.5, ge=0.5, le=10)
    end: bool = Field(True, description="an end card after the last shot")
    end_text: str | None = Field(None, description="default: 'To be continued' (未完待续 for zh), "
                                                    "'The End' on the last episode (全剧终)")
    end_s: float = Field(2.0, ge=0.5, le=10)


class Style(Model):
    """The look of the series: words for every prompt, and what the animatic draws over its pictures."""

    prompt: str = Field("", description="visual style appended to every prompt")
    overlays: Literal["storyboard", "clean"] | None = Field(
        None, description="storyboard: the animatic labels each shot (id, size, camera) and boxes its action text; "
                          "clean: the picture only, for a cut to show. Default: storyboard on the animatic; model "
                          "backends never draw them")


MAX_TAKES = 9


class Project(Model):
    title: str = Field(..., min_length=1)
    language: str = Field("en", description="the script's language: en, zh, ...")
    style: Style | str = Field(default_factory=Style, description="the visual style appended to every prompt (a "
                               "string), or {prompt: ..., overlays: storyboard | clean}")
    script: str = Field("script.fountain", description="script file, relative to the project folder")
    preset: Literal["vertical-1080", "vertical-720", "square-1080", "landscape-1080"] = Field(
        "vertical-1080", description="output size and frame rate; width/height/fps override it")
    width: int = Field(1080, ge=64, le=4096)
    height: int = Field(1920, ge=64, le=4096)
    fps: int = Field(30, ge=1, le=120)
    encoding: Encoding = Field(default_factory=Encoding)
    cards: Cards = Field(default_factory=Cards)
    seed: int = 0
    takes: int | dict[str, int] = Field(
        1, description="clips made of every shot, to pick the best from (`dramaforge takes`, `dramaforge pick`): a "
                       "number, or one per video backend ({kling: 3}: others make 1); a shot list's `takes` overrides it")
    identity: IdentityCheck = Field(default_factory=IdentityCheck)
    avoid: str = Field("", description="added to the negative prompt of every shot")
    target_episode_s: float = Field(90, gt=0, le=3600, description="the runtime each episode aims at")
    cast: list[Character] = Field(default_factory=list)
    backends: Backends = Field(default_factory=Backends)
    timing: Timing = Field(default_factory=Timing)
    limits: Limits = Field(default_factory=Limits)
    rates: Rates = Field(default_factory=Rates)
    audio: Audio = Field(default_factory=Audio)
    planner: Planner = Field(default_factory=Planner)
    subtitles: SubtitleStyle = Field(default_factory=SubtitleStyle)
    dialogue: DialogueOptions = Field(default_factory=DialogueOptions, description="tts, tts+lipsync or native (or {mode, sizes, "
                                                                     "min_sync})")
    languages: list[str] = Field(default_factory=list, description="dub languages: every episode re-voiced and "
                                 "subtitled in each (epNN.<language>.mp4), its pictures reused, e.g. [en, es]")
    translation: TranslationOptions = Field(default_factory=TranslationOptions, description="the chat server that "
                                            "translates the dubs' lines (subtitles.translation's, when that is set)")

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data):
        """The preset fills width, height and fps that the project does not set itself; `dialogue: native`
        is short for `dialogue: {mode: native}`."""
        if isinstance(data, dict):
            w, h, fps = PRESETS.get(data.get("preset") or "vertical-1080", PRESETS["vertical-1080"])
            data = {"width": w, "height": h, "fps": fps, **data}
            if isinstance(data.get("dialogue"), str):
                data["dialogue"] = {"mode": data["dialogue"]}
        return data

    @field_validator("style")
    @classmethod
    def _style(cls, v: Style | str) -> Style:
        return Style(prompt=v) if isinstance(v, str) else v

    @field_validator("takes")
    @classmethod
    def _takes(cls, v: int | dict[str, int]) -> int | dict[str, int]:
        for backend, n in (v.items() if isinstance(v, dict) else [("", v)]):
            if backend and backend not in registry.VIDEO:
                raise ValueError(f"{backend!r} is not a video backend (one of: {', '.join(registry.VIDEO)})")
            if not 1 <= n <= MAX_TAKES:
                raise ValueError(f"takes must be 1 to {MAX_TAKES} (got {n}{f' for {backend}' if backend else ''})")
        return v

    def takes_for(self, backend: str) -> int:
        """How many takes of each shot the video backend `backend` makes (a shot list may say otherwise)."""
        return self.takes.get(backend, 1) if isinstance(self.takes, dict) else self.takes

    @property
    def overlays(self) -> Literal["storyboard", "clean"]:
        """The animatic's overlays: as set, else storyboard (the animatic is a storyboard)."""
        return self.style.overlays or "storyboard"

    @field_validator("width", "height")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"must be even for H.264 yuv420p (got {v})")
        return v

    @model_validator(mode="after")
    def _unique_cast(self) -> "Project":
        ids = [c.id for c in self.cast]
        twice = next((i for i in ids if ids.count(i) > 1), None)
        if twice is not None:  # two entries with one id would merge: the second's lines in the first's voice
            raise ValueError(f"cast: the id {twice!r} is given to {ids.count(twice)} characters; each needs its own")
        seen: dict[str, str] = {}
        for c in self.cast:
            for key in (c.id, *(normalize_name(n) for n in (c.name, *c.aliases))):
                if key in seen and seen[key] != c.id:
                    raise ValueError(f"cast: {key!r} is used by both {seen[key]!r} and {c.id!r}")
                seen[key] = c.id
        return self

    @field_validator("languages")
    @classmethod
    def _languages(cls, v: list[str]) -> list[str]:
        for lang in v:
            if not re.fullmatch(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*", lang):
                raise ValueError(f"{lang!r} is not a language code (e.g. en, es, pt-br, zh-Hant)")
        twice = next((x for x in v if v.count(x) > 1), None)
        if twice:
            raise ValueError(f"{twice!r} is listed twice")
        return v

    @model_validator(mode="after")
    def _dubbable(self) -> "Project":
        if self.languages:
            if self.language in self.languages:
                raise ValueError(f"languages: {self.language!r} is the script's own language (`language:`); list "
                                 "only the languages to dub into")
            second = self.subtitles.translation
            if second is not None and second.language in self.languages:
                raise ValueError(f"subtitles.translation.language {second.language!r} is also a dub language: the "
                                 f"dub's own epNN.{second.language}.srt is its subtitles; drop one of the two")
            native = [c.id for c in self.cast if c.dialogue == "native"]
            if self.dialogue.mode == "native" or native:
                raise ValueError("languages: lines the video model speaks (dialogue: native"
                                 f"{', for ' + ', '.join(native) if native else ''}) are in its own voice and the "
                                 "script's language: a dub cannot re-voice them; use dialogue: tts or tts+lipsync")
        for c in self.cast:
            extra = sorted(set(c.voices) - set(self.languages))
            if extra:
                raise ValueError(f"cast {c.id!r}: voices for {', '.join(extra)}, which `languages:` does not list")
        return self

    @model_validator(mode="after")
    def _bilingual(self) -> "Project":
        pair = self.subtitles.bilingual
        if pair is None:
            return self
        second = self.subtitles.translation.language if self.subtitles.translation else None
        other = [x for x in pair if x != self.language]
        if len(set(pair)) != 2 or len(other) != 1 or (other[0] not in self.languages and other[0] != second):
            raise ValueError(f"subtitles.bilingual {pair}: one of the two must be the script's language "
                             f"({self.language!r}) and the other a dub language (`languages`) or "
                             "subtitles.translation's")
        return self

    def translator(self) -> TranslationOptions | None:
        """The chat server that translates: subtitles.translation's, else the dubs' `translation`."""
        return self.subtitles.translation or (self.translation if self.languages else None)

    def character(self, char_id: str) -> Character:
        for c in self.cast:
            if c.id == char_id:
                return c
        raise KeyError(char_id)

    def voice_for(self, char_id: str, language: str | None = None) -> Voice:
        """The cast member's voice (in the dub `language`); a character missing from the cast (a `check`
        warning) gets the default. A dub's voice is the character's own, in the language's eSpeak voice,
        with what `voices[language]` sets over it."""
        try:
            c = self.character(char_id)
            voice, own = c.voice, c.voices.get(language) if language else None
        except KeyError:
            voice, own = Voice(language=default_voice_language(self.language)), None
        if not language or language == self.language:
            return voice
        update = {"language": default_voice_language(language)}
        if own is not None:
            update.update({k: getattr(own, k) for k in own.model_fields_set})
        return voice.model_copy(update=update)


def default_voice_language(language: str) -> str:
    return {"zh": "cmn", "zh-cn": "cmn", "zh-tw": "cmn", "zh-hans": "cmn", "zh-hant": "cmn", "yue": "yue",
            "en": "en-us"}.get(language.lower(), language)


def normalize_name(name: str) -> str:
    """The key under which cue spellings of one character meet (case, full width, extensions)."""
    import unicodedata

    s = unicodedata.normalize("NFKC", name).strip()
    s = re.sub(r"\s*[\(（][^)）]*[\)）]\s*$", "", s)  # (V.O.), （续）
    s = s.lstrip("@").strip()
    return re.sub(r"\s+", " ", s).casefold()


# --- the script: stages/schema_script.py ------------------------------------------------------

from stages.schema_script import Element, ElementKind, Episode, Scene, Script, Warning_  # noqa: E402,F401

# --- shots -------------------------------------------------------------------------------------

CameraMove = Literal["static", "push-in", "pull-out", "pan-left", "pan-right", "tilt-up", "tilt-down"]


class ShotLine(Model):
    """One spoken line inside a shot; `key` identifies its speech artifact."""

    character: str
    text: str
    parenthetical: str | None = None
    extension: str | None = None
    file: str
    line: int
    speech_s: float | None = Field(None, description="measured duration of the spoken line")


class Shot(Model):
    id: str = Field(..., pattern=r"^ep\d{2,}-sc\d{2,}-sh\d{3,}$")
    episode: int
    scene: int
    size: ShotSize
    camera: CameraMove = "static"
    location: str
    time: str = ""
    characters: list[str] = Field(default_factory=list)
    action: str = ""
    lines: list[ShotLine] = Field(default_factory=list)
    duration_s: float = Field(..., gt=0, le=600, description="seconds; a shot longer than 10 minutes is refused")
    prompt: str = ""
    file: str
    line: int
    locked: bool = Field(False, description="keep this shot exactly as written here when re-planning")
    planned: str | None = Field(None, description="what the planner made (a hash): a shot that differs "
                                                  "from it was edited by hand and is kept")
    card: str | None = Field(None, description="on-screen text shown over this shot (centered text, 【字幕：…】)")
    transition: Literal["cut", "dissolve", "dip"] = Field(
        "cut", description="into this shot from the one before: cut, cross-dissolve, or dip to black")
    music: str | None = Field(None, description="this scene's music cue ([[music: file]]), 'none' for silence")
    sfx: list[str] = Field(default_factory=list, description="sound effects starting with this shot")
    dialogue: DialogueMode | None = Field(None, description="how this shot's lines are voiced (over the "
                                                            "character's and the project's)")
    lipsync: bool | None = Field(None, description="true: sync the speaker's lips whatever the framing; false: "
                                                   "never (with dialogue tts+lipsync)")
    takes: int | None = Field(None, ge=1, le=MAX_TAKES, description="clips to make of this shot (over the project's takes)")
    take: int | None = Field(None, ge=1, le=MAX_TAKES, description="the take the episode uses (`dramaforge pick`; default 1)")


class ShotList(Model):
    episode: int
    title: str = ""
    shots: list[Shot]

    @property
    def id(self) -> str:
        return f"ep{self.episode:02d}"

    @property
    def duration_s(self) -> float:
        return sum(s.duration_s for s in self.shots)
