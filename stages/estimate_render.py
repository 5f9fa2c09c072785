"""What a render would make, what it would reuse, and what it would cost and take, before any work:
the work plan, priced.

Built on `project_status`, which compares the work plan (`plan_work`, the render's own keys) with
the ledger, so a dry run names exactly what the render then makes. Prices and speeds come from
`project.yaml`'s `rates`; a time with no rate is the median this project's ledger measured for
that backend. Whether a backend may charge, and how many shots it makes at once, come from its
declared capabilities.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stages.backends.base import images_sent, requested_seconds
from stages.backends.registry import BackendSet
from stages.core.ledger import REUSED, Kind, Ledger, State
from stages.project_status import EpisodeStatus
from stages.schema import Project, Rates

UNIT = {"video": "shot", "speech": "line", "image": "image", "assembly": "episode", "planning": "episode plan",
        "translation": "translation call", "lipsync": "synced shot"}  # what one unit of each kind of work is called


@dataclass
class Work:
    """One kind of work (video, speech, image, assembly) by one backend: what is made and reused."""

    kind: str
    backend: str
    todo: int = 0
    cached: int = 0
    todo_s: float = 0.0  # seconds of media to make (video: as asked of the backend; speech estimated from its text)
    images: int = 0  # video: images the requests send (keyframes, reference sheets)
    uploads: int = 0  # video: files a provider with an upload step is given first (each once per account)
    takes: int = 0  # video: of `todo`, takes after a shot's first (`takes: N`)
    jobs: int = 0  # video on a hosted backend: paid jobs (a run report counts them from the job journal)
    unknown: int = 0  # of those, jobs whose request's answer was lost: maybe made, maybe billed
    resolution: str | None = None  # video: what the backend makes, as billed
    audio: bool = False  # video: the model makes sound too (billed so)
    chars: int = 0  # speech: characters of text to speak
    bytes: int = 0  # speech: the same text's UTF-8 bytes (what Fish Audio bills)
    voices: int = 0  # speech: voices to enroll first (a cloning provider's fee, once per clip and account)
    who: str = ""  # speech: the character whose lines these are
    cost: float | None = 0.0  # None: a billed backend with no rate in project.yaml
    time_s: float | None = 0.0  # None: no rate and nothing measured yet
    basis: str = ""  # where time_s comes from
    ids: list[str] = field(default_factory=list)  # the units to make: shot ids, line ids, image files


@dataclass
class Estimate:
    currency: str
    episodes: list[int]  # to render
    up_to_date: list[int]  # already cut exactly as they would be: skipped
    work: list[Work]
    concurrency: int  # shots made at once
    shots: dict[int, list[str]] = field(default_factory=dict)  # episode -> shot ids to make
    provisional: list[str] = field(default_factory=list)  # episodes counted from a stand-in plan
    recreate: int = 0  # paid jobs a shot may re-create in one run (`limits.recreate_failed_jobs`)
    hosted: bool = False  # shots are paid jobs of a hosted provider (the job protocol)
    retakes: int = 0  # shots made now that may get one more take (identity: {on_drift: retake})

    @property
    def worst_cost(self) -> float | None:
        """The cost if every shot's paid job is re-created as often as the project allows, and every shot
        that may be retaken (identity.on_drift: retake) is, at its takes' average price."""
        if self.cost is None:
            return None
        spent = sum(w.cost for w in self.work if w.kind == "video" and w.todo and w.cost)
        return round(self.cost + spent * self.recreate + self.retake_cost * (1 + self.recreate), 4)

    @property
    def retake_cost(self) -> float:
        """What the identity check's retakes would cost if every one is ordered (at the takes' average)."""
        return round(sum(w.cost / w.todo for w in self.work if w.kind == "video" and w.todo and w.cost)
                     * self.retakes, 4)

    @property
    def cost(self) -> float | None:
        return total_cost(self.work)

    @property
    def unpriced(self) -> list[Work]:
        return [w for w in self.work if (w.todo or w.voices) and w.cost is None]

    @property
    def time_s(self) -> float | None:
        """Wall time: shots run `concurrency` at once, the rest one after another."""
        times = [w for w in self.work if w.todo]
        if any(w.time_s is None for w in times):
            return None
        return sum(w.time_s / (self.concurrency if w.kind == "video" else 1) for w in times)

    def to_dict(self) -> dict:
        return {"currency": self.currency, "episodes": self.episodes, "up_to_date": self.up_to_date,
                "cost": self.cost, "worst_cost": self.worst_cost, "recreate": self.recreate, "retakes": self.retakes,
                "retake_cost": self.retake_cost,
                "hosted": self.hosted, "time_s": None if self.time_s is None else round(self.time_s, 1),
                "concurrency": self.concurrency, "work": [asdict(w) for w in self.work],
                "shots": {f"ep{n:02d}": ids for n, ids in self.shots.items()}, "provisional": self.provisional}


