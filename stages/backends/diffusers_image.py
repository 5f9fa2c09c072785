"""A local diffusers text-to-image pipeline as the image backend (reference sheets and keyframes).

The request's prompt carries the character's canonical description, so every pipeline can make
both kinds of image from text alone. The reference images (`request.references`: the sheets a
keyframe or a further view must agree with) are used only where the pipeline has a way to take them:
  - `ip_adapter_image`, when an IP-Adapter is loaded into the pipeline (all references, one adapter);
  - `image`, for image-to-image and edit pipelines (StableDiffusionXLImg2ImgPipeline, FluxKontextPipeline,
    QwenImageEditPipeline...): the first reference, fitted to the picture's size, is what it builds on;
  - otherwise none: a plain text-to-image pipeline (FluxPipeline, StableDiffusionXLPipeline) is
    consistent only as far as the description in the prompt makes it.
The picture is made at the request's size rounded to the pipeline's multiple, then scaled and
centre-cropped to exactly the request's size, and saved as an RGB PNG.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from stages.backends._diffusers import (LoadOnce, call_parameters, import_diffusers, local_model_dir,
                                        model_fingerprint, package_version, pipeline_class, resolve_device,
                                        rgb_images, size_multiple)
from stages.backends.base import Capabilities, ImageOptions, ImageRequest, PermanentError

log = logging.getLogger(__name__)

VERSION = 1


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
        return {"engine": "diffusers-image", "version": VERSION, "diffusers": package_version("diffusers"),
                "pipeline": o.pipeline, "model": model, "model_fingerprint": fingerprint, "dtype": o.dtype,
                "steps": o.steps, "guidance": o.guidance}

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
        try:
            pipe = cls.from_pretrained(str(folder) if folder is not None else o.model, dtype=getattr(torch, o.dtype))
            pipe.set_progress_bar_config(disable=True)
            pipe.to(resolve_device(o.device, torch))
        except torch.cuda.OutOfMemoryError as exc:
            raise PermanentError(f"{self.what}: out of memory loading the model: use float16/bfloat16 "
                                 f"or a smaller model") from exc
        except (OSError, ValueError, TypeError, KeyError, ImportError, RuntimeError) as exc:
            raise PermanentError(f"{self.what}: loading failed: {type(exc).__name__}: {str(exc)[:600]}") from exc
        log.info("%s: loaded (%s)", self.what, o.dtype)
        return pipe

    def reference_input(self, pipe) -> str | None:
        """How this pipeline takes reference images: "ip_adapter_image", "image", or None (prompt only)."""
        params, _ = call_parameters(pipe)
        if "ip_adapter_image" in params and _ip_adapter_loaded(pipe):
            return "ip_adapter_image"
        if "image" in params:
            return "image"
        return None

    def call_kwargs(self, pipe, request: ImageRequest) -> dict:
        import torch
        from PIL import Image, ImageOps

        o = self.options
        params, open_kwargs = call_parameters(pipe)
        m = size_multiple(pipe)
        width, height = (max(m, int(round(v / m)) * m) for v in (request.width, request.height))
        kwargs = {"prompt": request.prompt, "negative_prompt": request.negative_prompt or None,
                  "width": width, "height": height, "num_inference_steps": o.steps, "guidance_scale": o.guidance,
                  "generator": torch.Generator(device="cpu").manual_seed(int(request.seed)), "output_type": "pil"}
        kwargs = {k: v for k, v in kwargs.items() if v is not None and (k in params or open_kwargs)}
        how = self.reference_input(pipe) if request.references else None
        if how is not None:
            refs = rgb_images(request.references, self.what)
            if how == "ip_adapter_image":
                kwargs["ip_adapter_image"] = [refs]  # one adapter, every reference
            else:
                kwargs["image"] = ImageOps.fit(refs[0], (width, height), Image.LANCZOS, centering=(0.5, 0.5))
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
