"""Is the person on screen the character? Faces in sampled frames of a take, matched to the on-screen
characters' reference faces.

Faces are found and embedded with dlib's HOG detector, its 5-point aligner and its 128-d face ResNet
(the `identity` extra: `dlib-bin`, and `face-recognition-models`, which ships the weights; nothing
is downloaded). Similarity is 1 - the embeddings' distance: dlib reads a distance under 0.6 as the
same person (99.38 % on LFW), so 0.4 and up is its "same"; `identity.min_similarity` sets ours.

Per take: each character's best score over the frames, a verdict, and the frame that decided it:
  match       every character with a reference face is found at or above min_similarity
  drift       a face is there, but it is not the character's (below min_similarity)
  missing     fewer faces than characters: someone is not on screen
  unexpected  everyone is found, and a face that is none of them is there too
  no-face     no face found at all (the animatic, a stylised model): said, never passed
  unchecked   nobody on screen has a reference face to compare with
The faces and scores are cached under a key of the take's clip, the references and the model; the
verdict is read from them with the current threshold, so changing it re-checks nothing."""

from __future__ import annotations

import functools
import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stages.core.artifacts import atomic_path, file_digest, spec_hash, write_text_atomic
from stages.core.errors import InputError, RenderError

VERSION = 1
FRAMES = 5  # sampled evenly, away from the ends (fades, a model's first frames)
WIDTH = 720  # frames are scaled to this width first: a close-up's face stays ~200 px, detection ~0.2 s
VERDICTS = ("match", "drift", "missing", "unexpected", "no-face", "unchecked")
# The detector's score a face needs: on the test photographs real faces scored 0.4-2.3 and the astronaut's
# round mission patch 0.12 (a face to HOG at a glance); below this a "face" is not counted.
MIN_DETECTION = 0.3


@dataclass
class Found:
    """One face in one sampled frame: where, when, and its best similarity to each character."""

    frame: int  # index of the sampled frame
    time_s: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the scaled frame
    scores: dict[str, float]  # character id -> similarity to their nearest reference face


@dataclass
class Identity:
    """What the check found in one take (cached), and the verdict at a threshold (`judge`)."""

    key: str
    characters: list[str]  # on screen with a reference face
    unreferenced: list[str]  # on screen, but no face found in any of their references
    faces: list[Found]
    frames: list[str]  # the sampled frames (JPEG), for the page and the report
    verdict: str = ""
    scores: dict[str, float | None] = field(default_factory=dict)  # character -> best over the take
    frame: str | None = None  # the frame that decided the verdict
    why: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def available() -> str | None:
    """None when the identity extra is installed, else what to do about it."""
    try:
        _models()
    except InputError as exc:
        return f"{exc.message}: {exc.hint}"
    return None


_ONE_AT_A_TIME = threading.Lock()


@functools.lru_cache(maxsize=1)
def _models():
    """dlib's detector, aligner and face ResNet (loaded once per process, ~1 s)."""
    import importlib.util

    try:
        import dlib
    except ImportError as exc:
        raise InputError("identity.check needs dlib", hint="pip install 'dramaforge[identity]' (dlib-bin and "
                                                           "face-recognition-models, which ships the weights)") from exc
    spec = importlib.util.find_spec("face_recognition_models")
    folder = Path(next(iter(spec.submodule_search_locations)), "models") if spec else None
    files = {"shape": "shape_predictor_5_face_landmarks.dat", "net": "dlib_face_recognition_resnet_model_v1.dat"}
    if folder is None or not all((folder / f).is_file() for f in files.values()):
        raise InputError("identity.check needs face-recognition-models (dlib's face weights)",
                         hint="pip install 'dramaforge[identity]'")
    return (dlib.get_frontal_face_detector(), dlib.shape_predictor(str(folder / files["shape"])),
            dlib.face_recognition_model_v1(str(folder / files["net"])), dlib.__version__)


@functools.lru_cache(maxsize=1)
def model_identity() -> dict:
    """What determines the faces found (read from the installed packages: the model is not loaded)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        dlib, weights = version("dlib-bin"), version("face_recognition_models")
    except PackageNotFoundError:
        dlib, weights = None, None
    return {"dlib": dlib, "weights": weights, "detector": "hog", "upsample": 1, "min_detection": MIN_DETECTION,
            "aligner": "5-point", "net": "resnet-v1", "frames": FRAMES, "width": WIDTH, "v": VERSION}


def face_references(request) -> dict[str, list[Path]]:
    """Character id -> the images their face is checked against: their own reference image and their
    reference sheet, as the take's request (`ShotRequest`) carried them."""
    return {f.id: list(dict.fromkeys(p for p in (f.reference_image, *f.references) if p is not None))
            for f in request.figures}


