"""Where everything a render makes lives, under PROJECT/build/ (git-ignored): the one place that
names a file or folder there."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BuildPaths:
    """Where everything a render makes lives, under PROJECT/build/ (git-ignored)."""

    root: Path

    @property
    def shots(self) -> Path:
        return self.root / "shots"

    @property
    def speech(self) -> Path:
        return self.root / "speech"

    @property
    def characters(self) -> Path:
        """Reference sheets, one folder per character."""
        return self.root / "characters"

    @property
    def keyframes(self) -> Path:
        return self.root / "keyframes"

    @property
    def shotlists(self) -> Path:
        return self.root / "shotlists"

    @property
    def episodes(self) -> Path:
        return self.root / "episodes"

    @property
    def work(self) -> Path:
        """Per-episode intermediates (dialogue mix, ASS file) kept for inspection."""
        return self.root / "work"

    @property
    def review(self) -> Path:
        """The review site: index.html, epNN.html, thumbnails and the page font."""
        return self.root / "review"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.sqlite"

    def shotlist(self, ep_id: str) -> Path:
        return self.shotlists / f"{ep_id}.yaml"

    def episode_mp4(self, ep_id: str) -> Path:
        return self.episodes / f"{ep_id}.mp4"

    def episode_srt(self, ep_id: str) -> Path:
        return self.episodes / f"{ep_id}.srt"

    def episode_ass(self, ep_id: str) -> Path:
        return self.work / f"{ep_id}.ass"

    def episode_audio(self, ep_id: str) -> Path:
        return self.work / f"{ep_id}.mix.wav"

    def make_dirs(self) -> None:
        for d in (self.shots, self.speech, self.shotlists, self.episodes, self.work):
            d.mkdir(parents=True, exist_ok=True)