def estimate_render(statuses: list[EpisodeStatus], project: Project, backends: BackendSet, *, ledger: Ledger | None,
                    force: set[str] = frozenset()) -> Estimate:
    """What rendering the episodes in `statuses` would do now (an episode whose cut is done is skipped).

    `backends` are read for their capabilities only (nothing is loaded or called); `force` names
    shots to count as made anew (`rerun --shot`).
    """
    rates = project.rates
    forced = {e.number for e in statuses if any(s.id in force for s in (*e.shots, *e.speech, *e.voices))}
    todo = [e for e in statuses if not e.current or e.number in forced]
    shots = Work("video", project.backends.video)
    lines: dict[tuple[str, str], Work] = {}
    enrolling: set[str] = set()
    images = Work("image", project.backends.image.kind)
    assemble = [e for e in todo if not e.cut_kept and (e.assembly != State.DONE or e.number in forced)]
    dubs = [d for e in todo for d in e.dubs if d.state != State.DONE]  # each language's cut to make
    cuts = Work("assembly", "ffmpeg", todo=len(assemble) + len(dubs),
                cached=len(statuses) - len(assemble) + sum(len(e.dubs) for e in statuses) - len(dubs),
                ids=[e.id for e in assemble] + [d.id for d in dubs])
    per_episode: dict[int, list[str]] = {}
    retakes = 0
    sheets: dict[str, bool] = {}
    keyframes: dict[str, bool] = {}
    video = backends.video
    caps = video.capabilities
    # a line spoken again (`rerun --line`) may come out longer or shorter and re-time its shot: on a
    # paid backend that shot is priced as made again (the worst case), so --max-cost holds
    retimed = {i.rsplit("-l", 1)[0] for e in todo for ln in e.speech if (i := ln.id) in force} if caps.billed \
        else set()
    shots.resolution, shots.audio = caps.resolution, caps.native_audio
    files: set[Path] = set()
    for e in todo:
        units = {u.id: u for u in e.work.shots}
        made = [s for s in e.shots if s.state not in REUSED or s.id in force or s.id in retimed]
        per_episode[e.number] = [s.id for s in made]
        shots.todo += len(made)
        shots.takes += sum(1 for s in made if s.take > 1)
        if project.identity.check and project.identity.on_drift == "retake":  # one more per shot, at most
            base = {s.id: s.takes or project.takes_for(video.name) for s in e.work.plan.shots if s.take is None}
            takes = Counter(s.shot for s in e.shots)
            retakes += len({s.shot for s in made if s.shot in base and takes[s.shot] == base[s.shot]})
        shots.cached += len(e.shots) - len(made)
        # what the backend is asked for (a hosted model's 5 or 10 s clip for a 3.2 s shot), as it bills
        shots.todo_s += sum(requested_seconds(caps, units[s.id].request.duration_s, project.fps) for s in made)
        shots.images += sum(images_sent(caps, units[s.id].request, video.name) for s in made)
        if caps.uploads:
            files.update(p for s in made for p in video.uploads_for(units[s.id].request))
        shots.ids += [s.id for s in made]
        for v in e.voices:  # enrolled once, whichever episode first needs it
            if v.state != State.DONE and v.id not in enrolling:
                enrolling.add(v.id)
                lines.setdefault((v.engine, v.character), Work("speech", v.engine, who=v.character)).voices += 1
        for ln in [*e.speech, *(ln for d in e.dubs for ln in d.speech)]:  # per character, as providers bill
            w = lines.setdefault((ln.engine, ln.character), Work("speech", ln.engine, who=ln.character))
            if ln.done and ln.id not in force:
                w.cached += 1
            else:
                w.todo += 1
                w.chars += ln.chars
                w.bytes += len(ln.text.encode("utf-8"))
                w.todo_s += ln.speech_s
                w.ids.append(ln.id)
        sheets.update(e.sheets)
        # every shot the render touches starts from its keyframe, made first if it is missing
        keyframes.update({s.keyframe: Path(s.keyframe).exists() for s in e.shots
                          if s.keyframe and (s.state != State.PLACEHOLDER or s.id in force)})
    for made in (sheets, keyframes):
        images.todo += sum(1 for ok in made.values() if not ok)
        images.cached += sum(1 for ok in made.values() if ok)
        images.ids += sorted(p for p, ok in made.items() if not ok)

    shots.uploads = _uploads(video, files, ledger)
    image = backends.image
    pixels = project.width * project.height / (1080 * 1920)  # built-in speeds are for a 1080x1920 frame
    shots.cost = price_work(shots, rates, video.capabilities.billed)
    shots.time_s, shots.basis = duration("video", rates, shots.backend, ledger, count=shots.todo,
                                         seconds=shots.todo_s, builtin=_scaled(video.capabilities.seconds_each, pixels))
    for w in lines.values():
        speech = backends.speech(w.backend)
        w.cost = price_work(w, rates, speech.capabilities.billed)
        w.time_s, w.basis = duration("speech", rates, w.backend, ledger, count=w.todo,
                                     builtin=speech.capabilities.seconds_each)
    images.cost = price_work(images, rates, image.capabilities.billed)
    images.time_s, images.basis = duration("image", rates, images.backend, ledger, count=images.todo,
                                           builtin=image.capabilities.seconds_each)
    cuts.cost = price_work(cuts, rates, False)
    cuts.time_s, cuts.basis = duration("assembly", rates, "ffmpeg", ledger, count=cuts.todo,
                                       seconds=sum(e.work.plan.duration_s for e in assemble if e.work)
                                       + sum(e.work.plan.duration_s for e in todo for d in e.dubs
                                             if d.state != State.DONE and e.work),
                                       builtin=ASSEMBLY_S_PER_S * pixels)
    # Chat calls: an LLM planner's first plan of an episode, subtitle translation of a new cut.
    plans = Work("planning", "planner", ids=[e.id for e in statuses if e.provisional])
    plans.todo = len(plans.ids)
    plans.cached = len(statuses) - plans.todo if project.planner.kind == "llm" else 0
    calls = {e.id: e.translation_calls for e in assemble if e.translation_calls}
    calls.update({d.id: d.translation_calls for d in dubs if d.translation_calls})
    words = Work("translation", "translation", todo=sum(calls.values()), ids=list(calls))
    asked = len(assemble) * (project.subtitles.translation is not None) + len(dubs)
    words.cached = asked - len(calls)
    for w in (plans, words):  # both go to a chat server, which may charge
        w.cost = price_work(w, rates, True)  # the planner is no backend; translation's says it bills
        w.time_s, w.basis = duration("text", rates, w.backend, None, count=w.todo)
    lips = lipsync_work(todo, project, backends, ledger)
    concurrency = project.limits.video_concurrency or video.capabilities.concurrency
    return Estimate(rates.currency, [e.number for e in todo], [e.number for e in statuses if e not in todo],
                    [shots, *lines.values(), images, cuts, plans, words, *lips], concurrency, per_episode,
                    provisional=plans.ids, recreate=project.limits.recreate_failed_jobs if caps.resumable else 0,
                    hosted=caps.resumable, retakes=retakes)


