"""A local diffusers image pipeline as the image backend (reference sheets and keyframes).

The request's prompt carries the character's canonical description, so every pipeline can make
both kinds of image from text alone. The reference images (`request.references`: the sheets of every
character on screen, for a keyframe; the front view, for a further view of a sheet) all go in, in the
way the pipeline takes them:
  - `ip_adapter_image`, when an IP-Adapter is loaded (`backends.image.ip_adapter`: a local folder or a
    hub id already in the cache, its weights file, the CLIP image encoder's folder when the pipeline
    has none, and the scale): every reference, as the images of one adapter;
  - `image`, for image-to-image and edit pipelines (StableDiffusionXLImg2ImgPipeline, FluxKontextPipeline,
    QwenImageEditPipeline...): every reference composed into one picture of the generation's size, side
    by side in the request's order, each scaled to cover its column and centre-cropped (one reference
    fills the picture); an image-to-image pipeline with an adapter gets both;
  - otherwise none: a plain text-to-image pipeline (FluxPipeline, StableDiffusionXLPipeline) without an
    adapter is consistent only as far as the description in the prompt makes it (`check` says so).
The picture is made at the request's size rounded to the pipeline's multiple, then scaled and
centre-cropped to exactly the request's size, and saved as an RGB PNG.

`identity()` counts the model folder and the adapter's weights file (and its image encoder's folder)
by content, never by path, and imports neither torch nor diffusers.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import threading
from pathlib import Path

from stages.backends._diffusers import (
    LoadOnce,
    call_parameters,
    import_diffusers,
    local_model_dir,
    model_fingerprint,
    package_version,
    pipeline_class,
    resolve_device,
    rgb_images,
    size_multiple,
)
from stages.backends.base import (
    Capabilities,
    ImageOptions,
    ImageRequest,
    IPAdapterOptions,
    PermanentError,
)

log = logging.getLogger(__name__)

VERSION = 2  # 2: image-to-image pipelines build on every reference (composed), not the first alone
_SAMPLE = 64 * 1024  # bytes read at the head, middle and tail of the adapter's weights file


class DiffusersImageBackend:
    """ImageBackend: one diffusers image pipeline, loaded once, used for every picture (one at a time)."""

    name = "diffusers-image"
    section = None  # the image family reads `backends.image`
    capabilities = Capabilities(pool="gpu", extra="diffusers", requires=("diffusers", "torch"))

    def __init__(self, options: ImageOptions):
        self.options = options
        self._pipe = LoadOnce(self._load)
        self._call_lock = threading.Lock()

    @property
    def loads(self) -> int:
        return self._pipe.loads

    def __getstate__(self) -> dict:
        return {"options": self.options}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["options"])

    @property
    def what(self) -> str:
        return f"diffusers-image ({self.options.pipeline} from {self.options.model})"

    def identity(self) -> dict:
        o = self.options
        fingerprint = model_fingerprint(o.model) if o.model else None
        model = Path(o.model).expanduser().name if fingerprint and o.model else o.model
        identity = {"engine": "diffusers-image", "version": VERSION, "diffusers": package_version("diffusers"),
                    "pipeline": o.pipeline, "model": model, "model_fingerprint": fingerprint, "dtype": o.dtype,
                    "steps": o.steps, "guidance": o.guidance}
        if o.ip_adapter is not None:  # only then: keys made without an adapter hold
            identity["ip_adapter"] = ip_adapter_identity(o.ip_adapter)
        return identity

    def pipeline(self):
        """The loaded pipeline (loaded on first use, once)."""
        return self._pipe()

    def _load(self):
        o = self.options
        if not (o.pipeline and o.model):
            raise PermanentError("image: {kind: diffusers} needs pipeline and model")
        folder = local_model_dir(o.model)
        if folder is not None and not folder.is_dir():
            raise PermanentError(f"{self.what}: the model folder {folder} does not exist (backends.image.model)")
        _, torch = import_diffusers()
        cls = pipeline_class(o.pipeline)
        adapter = self._adapter_source(cls) if o.ip_adapter is not None else None
        try:
            pipe = cls.from_pretrained(str(folder) if folder is not None else o.model, dtype=getattr(torch, o.dtype))
            pipe.set_progress_bar_config(disable=True)
        except torch.cuda.OutOfMemoryError as exc:
            raise PermanentError(f"{self.what}: out of memory loading the model: use float16/bfloat16 "
                                 f"or a smaller model") from exc
        except (OSError, ValueError, TypeError, KeyError, ImportError, RuntimeError) as exc:
            raise PermanentError(f"{self.what}: loading failed: {type(exc).__name__}: {str(exc)[:600]}") from exc
        if adapter is not None:
            self._load_ip_adapter(pipe, adapter, torch)
        try:
            pipe.to(resolve_device(o.device, torch))
        except torch.cuda.OutOfMemoryError as exc:
            raise PermanentError(f"{self.what}: out of memory loading the model: use float16/bfloat16 "
                                 f"or a smaller model") from exc
        except (OSError, ValueError, TypeError, KeyError, ImportError, RuntimeError) as exc:
            raise PermanentError(f"{self.what}: loading failed: {type(exc).__name__}: {str(exc)[:600]}") from exc
        log.info("%s: loaded (%s%s)", self.what, o.dtype,
                 f", IP-Adapter {o.ip_adapter.weight_name} at scale {o.ip_adapter.scale}" if o.ip_adapter else "")
        return pipe

    def _adapter_source(self, cls) -> str:
        """Where the IP-Adapter loads from (checked before the model loads: a wrong setting fails at once)."""
        ip = self.options.ip_adapter
        where = "backends.image.ip_adapter"
        if not callable(getattr(cls, "load_ip_adapter", None)):
            raise PermanentError(f"{self.what}: {cls.__name__} cannot load an IP-Adapter ({where}): use a pipeline "
                                 f"that can (StableDiffusionPipeline, StableDiffusionXLPipeline, FluxPipeline...) or "
                                 f"remove {where}")
        folder = local_model_dir(ip.model)
        if folder is None:
            return ip.model  # a hub id: diffusers finds it in the local cache, or says it cannot
        if not folder.is_dir():
            raise PermanentError(f"{self.what}: the IP-Adapter folder {folder} does not exist ({where}.model)")
        weights = folder / ip.subfolder / ip.weight_name
        if not weights.is_file():
            raise PermanentError(f"{self.what}: the IP-Adapter weights {weights} do not exist "
                                 f"({where}.subfolder and .weight_name)")
        return str(folder)

    def _load_ip_adapter(self, pipe, source: str, torch) -> None:
        """Load the adapter (and its image encoder, where the pipeline has none) and set its scale."""
        ip, where = self.options.ip_adapter, "backends.image.ip_adapter"
        params = inspect.signature(pipe.load_ip_adapter).parameters
        kwargs = {"subfolder": ip.subfolder, "weight_name": ip.weight_name}
        encoder = ip.image_encoder or "image_encoder"  # diffusers' own default
        if "image_encoder_folder" in params:  # Stable Diffusion, SDXL, SD3: a folder inside the adapter's
            kwargs["image_encoder_folder"] = encoder
        elif "image_encoder_pretrained_model_name_or_path" in params:  # Flux: a model of its own, found alike
            local = local_model_dir(source)
            kwargs["image_encoder_pretrained_model_name_or_path"] = (str(local / _encoder_place(ip)) if local
                                                                     else encoder)
            if "image_encoder_dtype" in params:
                kwargs["image_encoder_dtype"] = getattr(torch, self.options.dtype)
        try:
            pipe.load_ip_adapter(source, **kwargs)
            pipe.set_ip_adapter_scale(ip.scale)
        except torch.cuda.OutOfMemoryError as exc:
            raise PermanentError(f"{self.what}: out of memory loading the IP-Adapter ({where})") from exc
        except (OSError, ValueError, TypeError, KeyError, ImportError, RuntimeError, AttributeError) as exc:
            raise PermanentError(f"{self.what}: loading the IP-Adapter {ip.weight_name} from {ip.model} failed "
                                 f"({where}; its image encoder: {encoder}): {type(exc).__name__}: "
                                 f"{str(exc)[:600]}") from exc
        if not _ip_adapter_loaded(pipe):
            raise PermanentError(f"{self.what}: the IP-Adapter {ip.weight_name} loaded without an image encoder, so "
                                 f"it cannot take the references: set {where}.image_encoder to its folder")

    def reference_inputs(self, pipe) -> tuple[str, ...]:
        """How this pipeline takes reference images: "ip_adapter_image" (a loaded IP-Adapter) and/or
        "image" (image-to-image and edit pipelines: what it builds on); () for the prompt alone."""
        params, _ = call_parameters(pipe)
        inputs = ("ip_adapter_image",) if "ip_adapter_image" in params and _ip_adapter_loaded(pipe) else ()
        return inputs + (("image",) if "image" in params else ())

    def reference_input(self, pipe) -> str | None:
        """The main way it takes them: "ip_adapter_image", "image", or None (prompt only)."""
        inputs = self.reference_inputs(pipe)
        return inputs[0] if inputs else None

    def call_kwargs(self, pipe, request: ImageRequest) -> dict:
        import torch

        o = self.options
        params, open_kwargs = call_parameters(pipe)
        m = size_multiple(pipe)
        width, height = (max(m, round(v / m) * m) for v in (request.width, request.height))
        kwargs = {"prompt": request.prompt, "negative_prompt": request.negative_prompt or None,
                  "width": width, "height": height, "num_inference_steps": o.steps, "guidance_scale": o.guidance,
                  "generator": torch.Generator(device="cpu").manual_seed(int(request.seed)), "output_type": "pil"}
        kwargs = {k: v for k, v in kwargs.items() if v is not None and (k in params or open_kwargs)}
        inputs = self.reference_inputs(pipe) if request.references else ()
        if inputs:
            refs = rgb_images(request.references, self.what)
            if "ip_adapter_image" in inputs:
                kwargs["ip_adapter_image"] = [refs]  # one adapter, every reference
            if "image" in inputs:  # an image-to-image pipeline builds on them all, adapter or not
                kwargs["image"] = compose_references(refs, width, height)
        return kwargs

    def generate_image(self, request: ImageRequest, out_png: Path) -> None:
        import torch
        from PIL import Image, ImageOps

        pipe = self.pipeline()
        kwargs = self.call_kwargs(pipe, request)
        try:
            with self._call_lock, torch.inference_mode():
                out = pipe(**kwargs)
        except torch.cuda.OutOfMemoryError as exc:
            raise PermanentError(f"{self.what}: out of memory at {kwargs.get('width')}x{kwargs.get('height')}: "
                                 f"a smaller project size or a lighter dtype") from exc
        except (TypeError, ValueError, RuntimeError) as exc:
            raise PermanentError(f"{self.what}: the pipeline failed: {type(exc).__name__}: {exc}") from exc
        img = out.images[0] if hasattr(out, "images") else out[0][0]
        if not isinstance(img, Image.Image):
            import numpy as np

            arr = np.asarray(img)
            img = Image.fromarray((np.clip(arr, 0, 1) * 255).round().astype("uint8") if arr.dtype != np.uint8 else arr)
        img = img.convert("RGB")
        if img.size != (request.width, request.height):
            img = ImageOps.fit(img, (request.width, request.height), Image.LANCZOS, centering=(0.5, 0.5))
        img.save(out_png, format="PNG")


def _ip_adapter_loaded(pipe) -> bool:
    """An IP-Adapter projects image embeddings into the denoiser (`encoder_hid_proj`) from an image encoder."""
    if getattr(pipe, "image_encoder", None) is None:
        return False
    for name in ("unet", "transformer"):
        model = getattr(pipe, name, None)
        if model is not None and getattr(model, "encoder_hid_proj", None) is not None:
            return True
    return False


def compose_references(images: list, width: int, height: int):
    """One RGB picture of width x height holding every image, side by side in their order: each scaled
    to cover its column and centre-cropped (one image fills the picture), so an image-to-image pipeline
    builds on every character at once."""
    from PIL import Image, ImageOps

    if len(images) == 1:
        return ImageOps.fit(images[0], (width, height), Image.LANCZOS, centering=(0.5, 0.5))
    n = min(len(images), width)  # a column at least a pixel wide
    canvas = Image.new("RGB", (width, height))
    for i, img in enumerate(images[:n]):
        left, right = round(i * width / n), round((i + 1) * width / n)
        canvas.paste(ImageOps.fit(img, (right - left, height), Image.LANCZOS, centering=(0.5, 0.5)), (left, 0))
    return canvas


def ip_adapter_identity(ip: IPAdapterOptions) -> dict:
    """The adapter as a key sees it: its settings, and its weights file (and image encoder folder) by
    content where they are local, so a moved folder keeps its keys and other weights change them."""
    folder = local_model_dir(ip.model)
    weights = folder / ip.subfolder / ip.weight_name if folder is not None else None
    encoder = model_fingerprint(str(folder / _encoder_place(ip))) if folder is not None else None
    return {"model": folder.name if folder is not None else ip.model, "subfolder": ip.subfolder,
            "weight_name": ip.weight_name, "image_encoder": ip.image_encoder, "scale": ip.scale,
            "weights_fingerprint": file_fingerprint(weights) if weights is not None else None,
            "image_encoder_fingerprint": encoder}


def _encoder_place(ip: IPAdapterOptions) -> str:
    """The image encoder's folder inside the adapter's, as diffusers finds it: a bare name sits in the
    weights' subfolder, a path (with a slash) is from the top."""
    name = ip.image_encoder or "image_encoder"
    return name if "/" in name else str(Path(ip.subfolder, name))


def file_fingerprint(path: Path) -> str | None:
    """One weights file by its size and 64 KiB at its head, middle and tail (as `model_fingerprint`
    counts each weights file of a model folder); None when it is not there."""
    try:
        size = path.stat().st_size
        h = hashlib.sha256(f"{path.name}\0{size}\0".encode())
        with open(path, "rb") as f:
            for at in (0, max(0, size // 2 - _SAMPLE // 2), max(0, size - _SAMPLE)):
                f.seek(at)
                h.update(f.read(_SAMPLE))
    except OSError:
        return None
    return h.hexdigest()[:16]
