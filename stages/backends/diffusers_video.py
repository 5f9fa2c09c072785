"""A local diffusers pipeline as a video backend: Wan 2.1/2.2 (text, image or reference to video),
Stable Video Diffusion, LTX and the other video pipelines diffusers ships.

The pipeline is loaded once per backend instance (one per worker process) and reused for every
shot. Each call makes `k * frame_multiple + 1` frames at the model's own fps covering the shot,
at most `max_frames`; the frames are piped raw into ffmpeg, which conforms them to the request:
scaled to cover and centre-cropped to its size, retimed to its fps, exactly its duration, H.264.
When the model made fewer seconds than the shot lasts (a shot longer than max_frames / fps), the
clip is slowed to span the whole shot rather than frozen on its last frame; when it made a little
more (the frame count rounds up), the surplus at the end is trimmed and motion keeps its speed.

Importing this module, building the backend and `identity()` never import torch or diffusers:
the cache key of a shot must be computable where the model is not installed.

In mode reference (WanVACEPipeline `reference_images`) each reference image takes a latent frame of
its own, and the video must have at least as many latent frames as there are references: at most
ceil(F / frame_multiple) references fit, F being the most frames one call makes (max_frames on the
k*frame_multiple+1 grid). That is the capability's `max_references`, and the references a shot
carries are chosen by `base.fit_references` with it (the speaking character first, everyone's first
image before anyone's second), so what a render leaves out is exactly what `dramaforge check` names.
A short shot with many references is made longer (the conform trims it back).
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import subprocess
import threading
from pathlib import Path
from typing import Literal

from pydantic import Field

from stages.backends._diffusers import (
    LoadOnce,
    call_parameters,
    denoisers,
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
    PermanentError,
    ShotRequest,
    TransientError,
    VideoCapabilities,
    fit_references,
)
from stages.core.model import Model

log = logging.getLogger(__name__)

VERSION = 1  # bump when the frame plan or the conform changes the clip


class DiffusersOptions(Model):
    """`backends.diffusers`: a local diffusers pipeline, by class name and a local folder (or a hub id
    on your own machine)."""

    pipeline: str = Field(..., description="class name, e.g. WanPipeline, WanImageToVideoPipeline, "
                                           "WanVACEPipeline, StableVideoDiffusionPipeline, LTXPipeline")
    model: str = Field(..., description="a local folder saved by save_pretrained, or a hub id")
    mode: Literal["text", "image", "reference"] = Field(
        "text", description="text-to-video; image-to-video from the shot's keyframe; reference-to-video "
                            "with the characters' sheets (WanVACEPipeline reference_images)")
    dtype: Literal["float32", "float16", "bfloat16"] = "bfloat16"
    device: str = Field("auto", description="auto (cuda if available, else cpu), cuda, cuda:1, cpu, mps")
    offload: Literal["none", "model", "group"] = Field("none", description="CPU offload to fit a small GPU")
    vae_tiling: bool = False
    cache: Literal["none", "first_block", "faster", "pab", "taylorseer", "mag"] = Field(
        "none", description="a diffusers cache hook: faster, slightly different frames")
    steps: int = Field(30, ge=1, le=500)
    guidance: float = Field(5.0, ge=0, le=30)
    width: int | None = Field(None, ge=16, description="generation size; the clip is conformed to the project's")
    height: int | None = Field(None, ge=16)
    fps: int = Field(16, ge=1, le=120, description="frames per second the model makes (Wan: 16, LTX: 24)")
    max_frames: int = Field(81, ge=1, description="the most frames one call may make (Wan: 81)")
    frame_multiple: int = Field(4, ge=1, description="frame counts are k*multiple+1 (Wan: 4, LTX: 8, SVD: 1)")
    call: dict = Field(default_factory=dict, description="extra keyword arguments for the pipeline call")


class DiffusersVideoBackend:
    """VideoBackend: one diffusers pipeline, loaded once, used for every shot (one at a time)."""

    name = "diffusers"
    section = "diffusers"
    Options = DiffusersOptions

    def __init__(self, options: DiffusersOptions):
        self.options = options
        uses = {"image": frozenset({"keyframe"}), "reference": frozenset({"references"})}.get(
            options.mode, frozenset())
        # Request fields that do not change the pictures: left out of the shot key, so re-timed speech
        # (extra's speaking spans) or a relabelled caption never re-renders a GPU shot.
        unused = {"text": {"keyframe", "references", "motion_prompt"}, "image": {"references"},
                  "reference": {"keyframe", "motion_prompt"}}[options.mode]
        self.capabilities = VideoCapabilities(
            uses=uses, ignores=frozenset({"caption", "extra"} | unused),
            concurrency=1, pool="gpu",  # one model on one device: shots queue for it
            extra="diffusers", requires=("diffusers", "torch"), modes=frozenset({options.mode}),
            max_references=reference_limit(options) if options.mode == "reference" else 0)
        self._pipe = LoadOnce(self._load)
        self._device = None
        self._call_lock = threading.Lock()

    def __getstate__(self) -> dict:  # a loaded model and locks do not travel: the copy loads its own
        return {"options": self.options}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["options"])

    @property
    def loads(self) -> int:
        """Pipelines loaded by this instance (tests check it stays 1)."""
        return self._pipe.loads

    # --- identity --------------------------------------------------------------------------------

    def identity(self) -> dict:
        o = self.options
        fingerprint = model_fingerprint(o.model)
        # A local folder counts by name and content, not path: moving the models keeps every shot's key.
        model = Path(o.model).expanduser().name if fingerprint else o.model
        identity = {"engine": "diffusers", "version": VERSION, "diffusers": package_version("diffusers"),
                    "pipeline": o.pipeline, "model": model, "model_fingerprint": fingerprint,
                    "mode": o.mode, "dtype": o.dtype, "steps": o.steps, "guidance": o.guidance, "cache": o.cache,
                    "fps": o.fps, "size": f"{o.width}x{o.height}" if o.width or o.height else "request",
                    "max_frames": o.max_frames, "frame_multiple": o.frame_multiple, "vae_tiling": o.vae_tiling,
                    "call": json.loads(json.dumps(o.call, sort_keys=True, default=str))}
        if o.mode == "reference":  # the references go in by fit_references' order (speaker first), not the cast's
            identity["references"] = "fit"
        return identity

    @property
    def what(self) -> str:
        return f"diffusers ({self.options.pipeline} from {self.options.model})"

    # --- loading ---------------------------------------------------------------------------------

    def pipeline(self):
        """The loaded pipeline (loads it on first use; a failed load fails every later call at once)."""
        return self._pipe()

    def _load(self):
        pipe, self._device = load_pipeline(self.options, self.what)
        return pipe

    # --- generation ------------------------------------------------------------------------------

    def plan_frames(self, duration_s: float) -> int:
        """Frames to ask the model for: cover the shot, rounded up to k*multiple+1, capped at max_frames."""
        return plan_frames(duration_s, self.options.fps, self.options.frame_multiple, self.options.max_frames)

    def generate(self, request: ShotRequest, out_mp4: Path) -> None:
        o = self.options
        keyframe = self._keyframe(request) if o.mode == "image" else None
        refs = reference_images(request, self.capabilities.max_references) if o.mode == "reference" else None
        pipe = self.pipeline()
        kwargs = self._call_kwargs(pipe, request, keyframe, refs)
        with self._call_lock:  # a pipeline is not re-entrant (schedulers, cache hooks hold state)
            frames = run_pipeline(pipe, kwargs, self.what)
        conform_frames(frames, o.fps, out_mp4, request)

    def _keyframe(self, request: ShotRequest):
        from PIL import Image

        if request.keyframe is None:
            raise PermanentError(f"{self.what}: mode image needs the shot's keyframe, and {request.shot_id} has none "
                                 f"(is an image backend configured under backends.image?)")
        try:
            with Image.open(request.keyframe) as im:
                return im.convert("RGB")
        except OSError as exc:
            raise PermanentError(f"{self.what}: the keyframe {request.keyframe} cannot be read: {exc}") from exc

    def _call_kwargs(self, pipe, request: ShotRequest, keyframe, refs) -> dict:
        import torch
        from PIL import ImageOps

        o = self.options
        params, open_kwargs = call_parameters(pipe)
        width, height = generation_size(o, request, size_multiple(pipe))
        prompt = request.prompt
        if keyframe is not None:
            prompt = request.motion_prompt or request.prompt  # the keyframe already fixes faces and place
            keyframe = ImageOps.fit(keyframe, (width, height), centering=(0.5, 0.5))  # fill, never squash
        num_frames = self.plan_frames(request.duration_s)
        if refs:
            num_frames, refs = self._fit_references(pipe, num_frames, refs, request.shot_id)
        # Noise from a CPU generator: the same seed starts from the same latents on any GPU or CPU.
        generator = torch.Generator(device="cpu").manual_seed(int(request.seed))
        wanted = {"prompt": prompt, "negative_prompt": request.negative_prompt or None, "image": keyframe,
                  "reference_images": refs, "num_frames": num_frames,
                  "height": height, "width": width, "num_inference_steps": o.steps, "generator": generator,
                  "output_type": "np", "fps": o.fps, "frame_rate": o.fps}
        if "guidance_scale" in params:
            wanted["guidance_scale"] = o.guidance
        elif "max_guidance_scale" in params:  # SVD ramps guidance from min to max across the frames
            wanted["max_guidance_scale"] = o.guidance
        if keyframe is None:
            wanted.pop("image")
        if refs is None:
            wanted.pop("reference_images")
        kwargs = {k: v for k, v in wanted.items() if v is not None and (k in params or open_kwargs)}
        kwargs.update(o.call)  # the user's own arguments win
        return kwargs

    def _fit_references(self, pipe, num_frames: int, refs: list, shot_id: str) -> tuple[int, list]:
        """VACE puts each reference image in a latent frame of its own and needs at least as many latent
        frames in the video: a short shot with many sheets makes more frames (trimmed by the conform).
        `refs` are already fitted to `max_references` (what max_frames holds), so nothing is dropped here
        unless the pipeline's own temporal factor is coarser than frame_multiple: then the last of them
        go, which is still `fit_references`' order, at a smaller limit."""
        t = int(getattr(pipe, "vae_scale_factor_temporal", None) or self.options.frame_multiple or 1)
        latent = -(-num_frames // t)
        if latent >= len(refs):
            return num_frames, refs
        wanted = (len(refs) - 1) * t + 1
        cap = plan_frames(1e9, 1, self.options.frame_multiple, self.options.max_frames)
        num_frames = max(num_frames, min(wanted, cap))
        keep = -(-num_frames // t)
        if keep < len(refs):
            log.warning("%s: %s has %d reference images; %d fit in %d frames, the rest are left out",
                        self.what, shot_id, len(refs), keep, num_frames)
        return num_frames, refs[:keep]


# --- pure helpers (no torch) -----------------------------------------------------------------------

def plan_frames(duration_s: float, fps: int, multiple: int, max_frames: int) -> int:
    """The smallest k*multiple+1 frames covering `duration_s` at `fps`, at most the largest such <= max_frames."""
    m = max(1, multiple)
    need = max(1, math.ceil(duration_s * fps - 1e-6))
    frames = (need - 1 + m - 1) // m * m + 1
    cap = max(1, (max_frames - 1) // m * m + 1)
    return min(frames, cap)


def generation_size(options, request: ShotRequest, multiple: int) -> tuple[int, int]:
    """(width, height) to generate at: the configured size, else the request's; a missing side follows
    the request's aspect ratio; both rounded to the pipeline's multiple."""
    w, h = options.width, options.height
    if w is None and h is None:
        w, h = request.width, request.height
    elif w is None:
        w = h * request.width / request.height
    elif h is None:
        h = w * request.height / request.width
    return _round_to(w, multiple), _round_to(h, multiple)


def _round_to(v: float, multiple: int) -> int:
    return max(multiple, round(v / multiple) * multiple)


def reference_limit(options) -> int:
    """The reference images one VACE call can hold: one latent frame each, in the most frames a call
    makes (max_frames on the k*frame_multiple+1 grid), as `_fit_references` counts them."""
    m = max(1, options.frame_multiple)
    return -(-plan_frames(1e9, 1, m, options.max_frames) // m)


def reference_images(request: ShotRequest, limit: int) -> list | None:
    """The figures' reference images that fit `limit`, chosen by `base.fit_references` (the speaker
    first, everyone's first image before anyone's second), as RGB PIL images in that order (None: no
    sheets). Those left out are logged; `dramaforge check` names the same ones."""
    fit = fit_references(request.figures, limit)  # a local model keeps no saved assets: images only
    if fit.dropped:
        log.warning("diffusers: %s has %d reference images and %d fit; left out: %s", request.shot_id,
                    len(fit.sent) + len(fit.dropped), len(fit.sent), ", ".join(r.label() for r in fit.dropped))
    return rgb_images([r.path for r in fit.sent if r.path is not None], "diffusers") or None


# --- torch side ------------------------------------------------------------------------------------

def check_mode(cls, mode: str, what: str) -> None:
    """Fail before loading when the pipeline cannot work in `mode` (from its __call__ signature)."""
    params = inspect.signature(cls.__call__).parameters
    needs_image = "image" in params and params["image"].default is inspect.Parameter.empty
    if mode == "image" and "image" not in params:
        raise PermanentError(f"{what}: {cls.__name__} takes no image; mode image needs an image-to-video pipeline "
                             f"(WanImageToVideoPipeline, StableVideoDiffusionPipeline, LTXImageToVideoPipeline)")
    if mode == "reference" and "reference_images" not in params:
        raise PermanentError(f"{what}: {cls.__name__} takes no reference_images; mode reference needs "
                             f"WanVACEPipeline")
    if mode != "image" and needs_image:
        raise PermanentError(f"{what}: {cls.__name__} needs a first frame: set backends.diffusers.mode: image")


def load_pipeline(options: DiffusersOptions, what: str):
    """Load, place and configure the pipeline: (pipe, device). Every failure is a PermanentError."""
    folder = local_model_dir(options.model)
    if folder is not None and not folder.is_dir():
        raise PermanentError(f"{what}: the model folder {folder} does not exist (backends.diffusers.model: "
                             f"a folder saved with save_pretrained, or a hub id already in the local cache)")
    diffusers, torch = import_diffusers()
    cls = pipeline_class(options.pipeline)
    check_mode(cls, options.mode, what)
    dtype = getattr(torch, options.dtype)
    device = resolve_device(options.device, torch)
    source = str(folder) if folder is not None else options.model
    kwargs = {"dtype": dtype}
    try:
        vae_class = _component_class(cls, source, "vae")
        if vae_class and vae_class.startswith("AutoencoderKLWan") and dtype != torch.float32:
            # Wan's VAE decodes badly in half precision: keep it float32 (the pipeline casts latents to it).
            kwargs["vae"] = getattr(diffusers, vae_class).from_pretrained(source, subfolder="vae", dtype=torch.float32)
        pipe = cls.from_pretrained(source, **kwargs)
    except PermanentError:
        raise
    except torch.cuda.OutOfMemoryError as exc:
        raise PermanentError(f"{what}: out of memory while loading: {exc}") from exc
    except (OSError, ValueError, TypeError, KeyError, ImportError, RuntimeError) as exc:
        raise PermanentError(f"{what}: loading failed: {type(exc).__name__}: {str(exc)[:600]}") from exc
    pipe.set_progress_bar_config(disable=True)  # one bar per shot is noise in a render's log
    try:
        _place(pipe, options, device, torch)
        if options.vae_tiling:
            vae = getattr(pipe, "vae", None)
            if vae is None or not hasattr(vae, "enable_tiling"):
                raise PermanentError(f"{what}: vae_tiling: {type(vae).__name__} has no tiled decoding; "
                                     f"set vae_tiling: false")
            vae.enable_tiling()
        if options.cache != "none":
            enable_cache(pipe, options, what)
    except PermanentError:
        raise
    except torch.cuda.OutOfMemoryError as exc:
        raise PermanentError(f"{what}: out of memory placing the model on {device}: set "
                             f"backends.diffusers.offload: model (or group)") from exc
    except (RuntimeError, ValueError, ImportError, AttributeError) as exc:
        raise PermanentError(f"{what}: setting up on {device} failed: {type(exc).__name__}: {exc}") from exc
    log.info("%s: loaded on %s (%s, offload %s, cache %s)", what, device, options.dtype, options.offload, options.cache)
    return pipe, device


def _component_class(cls, source: str, name: str) -> str | None:
    """The class name model_index.json gives a component (None when absent or unreadable)."""
    try:
        config = cls.load_config(source)
    except Exception:  # noqa: BLE001 -- a hub id not in the cache: from_pretrained reports it properly
        return None
    entry = config.get(name)
    return entry[1] if isinstance(entry, (list, tuple)) and len(entry) == 2 else None


def _place(pipe, options: DiffusersOptions, device: str, torch) -> None:
    if options.offload == "none" or device == "cpu":
        if options.offload != "none":
            log.warning("diffusers: offload %r ignored on the CPU (it only saves accelerator memory)", options.offload)
        pipe.to(device)
    elif options.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    else:  # group: layer by layer, overlapped with compute through a CUDA stream where there is one
        streams = device.startswith("cuda")
        pipe.enable_group_offload(onload_device=torch.device(device), offload_device=torch.device("cpu"),
                                  offload_type="leaf_level", use_stream=streams,
                                  exclude_modules=["vae"] if getattr(pipe, "vae", None) is not None else None)


def enable_cache(pipe, options: DiffusersOptions, what: str) -> None:
    """Attach the configured diffusers cache hook to every denoiser; PermanentError where it cannot apply."""
    from diffusers import hooks

    models = denoisers(pipe)
    usable = [m for m in models if hasattr(m, "enable_cache")]
    if not usable or len(usable) != len(models):
        names = ", ".join(type(m).__name__ for m in models) or "no denoiser"
        raise PermanentError(f"{what}: cache {options.cache!r} needs a model with diffusers cache hooks; "
                             f"{names} has none: set backends.diffusers.cache: none")

    def timestep() -> int:
        return pipe.current_timestep

    def config():
        kind = options.cache
        if kind == "first_block":
            return hooks.FirstBlockCacheConfig(threshold=0.05)
        if kind == "faster":
            # Only FasterCache's attention reuse: its unconditional-batch skip needs guidance batched into
            # one forward pass, and Wan runs the conditional and unconditional passes separately.
            return hooks.FasterCacheConfig(spatial_attention_block_skip_range=2,
                                           spatial_attention_timestep_skip_range=(-1, 681),
                                           current_timestep_callback=timestep,
                                           attention_weight_callback=lambda _: 0.3,
                                           tensor_format="BCFHW", is_guidance_distilled=True)
        if kind == "pab":
            return hooks.PyramidAttentionBroadcastConfig(spatial_attention_block_skip_range=2,
                                                         spatial_attention_timestep_skip_range=(100, 800),
                                                         current_timestep_callback=timestep)
        if kind == "taylorseer":
            return hooks.TaylorSeerCacheConfig(cache_interval=5, disable_cache_before_step=3, max_order=1)
        if kind == "mag":
            from diffusers.hooks import mag_cache

            if not type(models[0]).__name__.startswith("Flux"):
                raise PermanentError(f"{what}: cache 'mag' needs magnitude ratios measured for the model, and "
                                     f"diffusers ships them only for Flux; use first_block or taylorseer")
            return hooks.MagCacheConfig(mag_ratios=mag_cache.FLUX_MAG_RATIOS, num_inference_steps=options.steps)
        raise PermanentError(f"{what}: unknown cache {kind!r}")

    for m in usable:
        m.enable_cache(config())  # one config per model: hooks keep per-model state


def run_pipeline(pipe, kwargs: dict, what: str):
    """Call the pipeline; the video as uint8 (frames, height, width, 3). Errors mapped for the flows."""
    import numpy as np
    import torch

    try:
        with torch.inference_mode():
            out = pipe(**kwargs)
    except torch.cuda.OutOfMemoryError as exc:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise PermanentError(f"{what}: out of memory at {kwargs.get('width')}x{kwargs.get('height')}, "
                             f"{kwargs.get('num_frames')} frames: set backends.diffusers.offload: model (or group), "
                             f"vae_tiling: true, or a smaller width/height or max_frames") from exc
    except (TypeError, ValueError) as exc:  # bad arguments (often `call:`), sizes or frame counts
        raise PermanentError(f"{what}: the pipeline refused the call: {type(exc).__name__}: {exc}") from exc
    except RuntimeError as exc:
        if "out of memory" in str(exc).lower():  # MPS and some CUDA paths raise a plain RuntimeError
            raise PermanentError(f"{what}: out of memory: {exc}; set offload or a smaller size") from exc
        # Shape mismatches and CUDA faults repeat on a retry in the same process: fail, do not loop.
        raise PermanentError(f"{what}: the pipeline failed: {exc}") from exc
    video = out.frames if hasattr(out, "frames") else out[0]
    video = video[0]  # the first (only) video of the batch
    if isinstance(video, torch.Tensor):
        video = video.float().cpu().numpy()
    if isinstance(video, (list, tuple)):  # PIL frames
        video = np.stack([np.asarray(im.convert("RGB")) for im in video])
    video = np.asarray(video)
    if video.ndim != 4:
        raise PermanentError(f"{what}: unexpected output of shape {video.shape}")
    if video.shape[-1] not in (1, 3, 4) and video.shape[1] in (1, 3, 4):  # (frames, channels, h, w)
        video = video.transpose(0, 2, 3, 1)
    if video.dtype != np.uint8:
        video = (np.clip(video.astype(np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if video.shape[-1] == 1:
        video = np.repeat(video, 3, axis=-1)
    return np.ascontiguousarray(video[..., :3])


def conform_frames(frames, model_fps: int, out_mp4: Path, request: ShotRequest) -> None:
    """Encode uint8 RGB frames (n, h, w, 3) made at `model_fps` as exactly the request: its size (cover,
    centre crop), fps and frame count, H.264 yuv420p, no audio. A clip shorter than the shot is slowed
    to span it; a longer one is trimmed at the end."""
    from stages.core.media import ffmpeg_exe

    n, h, w = frames.shape[:3]
    fps = request.fps
    out_frames = max(1, round(request.duration_s * fps))
    made_s = n / model_fps
    stretch = request.duration_s / made_s if made_s < request.duration_s else 1.0
    W, H = request.width, request.height
    vf = (f"setpts={stretch:.6f}*PTS," if stretch > 1.0 else "") + (
        f"scale={W}:{H}:force_original_aspect_ratio=increase:flags=lanczos,crop={W}:{H},setsar=1,"
        f"fps={fps},tpad=stop_mode=clone:stop_duration={2.0 / fps + 1:.3f}")
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(model_fps), "-i", "-",
           "-vf", vf, "-frames:v", str(out_frames), "-r", str(fps),
           "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
           "-movflags", "+faststart", "-an", "-f", "mp4", str(out_mp4)]
    try:
        proc = subprocess.run(cmd, input=frames.tobytes(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              timeout=max(120.0, 30 * request.duration_s), check=False)
    except subprocess.TimeoutExpired as exc:
        raise TransientError("diffusers: ffmpeg did not finish conforming the clip in time") from exc
    if proc.returncode != 0:
        raise PermanentError("diffusers: ffmpeg failed conforming the clip: "
                             + proc.stderr.decode("utf-8", "replace")[-500:])
