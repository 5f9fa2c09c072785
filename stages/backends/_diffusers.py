"""What the diffusers backends (video and image) share: a model loaded once per backend instance,
model folders counted by content, pipeline classes by name, and what a pipeline's call accepts.

Nothing here imports torch or diffusers at module level: a shot's key must be computable where
the model is not installed.
"""

from __future__ import annotations

import hashlib
import inspect
import threading
from pathlib import Path
from typing import Callable

from stages.backends.base import PermanentError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".msgpack")
_SAMPLE = 64 * 1024  # bytes read at the head, middle and tail of each weight file for its fingerprint
_FINGERPRINTS: dict[tuple, str] = {}
_FINGERPRINT_LOCK = threading.Lock()


class LoadOnce:
    """The pipeline, loaded on first use and kept; a failed load fails every later call at once (a
    30 s load that fails would otherwise fail again for every shot). `loads` counts real loads."""

    def __init__(self, load: Callable[[], object]):
        self._load = load
        self._value = None
        self._error: PermanentError | None = None
        self._lock = threading.Lock()
        self.loads = 0

    def __call__(self):
        with self._lock:
            if self._error is not None:
                raise self._error
            if self._value is None:
                try:
                    self._value = self._load()
                except PermanentError as exc:
                    self._error = exc
                    raise
                self.loads += 1
            return self._value


def rgb_images(paths, what: str) -> list:
    """Each image file as an RGB PIL image; PermanentError naming the first one that cannot be read."""
    from PIL import Image

    images = []
    for path in paths:
        try:
            with Image.open(path) as im:
                images.append(im.convert("RGB"))
        except OSError as exc:
            raise PermanentError(f"{what}: the reference image {path} cannot be read: {exc}") from exc
    return images


def package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def local_model_dir(model: str) -> Path | None:
    """The folder `model` names, or None when it reads as a hub id (org/name)."""
    if not model.strip():
        return None
    p = Path(model).expanduser()
    if p.exists():
        return p
    looks_like_path = p.is_absolute() or model.startswith((".", "~")) or model.count("/") != 1 or "\\" in model
    return p if looks_like_path else None


def model_fingerprint(model: str) -> str | None:
    """A content digest of a local model folder (None for a hub id or a missing folder).

    Config files count in full; each weight file by its size and 64 KiB read at its head, middle and
    tail: cheap for 30 GB of weights, unchanged by copying the folder (no mtimes), changed by a
    fine-tune. Cached per process by the files' (size, mtime), so a render stats the folder per shot
    and reads it once.
    """
    folder = local_model_dir(model)
    if folder is None or not folder.is_dir():
        return None
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(folder).parts))
    stats = tuple((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    key = (str(folder.resolve()), stats)
    with _FINGERPRINT_LOCK:
        if key in _FINGERPRINTS:
            return _FINGERPRINTS[key]
    h = hashlib.sha256()
    for p, (rel, size, _) in zip(files, stats):
        if p.suffix in WEIGHT_SUFFIXES:
            h.update(f"{rel}\0{size}\0".encode())
            with open(p, "rb") as f:
                for at in (0, max(0, size // 2 - _SAMPLE // 2), max(0, size - _SAMPLE)):
                    f.seek(at)
                    h.update(f.read(_SAMPLE))
        elif p.suffix in (".json", ".txt", ".model", ".yaml"):
            h.update(f"{rel}\0".encode() + p.read_bytes())
    digest = h.hexdigest()[:16]
    with _FINGERPRINT_LOCK:
        _FINGERPRINTS[key] = digest
    return digest

def import_diffusers():
    try:
        import diffusers
        import torch
    except ImportError as exc:
        raise PermanentError(f"the diffusers backend needs torch and diffusers ({exc}): "
                             f"pip install 'dramaforge[diffusers]'") from exc
    return diffusers, torch


def pipeline_class(name: str):
    """The diffusers pipeline class called `name`; PermanentError listing close names when unknown."""
    import difflib

    diffusers, _ = import_diffusers()
    cls = getattr(diffusers, name, None) if name.isidentifier() else None
    if cls is None or not (inspect.isclass(cls) and issubclass(cls, diffusers.DiffusionPipeline)):
        names = [n for n in dir(diffusers) if n.endswith("Pipeline")]
        close = difflib.get_close_matches(name, names, n=6, cutoff=0.5)
        family = [n for n in names if n[:3].lower() == name[:3].lower() and n not in close]
        suggest = ", ".join((close + family)[:10]) or "e.g. WanPipeline, WanImageToVideoPipeline, WanVACEPipeline"
        raise PermanentError(f"diffusers {package_version('diffusers')} has no pipeline class {name!r}; "
                             f"close names: {suggest}")
    return cls


def resolve_device(device: str, torch) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device

def denoisers(pipe) -> list:
    """The pipeline's denoising models (Wan 2.2 has two experts: transformer and transformer_2)."""
    found = [getattr(pipe, n, None) for n in ("transformer", "transformer_2", "unet", "prior")]
    return [m for m in found if m is not None]

def call_parameters(pipe) -> tuple[set[str], bool]:
    """The keyword names the pipeline's __call__ accepts, and whether it also takes **kwargs."""
    params = inspect.signature(type(pipe).__call__).parameters
    open_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return set(params) - {"self"}, open_kwargs


def size_multiple(pipe) -> int:
    """What generation sizes must divide by: the VAE's spatial factor times the denoiser's patch size."""
    vae_factor = getattr(pipe, "vae_scale_factor_spatial", None) or getattr(pipe, "vae_scale_factor", None) or 8
    patch = 1
    for m in denoisers(pipe)[:1]:
        p = getattr(getattr(m, "config", None), "patch_size", None)
        if isinstance(p, (list, tuple)) and p:
            patch = int(p[-1])
        elif isinstance(p, int):
            patch = p
    return max(16, int(vae_factor) * patch)