def cached(clip_key: str, references: dict[str, list[Path]], cache: Path) -> Identity | None:
    """The check's result for this take if it was made (never runs it: `status` and the plan read this)."""
    try:
        return _read(cache / f"{identity_key(clip_key, references)}.json")
    except OSError:  # a reference not made yet
        return None


def _read(kept: Path) -> Identity | None:
    try:
        data = json.loads(kept.read_text(encoding="utf-8"))
        return Identity(**{**data, "faces": [Found(**{**f, "box": tuple(f["box"])}) for f in data["faces"]]})
    except (OSError, ValueError, TypeError, KeyError):  # not checked yet, or a damaged record
        return None


def _embed(rgb) -> list[tuple[tuple[int, int, int, int], "object"]]:
    """(box, 128-d embedding) of every face in an RGB array."""
    import numpy as np

    out = []
    with _ONE_AT_A_TIME:  # one set of dlib models per process, not safe to share between threads (it crashed)
        detector, aligner, net, _ = _models()
        rects, confidence, _ = detector.run(rgb, 1, 0.0)
        for r, c in zip(rects, confidence):
            if c < MIN_DETECTION:
                continue
            shape = aligner(rgb, r)
            out.append(((r.left(), r.top(), r.right(), r.bottom()),
                        np.asarray(net.compute_face_descriptor(rgb, shape), dtype=np.float32)))
    return out


def reference_faces(images: list[Path], cache: Path) -> list:
    """The embeddings of the faces in a character's reference images (each image's largest face),
    kept in `cache` by the image's content."""
    import numpy as np
    from PIL import Image

    out = []
    for image in images:
        kept = cache / f"ref-{spec_hash('identity-ref', {'image': file_digest(image), 'model': model_identity()})}.npy"
        try:
            found = np.load(kept)
        except (OSError, ValueError):
            with Image.open(image) as im:
                faces = _embed(np.asarray(_scaled(im.convert("RGB"), limit=1024)))
            found = max(faces, key=lambda f: (f[0][2] - f[0][0]) * (f[0][3] - f[0][1]))[1][None] if faces else \
                np.zeros((0, 128), dtype=np.float32)
            with atomic_path(kept) as tmp, open(tmp, "wb") as f:
                np.save(f, found, allow_pickle=False)
        out += list(found)
    return out


def identity_key(clip_key: str, references: dict[str, list[Path]]) -> str:
    return spec_hash("identity", {"clip": clip_key, "model": model_identity(),
                                  "references": {c: [file_digest(p) for p in ps] for c, ps in references.items()}})


def check_take(clip: Path, clip_key: str, references: dict[str, list[Path]], cache: Path) -> Identity:
    """The faces in `clip` matched to each character's references (`references`: character id -> their
    images); cached in `cache` under `identity_key`."""
    key = identity_key(clip_key, references)
    kept = cache / f"{key}.json"
    found = _read(kept)
    if found is not None:
        return found
    refs = {c: reference_faces(ps, cache) for c, ps in references.items()}
    checked = sorted(c for c, r in refs.items() if r)
    result = Identity(key, checked, sorted(c for c, r in refs.items() if not r), [], [])
    import numpy as np

    for i, (t, frame) in enumerate(_frames(clip)):
        out = cache / f"{key}-{i}.jpg"
        if not out.exists():
            with atomic_path(out) as tmp:
                frame.save(tmp, quality=85)
        result.frames.append(str(out))
        for box, e in _embed(np.asarray(frame)):
            scores = {c: round(float(max(1 - np.linalg.norm(e - r) for r in refs[c])), 4) for c in checked}
            result.faces.append(Found(i, round(t, 3), box, scores))
    write_text_atomic(kept, json.dumps(result.to_json(), ensure_ascii=False) + "\n")
    return result