def lipsync_work(todo: list[EpisodeStatus], project: Project, backends: BackendSet, ledger: Ledger | None
                 ) -> list[Work]:
    """Lip sync to do: the synced shots not made yet, priced per second sent. A shot not timed yet (its
    speech unspoken) counts its eligible turns at their reading-speed length, each at least the
    backend's shortest piece."""
    from stages.core.text import estimate_speech_s
    from stages.sync_lips import PAD_S, line_verdicts

    shots = [e for e in todo if e.work is not None and (e.syncs or e.unsynced or any(
        line_verdicts(s, project) for s in e.work.plan.shots))]
    if not shots:
        return []
    lipsync = backends.lipsync
    w = Work("lipsync", project.backends.lipsync)
    for e in shots:
        keyed = {s.shot for s in e.syncs}
        for s in e.syncs:
            if s.state == State.DONE:
                w.cached += 1
            else:
                w.todo += 1
                w.todo_s += s.seconds
                w.ids.append(s.id)
        for shot in e.work.plan.shots:
            ok = [i for i, good, _ in line_verdicts(shot, project) if good]
            if shot.id in keyed or not ok or all(ln.speech_s is not None for ln in shot.lines):
                continue  # keyed above, nothing eligible, or timed and found nothing to send
            w.todo += 1
            w.ids.append(f"{shot.id}-lips")
            w.todo_s += sum(max(lipsync.capabilities.min_s, estimate_speech_s(shot.lines[i].text) + 2 * PAD_S)
                            for i in ok)
    w.todo_s = round(w.todo_s, 3)
    caps = lipsync.capabilities
    w.jobs = 0
    w.cost = price_work(w, project.rates, caps.billed)
    w.time_s, w.basis = duration("lipsync", project.rates, w.backend, ledger, count=w.todo, seconds=w.todo_s,
                                 builtin=_scaled(caps.seconds_each, project.width * project.height / (1080 * 1920)))
    return [w]


