"""The units of work a render makes, as the work plan (`plan_work`) describes them: data only.

Each unit carries its content key, the path of the artifact it makes, and what its backend is asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from stages.backends._voices import VoiceClip
from stages.backends.base import ImageRequest, ShotRequest, SpeechRequest
from stages.mix_audio import Effect, MusicSpan
from stages.schema import ShotList
from stages.time_shots import TimedLine


@dataclass(frozen=True)
class LineUnit:
    """One spoken line: its voice request, and the WAV it makes."""

    id: str  # epNN-scNN-shNNN-lK, as in the ledger
    episode: int
    shot_id: str
    index: int  # its place in the shot
    engine: str  # the speech backend that voices it
    request: SpeechRequest
    key: str
    path: Path
    where: str  # episode, scene and script file:line, for every message about it
    voice: VoiceUnit | None = None  # the enrolled voice it is spoken in (a cloning provider's)
    character: str = ""
    reference: Path | None = None  # the character's reference clip: the line's voice figure is measured on it


@dataclass(frozen=True)
class VoiceUnit:
    """A character's voice at a cloning provider: their reference clip, enrolled once per clip and account."""

    id: str  # voice-<character>-<engine>, as in the ledger
    character: str
    engine: str
    clip: "VoiceClip"
    key: str
    path: Path  # build/voices/<key>.json: the provider's voice id


@dataclass(frozen=True)
class SheetUnit:
    """One character's reference sheet for an episode's look: generated views, or the user's images."""

    character: str
    episode: int
    paths: tuple[Path, ...]
    requests: tuple[ImageRequest, ...] = ()  # views for the image backend to make (none: the user's own)
    sources: tuple[Path, ...] = ()  # the user's own images, copied in under `paths`


@dataclass(frozen=True)
class Clip:
    """A clip a video backend makes: what it is asked, its key, and where it lives."""

    request: ShotRequest
    key: str
    path: Path


@dataclass(frozen=True)
class KeyframeUnit:
    """The first frame an image-to-video backend starts a shot from."""

    request: ImageRequest
    path: Path


@dataclass(frozen=True)
class ShotUnit:
    id: str
    episode: int
    request: ShotRequest  # keyframe and reference sheets filled in for a backend that uses them
    key: str | None  # None while a line of it is unspoken: its length is not known yet
    path: Path | None
    keyframe: KeyframeUnit | None = None
    placeholder: Clip | None = None  # the card the user accepted in its place
    take: int = 1  # take 1's unit id is the shot's; take K's is <shot id>-tK
    chosen: bool = True  # the take its episode uses (one per shot)

    @property
    def shot_id(self) -> str:
        return self.request.shot_id

    @property
    def clip(self) -> tuple[str, Path] | None:
        """(key, path) of the clip its episode uses: the placeholder card, else the shot."""
        if self.placeholder is not None:
            return self.placeholder.key, self.placeholder.path
        return (self.key, self.path) if self.key is not None else None


@dataclass(frozen=True)
class LipSyncPiece:
    """One piece of a shot sent to the lip-sync backend: one speaker, frames [start, start + frames)."""

    character: str
    start: int
    frames: int
    lines: tuple[tuple[float, Path, str], ...]  # (where the line starts in the shot, its WAV, its speech key)
    key: str
    path: Path  # the synced piece, as the backend returned it (conformed)
    audio: Path  # the speech under the piece, cut to it

    @property
    def id_suffix(self) -> str:
        return f"f{self.start}"


@dataclass(frozen=True)
class LipSyncUnit:
    """A shot whose speaker's lips are synced to our voice: its clip (`source`) with each piece replaced."""

    id: str  # <shot id>-lips, as in the ledger
    episode: int
    shot_id: str
    source_key: str
    source: Path  # the shot's clip
    request: ShotRequest  # the shot as its video backend was asked
    pieces: tuple[LipSyncPiece, ...]
    not_sent: tuple[str, ...]  # turns that could not be sent, and why (named in check, status, the review)
    faces: tuple = ()  # (character, box) where the video backend drew faces: the figure reads the mouth there
    key: str = ""
    path: Path | None = None  # the synced shot, which the cut uses in place of `source`
    report: Path | None = None  # what was sent, what came back, each piece's sync figure (JSON)

    def seconds(self) -> float:
        return sum(p.frames for p in self.pieces) / self.request.fps


@dataclass(frozen=True)
class TranslationUnit:
    """The episode's subtitle lines in a second language (one cached answer for exactly these lines)."""

    key: str
    path: Path
    lines: tuple[str, ...]
    source: str
    target: str
    calls: int  # requests translating them takes (batches of the backend's size)
    glossary: tuple[tuple[str, str], ...] = ()  # (term, its word in `target`) from glossary.yaml


@dataclass(frozen=True)
class Cut:
    """Everything one finished episode is made of, with its content address `key`.

    Times (lines, cards, music, effects) are on the episode's clock, after the opening card.
    """

    key: str
    duration_s: float  # the whole episode, cards included
    clips: list[Path]  # the story's shots, in order
    durations: list[float]  # each shot's planned length
    transitions: list[str]  # into each shot: cut, dissolve, dip
    lines: list[TimedLine]
    speech: list[Path]  # one WAV per entry of `lines`
    cards: list[tuple[float, float, str]]
    music: list[MusicSpan]
    effects: list[Effect]
    opening: Clip | None = None  # the drawn backgrounds of the title and end cards
    ending: Clip | None = None
    faces: list = field(default_factory=list)  # (start, end, [box, ...]) where the backend drew faces
    native: list = field(default_factory=list)  # (start, end, clip) whose own sound voices lines (dialogue: native)
    by_model: list = field(default_factory=list)  # per entry of `lines`: voiced by its clip's sound, not `speech`
    second: tuple[str, list[str]] | None = None  # bilingual subtitles: the other language, its text per line


@dataclass(frozen=True)
class EpisodeWork:
    """Every unit of one episode, in the order a render makes them."""

    number: int
    title: str
    plan: ShotList  # timed from the speech on disk (estimates where a line is unspoken)
    lines: tuple[LineUnit, ...]
    sheets: tuple[SheetUnit, ...]
    shots: tuple[ShotUnit, ...]
    translation: TranslationUnit | None
    cut: Cut | None  # None until every line is spoken: the timing is not known before
    mp4: Path
    provisional: bool = False  # an LLM planner has not planned it yet: the rules planner's shots stand in
    syncs: tuple[LipSyncUnit, ...] = ()  # shots whose lips are synced (dialogue: tts+lipsync)
    unsynced: tuple[tuple[str, str], ...] = ()  # (shot id, why a line of it is not synced)
    language: str | None = None  # a dub's language (`stages.plan_dub`): its id and files are epNN.<language>
    fits: tuple[tuple[Path, float, Path], ...] = ()  # a dub's sped-up lines: (spoken WAV, tempo, laid WAV)

    @property
    def id(self) -> str:
        return f"ep{self.number:02d}" + (f".{self.language}" if self.language else "")

    @property
    def voices(self) -> tuple[VoiceUnit, ...]:
        """The enrolled voices its lines are spoken in, each once."""
        return tuple({ln.voice.id: ln.voice for ln in self.lines if ln.voice is not None}.values())