def judge(found: Identity, min_similarity: float) -> Identity:
    """`found` with its verdict at `min_similarity` (see the module's docstring)."""
    f = found
    f.scores = {c: max((x.scores[c] for x in f.faces), default=None) for c in f.characters}
    if not f.characters:
        f.verdict, f.why = "unchecked", ("no reference face for " + ", ".join(f.unreferenced)) if f.unreferenced \
            else "nobody on screen"
        f.frame = f.frames[len(f.frames) // 2] if f.frames else None
        return f
    if not f.faces:
        f.verdict, f.why = "no-face", f"no face found in {len(f.frames)} frames"
        f.frame = f.frames[len(f.frames) // 2] if f.frames else None
        return f
    per_frame = {}
    for x in f.faces:
        per_frame.setdefault(x.frame, []).append(x)
    most = max(per_frame.values(), key=len)  # the frame with the most faces: everyone should be in it
    low = [c for c in f.characters if (f.scores[c] or 0) < min_similarity]
    if low:
        worst = min(low, key=lambda c: f.scores[c] or 0)
        if len(most) < len(f.characters):
            f.verdict, f.why = "missing", f"{', '.join(low)} not found ({len(most)} face(s) for " \
                                          f"{len(f.characters)} character(s))"
            f.frame = f.frames[most[0].frame]
        else:
            face = max(f.faces, key=lambda x: x.scores[worst])
            f.verdict, f.why = "drift", f"{worst}'s best match is {f.scores[worst]:.2f} (< {min_similarity:g})"
            f.frame = f.frames[face.frame]
        return f
    # everyone is found: is there a face that is none of them?
    strangers = [x for x in f.faces if max(x.scores.values()) < min_similarity]
    if strangers and len(most) > len(f.characters) + len(f.unreferenced):
        f.verdict, f.why = "unexpected", f"a face that is none of {', '.join(f.characters)} (best " \
                                         f"{max(strangers[0].scores.values()):.2f})"
        f.frame = f.frames[strangers[0].frame]
        return f
    worst = min(f.characters, key=lambda c: f.scores[c])
    face = max(f.faces, key=lambda x: x.scores[worst])
    f.verdict, f.why, f.frame = "match", f"lowest {worst} {f.scores[worst]:.2f}", f.frames[face.frame]
    return f


def best_take(verdicts: list[tuple[int, Identity]]) -> int | None:
    """The take to use: the best-scoring match, else None (no take matches: keep the default)."""
    matches = [(min(v.scores.values()), -t, t) for t, v in verdicts if v.verdict == "match" and v.scores]
    return max(matches)[2] if matches else None


def choose(takes: list[tuple[int, str | None, object]], options, cache: Path) -> tuple[int, bool]:
    """(the take to use, whether to make one more) for a shot the user has not picked a take of, from the
    checks made so far: `takes` = (take, clip key, request) each; `options` = project.identity. One more
    take is asked only under `on_drift: retake`, when every take is checked and none matches for a reason
    a new seed can fix (not `no-face` or `unchecked`)."""
    verdicts = []
    for take, key, request in takes:
        found = cached(key, face_references(request), cache) if key is not None else None
        if found is not None:
            verdicts.append((take, judge(found, options.min_similarity)))
    best = best_take(verdicts)
    retake = options.on_drift == "retake" and len(verdicts) == len(takes) and best is None and \
        any(v.verdict in ("drift", "missing", "unexpected") for _, v in verdicts)
    return best or 1, retake


def identity_outcomes(work, project, paths) -> list[dict]:
    """Each checked take of an episode (`work`: its `EpisodeWork`) with its verdict: for status, the run
    report and the review page."""
    out = []
    for u in work.shots:
        found = cached(u.key, face_references(u.request), paths.identity) \
            if u.key is not None and u.placeholder is None else None
        if found is not None:
            v = judge(found, project.identity.min_similarity)
            out.append({"id": u.id, "shot": u.shot_id, "take": u.take, "chosen": u.chosen, "verdict": v.verdict,
                        "scores": v.scores, "why": v.why, "frame": v.frame})
    return out


def _scaled(im, limit: int = WIDTH):
    from PIL import Image

    if im.width <= limit:
        return im
    return im.resize((limit, round(im.height * limit / im.width)), Image.BILINEAR)


def _frames(clip: Path):
    """FRAMES frames of `clip`, evenly spaced at 10 %..90 % of it, as RGB images WIDTH wide."""
    import av

    try:
        with av.open(str(clip)) as c:
            stream = c.streams.video[0]
            duration = float(stream.duration * stream.time_base) if stream.duration else \
                (c.duration or 0) / 1_000_000
            wanted = [duration * (0.1 + 0.8 * i / (FRAMES - 1)) for i in range(FRAMES)]
            out, i = [], 0
            for frame in c.decode(stream):  # short clips: decoding through is cheaper than seeking each
                if frame.time is None:
                    continue
                if i < len(wanted) and frame.time + 1e-6 >= wanted[i]:
                    out.append((frame.time, _scaled(frame.to_image())))
                    while i < len(wanted) and frame.time + 1e-6 >= wanted[i]:
                        i += 1
                if i >= len(wanted):
                    break
            return out
    except Exception as exc:  # noqa: BLE001 - PyAV's errors are many; the message says which
        raise RenderError(f"identity check: cannot read {clip}: {exc}") from exc