def _uploads(video, files: set[Path], ledger: Ledger | None) -> int:
    """Of the files the shots send through an upload step, those the account has not been given yet
    (the ledger's `uploads` table knows a file by its content, so a sheet not made yet counts)."""
    if not files:
        return 0
    from stages.core.artifacts import file_sha256
    from stages.core.jobs import Uploads

    have = Uploads(ledger) if ledger is not None and ledger.path.exists() else None
    account = video.account()
    return sum(1 for p in files if have is None or not p.exists() or have.get(account, file_sha256(p)) is None)


def total_cost(work: list[Work]) -> float | None:
    """The sum of what is to be made; None when any of it cannot be priced."""
    costs = [w.cost for w in work if w.todo or w.jobs or w.voices]
    return None if None in costs else round(sum(costs), 4)


def price_work(w: Work, rates: Rates, is_billed: bool) -> float | None:
    """`price` of a Work row: its units (paid jobs, where counted), seconds of media, images and characters."""
    kind = "text" if w.kind in ("planning", "translation") else w.kind
    return price(kind, rates, w.backend, is_billed, count=w.jobs or w.todo, seconds=w.todo_s, chars=w.chars,
                 images=w.images, resolution=w.resolution, audio=w.audio, text_bytes=w.bytes, voices=w.voices)


