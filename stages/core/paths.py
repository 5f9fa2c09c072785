"""Where everything a render makes lives, under PROJECT/build/ (git-ignored): the one place that
names a file or folder there. Content-addressed artifacts are named by their key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BuildPaths:
    root: Path

    @classmethod
    def of(cls, project_dir: Path) -> "BuildPaths":
        """A project's build folder: PROJECT/build/."""
        return cls(Path(project_dir) / "build")

    # --- folders -------------------------------------------------------------------------------

    @property
    def shots(self) -> Path:
        return self.root / "shots"

    @property
    def speech(self) -> Path:
        return self.root / "speech"

    @property
    def voices(self) -> Path:
        """Each enrolled voice's provider id, by the key of its clip and account."""
        return self.root / "voices"

    @property
    def characters(self) -> Path:
        """Reference sheets, one folder per character."""
        return self.root / "characters"

    @property
    def keyframes(self) -> Path:
        return self.root / "keyframes"

    @property
    def conformed(self) -> Path:
        """Shots re-encoded for the cut (a transition, another size or rate), by their own key."""
        return self.root / "conformed"

    @property
    def shotlists(self) -> Path:
        return self.root / "shotlists"

    @property
    def plans(self) -> Path:
        """An LLM planner's answers, by the hash of what was asked."""
        return self.root / "plans"

    @property
    def translations(self) -> Path:
        return self.root / "translations"

    @property
    def episodes(self) -> Path:
        return self.root / "episodes"

    @property
    def lipsync(self) -> Path:
        """Synced pieces, the speech cut for them, and each synced shot's report."""
        return self.root / "lipsync"

    @property
    def work(self) -> Path:
        """Per-episode intermediates (dialogue mix, ASS file) kept for inspection."""
        return self.root / "work"

    @property
    def identity(self) -> Path:
        """The identity check's faces and scores per take, its sampled frames, its reference faces."""
        return self.root / "identity"

    @property
    def meters(self) -> Path:
        """Each music file's measured loudness and decoded samples, by its content's hash (once, not per render)."""
        return self.work / "meters"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def review(self) -> Path:
        """The review site: index.html, epNN.html, thumbnails and the page font."""
        return self.root / "review"

    @property
    def thumbs(self) -> Path:
        return self.review / "thumbs"

    @property
    def review_assets(self) -> Path:
        """The review site's stylesheets (the embedded font)."""
        return self.review / "assets"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.sqlite"

    @property
    def series_json(self) -> Path:
        return self.root / "series.json"

    def lock(self, folder: Path, name: str) -> Path:
        """The cross-process lock of one artifact (or character) in `folder`."""
        return folder / ".locks" / f"{name}.lock"

    # --- content-addressed artifacts ---------------------------------------------------------

    def clip(self, key: str) -> Path:
        return self.shots / f"{key}.mp4"

    def lipsync_file(self, key: str, suffix: str) -> Path:
        return self.lipsync / f"{key}{suffix}"

    def wav(self, key: str) -> Path:
        return self.speech / f"{key}.wav"

    def voice(self, key: str) -> Path:
        return self.voices / f"{key}.json"

    def voice_figure(self, key: str) -> Path:
        """A line's speaker-similarity figure against its character's reference clip."""
        return self.speech / f"{key}.voice.json"

    def keyframe(self, key: str) -> Path:
        return self.keyframes / f"{key}.png"

    def sheet(self, character: str, view: str, key: str) -> Path:
        return self.characters / character / f"{view}-{key}.png"

    def own_reference(self, character: str, digest: str, suffix: str) -> Path:
        """A user's own reference image, copied in under its content digest."""
        return self.characters / character / f"own-{digest}{suffix}"

    def thumb(self, source: Path) -> Path:
        """A review thumbnail, named by its (content-addressed) source."""
        return self.thumbs / f"{source.stem}.jpg"

    def review_page(self, name: str) -> Path:
        return self.review / name

    def conformed_clip(self, key: str) -> Path:
        return self.conformed / f"{key}.mp4"

    def translation(self, key: str) -> Path:
        return self.translations / f"{key}.json"

    def plan(self, key: str) -> Path:
        return self.plans / f"{key}.json"

    # --- per episode -------------------------------------------------------------------------

    def shotlist(self, ep_id: str) -> Path:
        return self.shotlists / f"{ep_id}.yaml"

    def episode_mp4(self, ep_id: str) -> Path:
        return self.episodes / f"{ep_id}.mp4"

    def episode_srt(self, ep_id: str) -> Path:
        return self.episodes / f"{ep_id}.srt"

    def episode_vtt(self, ep_id: str) -> Path:
        return self.episodes / f"{ep_id}.vtt"

    def episode_subtitles(self, ep_id: str, language: str, suffix: str) -> Path:
        """A second language's own sidecar: epNN.<language>.srt or .vtt."""
        return self.episodes / f"{ep_id}.{language}{suffix}"

    def poster(self, ep_id: str) -> Path:
        return self.episodes / f"{ep_id}.jpg"

    def otio(self, ep_id: str) -> Path:
        return self.episodes / f"{ep_id}.otio"

    def episode_ass(self, ep_id: str) -> Path:
        return self.work / f"{ep_id}.ass"

    def episode_audio(self, ep_id: str) -> Path:
        return self.work / f"{ep_id}.mix.wav"

    def check_writable(self, *, min_free: int = 1 << 20) -> None:
        """Without making anything: an EnvironmentFailure if the build folder (or the nearest folder
        that exists on its way) is on a read-only or full disk, or not writable. Run before any paid
        work (an LLM planner) that the render could not keep."""
        import errno
        import os

        from stages.core.errors import environment_failure

        at = self.root
        while not at.exists() and at != at.parent:
            at = at.parent
        st = os.statvfs(at)
        code = errno.EROFS if st.f_flag & os.ST_RDONLY else errno.EACCES if not os.access(at, os.W_OK) else \
            errno.ENOSPC if st.f_bavail * st.f_frsize < min_free else 0
        if code:
            raise environment_failure(OSError(code, os.strerror(code), str(self.root)))

    def make_dirs(self) -> None:
        """The build folders, and proof that they can be written: an unwritable or full disk is one
        clear EnvironmentFailure here, before any work, not a traceback from the first stage."""
        import os

        from stages.core.artifacts import partial_file
        from stages.core.errors import environment_failure

        try:
            for d in (self.shots, self.speech, self.shotlists, self.episodes, self.work, self.lipsync, self.voices):
                d.mkdir(parents=True, exist_ok=True)
            fd, probe = partial_file(self.work, "probe", "")
            try:
                os.write(fd, b"x" * 4096)
                os.fsync(fd)
            finally:
                os.close(fd)
                probe.unlink()
        except OSError as exc:
            raise (environment_failure(exc, str(self.root)) or exc) from exc
