"""Hosted stills through the OpenAI images API (`/v1/images/generations` and `/v1/images/edits`).

Without references a still is generated from the prompt; with references (the characters' sheets)
it is an edit of those images, which keeps faces and costumes consistent. The provider makes one
of a few fixed sizes: the one nearest the request's aspect ratio is asked for, and the result is
scaled and centre-cropped to exactly the request's size.
"""

from __future__ import annotations

import base64
import io
import math
import mimetypes
from pathlib import Path

from stages.backends._openai import LazyClient, map_openai_error
from stages.backends.base import Capabilities, ImageOptions, ImageRequest, PermanentError, TransientError
from stages.core.trust import redact_url

DEFAULT_MODEL = "gpt-image-1"
MAX_REFERENCES = 16  # what the edits endpoint takes for GPT image models
_TIMEOUT_S = 300
_SIZES = {  # model name prefix -> sizes it makes; anything else gets the GPT image sizes
    "dall-e-2": ("256x256", "512x512", "1024x1024"),
    "dall-e-3": ("1024x1024", "1792x1024", "1024x1792"),
    "": ("1024x1024", "1536x1024", "1024x1536"),
}


class OpenAIImageBackend:
    """ImageBackend: reference views and keyframes from an images-API model."""

    name = "openai-image"
    section = None  # the image family reads `backends.image`
    capabilities = Capabilities(billed=True, pool="api")

    def __init__(self, options: ImageOptions):
        self.options = options
        self.client = LazyClient(options.api_key_env, options.base_url, _TIMEOUT_S, what="OpenAI images",
                                 setting="backends.image.base_url")

    @property
    def model(self) -> str:
        return self.options.model or DEFAULT_MODEL

    def identity(self) -> dict:
        return {"engine": "openai-image", "model": self.model,
                "base_url": redact_url(self.options.base_url) or "api.openai.com"}

    def generate_image(self, request: ImageRequest, out_png: Path) -> None:
        """Write an RGB PNG of exactly request.width x request.height."""
        import openai

        where = redact_url(self.options.base_url) or "api.openai.com"
        what = f"openai-image ({self.model} at {where})"
        prompt = request.prompt + (f"\nAvoid: {request.negative_prompt}" if request.negative_prompt else "")
        size = nearest_size(self.model, request.width, request.height)
        try:
            if request.references:
                images = [_upload(p) for p in request.references[:MAX_REFERENCES]]
                resp = self.client().images.edit(model=self.model, image=images, prompt=prompt, size=size, n=1)
            else:
                resp = self.client().images.generate(model=self.model, prompt=prompt, size=size, n=1)
        except openai.OpenAIError as exc:
            raise map_openai_error(exc, what) from exc
        data = _image_bytes(resp, what)
        write_fitted_png(data, out_png, request.width, request.height, what=what)


def nearest_size(model: str, width: int, height: int) -> str:
    """The size the model makes whose aspect ratio is closest to width:height (ties: the larger)."""
    sizes = next(v for k, v in _SIZES.items() if model.startswith(k))
    target = math.log(width / height)

    def score(s: str) -> tuple[float, int]:
        w, h = (int(v) for v in s.split("x"))
        return abs(math.log(w / h) - target), -w * h

    return min(sizes, key=score)


def _upload(path: Path) -> tuple[str, bytes, str]:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PermanentError(f"the reference image {path} cannot be read: {exc}") from exc
    return Path(path).name, data, mimetypes.guess_type(str(path))[0] or "image/png"


def _image_bytes(resp, what: str) -> bytes:
    """The first image of a response: `b64_json`, or downloaded from its `url`."""
    item = (resp.data or [None])[0]
    if item is None:
        raise TransientError(f"{what} answered with no image")
    if item.b64_json:
        try:
            return base64.b64decode(item.b64_json)
        except ValueError as exc:
            raise TransientError(f"{what} sent an image that is not valid base64") from exc
    if item.url:
        import httpx2

        try:
            r = httpx2.get(item.url, timeout=_TIMEOUT_S, follow_redirects=True)
            r.raise_for_status()
        except httpx2.HTTPError as exc:
            raise TransientError(f"{what}: downloading the image failed: {exc}") from exc
        return r.content
    raise TransientError(f"{what} answered with neither b64_json nor url")


def write_fitted_png(data: bytes, out_png: Path, width: int, height: int, *, what: str) -> None:
    """Decode an image, flatten any transparency onto white, fit it to width x height, save RGB PNG."""
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "P"):
                im = im.convert("RGBA")
                flat = Image.new("RGB", im.size, (255, 255, 255))
                flat.paste(im, mask=im.getchannel("A"))
            else:
                flat = im.convert("RGB")
    except OSError as exc:
        raise TransientError(f"{what} sent an image that cannot be decoded ({len(data)} bytes)") from exc
    ImageOps.fit(flat, (width, height), Image.LANCZOS, centering=(0.5, 0.5)).save(out_png, format="PNG")