def price(kind: str, rates: Rates, backend: str, is_billed: bool, *, count: int, seconds: float = 0.0,
          chars: int = 0, images: int = 0, resolution: str | None = None, audio: bool = False,
          text_bytes: int = 0, voices: int = 0) -> float | None:
    """What `count` units of `kind` by `backend` cost; None when a billed backend has no rate. Video
    is priced as hosted models bill: per second asked for (at its resolution, with or without sound),
    per request and per image sent."""
    if not count and not voices:
        return 0.0
    if kind == "video" and (video := rates.video.get(backend)) is not None:
        per_second = video.cost_per_second_at.get(resolution, video.cost_per_second) if resolution else \
            video.cost_per_second
        per_second += video.audio_cost_per_second if audio else 0.0
        return round(per_second * seconds + video.cost_per_shot * count + video.cost_per_reference * images, 4)
    if kind == "speech" and (speech := rates.speech.get(backend)) is not None:
        return round(speech.cost_per_1k_chars * chars / 1000 + speech.cost_per_1k_bytes * text_bytes / 1000
                     + speech.cost_per_minute * seconds / 60 + speech.cost_per_line * count
                     + speech.cost_per_voice * voices, 4)
    if kind == "image" and (image := rates.image.get(backend)) is not None:
        return round(image.cost_per_image * count, 4)
    if kind == "text" and (text := rates.text.get(backend)) is not None:
        return round(text.cost_per_call * count, 4)
    if kind == "lipsync" and (lips := rates.lipsync.get(backend)) is not None:
        return round(lips.cost_per_second * seconds + lips.cost_per_job * count, 4)
    return None if is_billed else 0.0


_LEDGER_KIND = {"video": Kind.SHOT, "speech": Kind.SPEECH, "assembly": Kind.EPISODE, "lipsync": Kind.LIPSYNC}


ASSEMBLY_S_PER_S = 0.5  # cutting an episode (subtitles, mix, loudness, one encode): wall s per second of it,
# 1080x1920, measured on a 2-core laptop (the demo: 19 s for a 38 s episode)
BUILTIN = "built-in, measured on a 2-core laptop CPU"


def _scaled(each: float | None, factor: float) -> float | None:
    return None if each is None else each * factor


def duration(kind: str, rates: Rates, backend: str, ledger: Ledger | None, *, count: int,
             seconds: float = 0.0, builtin: float | None = None) -> tuple[float | None, str]:
    """(seconds of work, where that figure comes from) for `count` units; None when unknown. A rate
    in project.yaml comes first, then what this project's ledger measured, then the backend's
    built-in speed (`builtin`: per second of media for video and assembly, else per unit)."""
    if not count:
        return 0.0, ""
    per_unit = None
    if kind == "video" and (rate := rates.video.get(backend)) is not None:
        if rate.seconds_per_second is not None:
            return rate.seconds_per_second * seconds, "rate"
        per_unit = rate.seconds_per_shot
    elif kind == "speech" and (rate := rates.speech.get(backend)) is not None:
        per_unit = rate.seconds_per_line
    elif kind == "image" and (rate := rates.image.get(backend)) is not None:
        per_unit = rate.seconds_per_image
    elif kind == "text" and (rate := rates.text.get(backend)) is not None:
        per_unit = rate.seconds_per_call
    elif kind == "lipsync" and (rate := rates.lipsync.get(backend)) is not None \
            and rate.seconds_per_second is not None:
        return rate.seconds_per_second * seconds, "rate"
    if per_unit is not None:
        return per_unit * count, "rate"
    if ledger is not None and kind in _LEDGER_KIND:
        seen = ledger.measured_seconds(_LEDGER_KIND[kind], None if kind == "assembly" else backend)
        if seen:
            return statistics.median(seen) * count, f"measured here, median of {len(seen)}"
    if builtin is not None:
        return builtin * (seconds if kind in ("video", "assembly", "lipsync") else count), BUILTIN
    return None, "no rate"


def rate_hint(w: Work) -> str:
    """Which project.yaml key would price or time this work."""
    if w.kind in ("planning", "translation"):
        return f"rates.text.{w.backend}: {{cost_per_call: ..., seconds_per_call: ...}}"
    key = {"video": "cost_per_second", "speech": "cost_per_1k_chars", "image": "cost_per_image",
           "lipsync": "cost_per_second"}[w.kind]
    timing = {"video": "seconds_per_shot", "speech": "seconds_per_line", "image": "seconds_per_image",
              "lipsync": "seconds_per_second"}[w.kind]
    return f"rates.{w.kind}.{w.backend}: {{{key}: ..., {timing}: ...}}"
