"""Every on-screen character's references reach the local diffusers models, on tiny models built here
from configs (offline, random weights): an IP-Adapter loaded from a local folder takes all of them,
image-to-image pipelines build on all of them composed into one picture, and VACE carries what fits
its frames, chosen by `fit_references` like every other backend (and `dramaforge check`)."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # before diffusers / transformers read it
pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import numpy as np
from test_diffusers_backends import build_tiny_pipeline, opts, request

from stages.backends import diffusers_video
from stages.backends.base import (
    Figure,
    ImageOptions,
    ImageRequest,
    IPAdapterOptions,
    PermanentError,
    fit_references,
)
from stages.backends.diffusers_image import DiffusersImageBackend, compose_references
from stages.backends.diffusers_video import (
    DiffusersVideoBackend,
    plan_frames,
    reference_limit,
)

W, H = 64, 112  # the project's picture: vertical, multiples of the tiny models' 16
ADAPTER = "ip-adapter_tiny.safetensors"
RED, BLUE, GREEN = (220, 30, 30), (30, 30, 220), (30, 220, 30)


# --- tiny models -----------------------------------------------------------------------------------

def build_tiny_ip_adapter(sd_folder: Path, folder: Path, subfolder: str = "models") -> Path:
    """A random IP-Adapter for the tiny Stable Diffusion UNet in `sd_folder`, laid out as load_ip_adapter
    reads it: `folder/subfolder/ip-adapter_tiny.safetensors` (image_proj.* and ip_adapter.<n>.to_k_ip /
    to_v_ip for each cross-attention, numbered 1, 3, 5... in the UNet's processor order) and a CLIP
    image encoder in `folder/subfolder/image_encoder`."""
    import diffusers
    import torch
    import transformers
    from safetensors.torch import save_file

    unet = diffusers.UNet2DConditionModel.from_pretrained(sd_folder, subfolder="unet")
    torch.manual_seed(0)
    embed_dim = 16  # the image encoder's projection: what the adapter's proj takes
    encoder = transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(
        hidden_size=32, projection_dim=embed_dim, num_hidden_layers=2, num_attention_heads=4, image_size=32,
        intermediate_size=37, patch_size=8))
    encoder.save_pretrained(folder / subfolder / "image_encoder")
    cross = unet.config.cross_attention_dim
    channels = list(unet.config.block_out_channels)
    state = {"image_proj.proj.weight": torch.randn(4 * cross, embed_dim) * 0.5,  # 4 image tokens
             "image_proj.proj.bias": torch.zeros(4 * cross),
             "image_proj.norm.weight": torch.ones(cross), "image_proj.norm.bias": torch.zeros(cross)}
    key = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):  # self-attention: no image tokens
            continue
        if name.startswith("mid_block"):
            hidden = channels[-1]
        elif name.startswith("up_blocks"):
            hidden = channels[::-1][int(name.split(".")[1])]
        else:
            hidden = channels[int(name.split(".")[1])]
        state[f"ip_adapter.{key}.to_k_ip.weight"] = torch.randn(hidden, cross) * 0.5
        state[f"ip_adapter.{key}.to_v_ip.weight"] = torch.randn(hidden, cross) * 0.5
        key += 2
    save_file(state, str(folder / subfolder / ADAPTER))
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-reference-models")
    sd = build_tiny_pipeline("sd", root / "sd")
    return {"sd": sd, "adapter": build_tiny_ip_adapter(sd, root / "adapter")}


@pytest.fixture(scope="module")
def vace(tmp_path_factory) -> Path:
    return build_tiny_pipeline("wan-vace", tmp_path_factory.mktemp("tiny-vace") / "wan-vace")


def sheet(path: Path, colour=None, seed: int | None = None, size=(40, 56)) -> Path:
    """A character sheet: one flat colour, or noise from `seed`."""
    from PIL import Image

    if colour is not None:
        Image.new("RGB", size, colour).save(path)
    else:
        arr = (np.random.RandomState(seed).rand(size[1], size[0], 3) * 255).astype("uint8")
        Image.fromarray(arr).save(path)
    return path


def pixels(path_or_image) -> np.ndarray:
    from PIL import Image

    img = path_or_image if isinstance(path_or_image, Image.Image) else Image.open(path_or_image)
    return np.asarray(img.convert("RGB")).astype(int)


def image_backend(model: Path, pipeline: str = "StableDiffusionPipeline", steps: int = 2,
                  **kw) -> DiffusersImageBackend:
    return DiffusersImageBackend(ImageOptions(kind="diffusers", pipeline=pipeline, model=str(model), dtype="float32",
                                              device="cpu", steps=steps, **kw))


def adapter_options(folder: Path, **kw) -> IPAdapterOptions:
    args = {"model": str(folder), "subfolder": "models", "weight_name": ADAPTER, "image_encoder": "image_encoder",
            "scale": 1.0}
    return IPAdapterOptions(**{**args, **kw})


def keyframe(*refs: Path, seed: int = 5) -> ImageRequest:
    return ImageRequest(purpose="keyframe", prompt="Ann and Bo argue in the kitchen", width=W, height=H, seed=seed,
                        references=refs)


def record_calls(monkeypatch, backend) -> list[dict]:
    """The keyword arguments of every pipeline call the backend makes (the calls still run)."""
    calls: list[dict] = []
    real = backend.call_kwargs

    def recording(pipe, req):
        kwargs = real(pipe, req)
        calls.append(kwargs)
        return kwargs

    monkeypatch.setattr(backend, "call_kwargs", recording)
    return calls


# --- IP-Adapter --------------------------------------------------------------------------------------

def test_ip_adapter_takes_every_reference_and_they_steer_the_picture(tiny, tmp_path, monkeypatch):
    backend = image_backend(tiny["sd"], ip_adapter=adapter_options(tiny["adapter"]))
    calls = record_calls(monkeypatch, backend)
    ann, bo = sheet(tmp_path / "ann.png", seed=1), sheet(tmp_path / "bo.png", seed=2, size=(48, 48))
    other_bo = sheet(tmp_path / "bo2.png", seed=3, size=(48, 48))

    backend.generate_image(keyframe(ann, bo), tmp_path / "a.png")
    pipe = backend.pipeline()
    assert backend.reference_input(pipe) == "ip_adapter_image"
    assert pipe.image_encoder is not None  # loaded from the adapter's folder
    assert [type(p).__name__ for p in pipe.unet.attn_processors.values()].count("IPAdapterAttnProcessor2_0") == 4
    passed = calls[0]["ip_adapter_image"]
    assert len(passed) == 1 and len(passed[0]) == 2  # one adapter, both characters
    for img, path in zip(passed[0], (ann, bo)):
        assert np.array_equal(pixels(img), pixels(path))
    assert "image" not in calls[0]  # a text-to-image pipeline: nothing to build on

    backend.generate_image(keyframe(ann, bo), tmp_path / "b.png")
    backend.generate_image(keyframe(ann, other_bo), tmp_path / "c.png")
    backend.generate_image(keyframe(ann), tmp_path / "d.png")
    a, b, c, d = (pixels(tmp_path / f"{n}.png") for n in "abcd")
    assert a.shape == (H, W, 3)
    assert np.array_equal(a, b)  # deterministic
    assert not np.array_equal(a, c)  # the second character's sheet changes the keyframe
    assert not np.array_equal(a, d)  # and so does leaving them out
    assert backend.loads == 1


def test_ip_adapter_scale_is_set_and_zero_makes_the_references_inert(tiny, tmp_path):
    ann, bo = sheet(tmp_path / "ann.png", seed=1), sheet(tmp_path / "bo.png", seed=2)
    other = sheet(tmp_path / "other.png", seed=4)
    backend = image_backend(tiny["sd"], ip_adapter=adapter_options(tiny["adapter"], scale=0.0))
    backend.generate_image(keyframe(ann, bo), tmp_path / "a.png")
    backend.generate_image(keyframe(ann, other), tmp_path / "b.png")
    scales = {tuple(p.scale) for p in backend.pipeline().unet.attn_processors.values() if hasattr(p, "scale")}
    assert scales == {(0.0,)}
    assert np.array_equal(pixels(tmp_path / "a.png"), pixels(tmp_path / "b.png"))


def test_ip_adapter_identity_counts_the_weights_by_content(tiny, tmp_path):
    plain = image_backend(tiny["sd"]).identity()
    assert "ip_adapter" not in plain  # keys made without an adapter are unchanged by the option existing
    with_adapter = image_backend(tiny["sd"], ip_adapter=adapter_options(tiny["adapter"])).identity()
    ip = with_adapter["ip_adapter"]
    assert ip["weights_fingerprint"] and ip["image_encoder_fingerprint"] and ip["scale"] == 1.0
    assert {k: v for k, v in with_adapter.items() if k != "ip_adapter"} == plain

    moved = shutil.copytree(tiny["adapter"], tmp_path / "adapter")
    assert image_backend(tiny["sd"], ip_adapter=adapter_options(moved)).identity() == with_adapter
    weights = moved / "models" / ADAPTER
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF  # other weights, same size
    weights.write_bytes(bytes(data))
    changed = image_backend(tiny["sd"], ip_adapter=adapter_options(moved)).identity()["ip_adapter"]
    assert changed["weights_fingerprint"] != ip["weights_fingerprint"]
    assert image_backend(tiny["sd"], ip_adapter=adapter_options(tiny["adapter"], scale=0.5)).identity() != with_adapter


@pytest.mark.parametrize("pipeline, adapter, match", [
    ("StableDiffusionPipeline", {"model": "/nonexistent/ip-adapter"}, "/nonexistent/ip-adapter"),
    ("StableDiffusionPipeline", {"weight_name": "ip-adapter_missing.safetensors"}, "ip-adapter_missing"),
    ("StableDiffusionPipeline", {"image_encoder": "no_encoder_here"}, "no_encoder_here"),
    ("PixArtAlphaPipeline", {}, "cannot load an IP-Adapter"),
])
def test_ip_adapter_configuration_errors_are_permanent_and_name_the_setting(tiny, tmp_path, pipeline, adapter, match):
    options = adapter_options(tiny["adapter"], **adapter)
    backend = image_backend(tiny["sd"], pipeline=pipeline, ip_adapter=options)
    for _ in range(2):  # remembered: no second load per picture
        with pytest.raises(PermanentError, match=match) as err:
            backend.generate_image(keyframe(sheet(tmp_path / "ann.png", seed=1)), tmp_path / "x.png")
        assert "backends.image.ip_adapter" in str(err.value)
    assert backend.loads == 0


# --- image-to-image: every reference composed ----------------------------------------------------------

def test_references_are_composed_side_by_side_in_order():
    from PIL import Image

    red, blue = Image.new("RGB", (40, 56), RED), Image.new("RGB", (80, 30), BLUE)
    one = compose_references([red], W, H)
    assert one.size == (W, H) and (pixels(one) == RED).all()
    two = pixels(compose_references([red, blue], W, H))
    assert two.shape == (H, W, 3)
    assert (two[:, : W // 2] == RED).all() and (two[:, W // 2:] == BLUE).all()  # each fills its column
    three = pixels(compose_references([red, blue, red], 66, 20))
    assert (three[:, :22] == RED).all() and (three[:, 22:44] == BLUE).all() and (three[:, 44:] == RED).all()


def test_image_to_image_builds_on_every_characters_sheet(tiny, tmp_path, monkeypatch):
    backend = image_backend(tiny["sd"], pipeline="StableDiffusionImg2ImgPipeline", steps=4)
    calls = record_calls(monkeypatch, backend)
    red, blue = sheet(tmp_path / "ann.png", RED), sheet(tmp_path / "bo.png", BLUE, size=(60, 40))
    green = sheet(tmp_path / "bo-green.png", GREEN, size=(60, 40))

    backend.generate_image(keyframe(red, blue), tmp_path / "a.png")
    assert backend.reference_input(backend.pipeline()) == "image"
    init = pixels(calls[0]["image"])
    assert init.shape == (H, W, 3)
    assert (init[:, : W // 2] == RED).all() and (init[:, W // 2:] == BLUE).all()  # both characters, in order
    assert "ip_adapter_image" not in calls[0]

    backend.generate_image(keyframe(red, green), tmp_path / "b.png")
    assert (pixels(calls[1]["image"])[:, W // 2:] == GREEN).all()
    a, b = pixels(tmp_path / "a.png"), pixels(tmp_path / "b.png")
    assert a.shape == b.shape == (H, W, 3)
    assert not np.array_equal(a, b)  # the second sheet shapes the keyframe
    assert np.abs(a[:, W // 2:] - b[:, W // 2:]).mean() > np.abs(a[:, : W // 2] - b[:, : W // 2]).mean()


def test_image_to_image_with_an_ip_adapter_gets_both(tiny, tmp_path, monkeypatch):
    backend = image_backend(tiny["sd"], pipeline="StableDiffusionImg2ImgPipeline",
                            ip_adapter=adapter_options(tiny["adapter"]))
    calls = record_calls(monkeypatch, backend)
    red, blue = sheet(tmp_path / "ann.png", RED), sheet(tmp_path / "bo.png", BLUE)
    backend.generate_image(keyframe(red, blue), tmp_path / "a.png")
    assert backend.reference_inputs(backend.pipeline()) == ("ip_adapter_image", "image")
    assert len(calls[0]["ip_adapter_image"][0]) == 2 and calls[0]["image"].size == (W, H)


# --- VACE: what fits, by the stated rule ------------------------------------------------------------

@pytest.mark.parametrize("max_frames, multiple", [(81, 4), (80, 4), (5, 4), (9, 4), (121, 8), (25, 1), (1, 4)])
def test_vace_reference_limit_is_what_its_frames_hold(max_frames, multiple):
    o = SimpleNamespace(max_frames=max_frames, frame_multiple=multiple)
    limit = reference_limit(o)
    cap = plan_frames(1e9, 1, multiple, max_frames)
    assert limit == -(-cap // multiple)
    backend = DiffusersVideoBackend(opts("WanVACEPipeline", Path("/nowhere"), mode="reference", max_frames=max_frames,
                                         frame_multiple=multiple))
    assert backend.capabilities.max_references == limit
    pipe = SimpleNamespace(vae_scale_factor_temporal=multiple)
    # `_fit_references` keeps every reference the capability lets through, however short the shot ...
    frames, kept = backend._fit_references(pipe, plan_frames(0.1, 8, multiple, max_frames), list(range(limit)), "s")
    assert kept == list(range(limit)) and frames <= cap
    # ... and one more would not fit.
    assert len(backend._fit_references(pipe, cap, list(range(limit + 1)), "s")[1]) == limit
    assert DiffusersVideoBackend(opts("WanPipeline", Path("/nowhere"))).capabilities.max_references == 0


def test_vace_drops_exactly_what_fit_references_and_check_drop(vace, tmp_path, monkeypatch):
    calls: list[dict] = []
    real = diffusers_video.run_pipeline

    def recording(pipe, kwargs, what):
        calls.append(dict(kwargs))
        return real(pipe, kwargs, what)

    monkeypatch.setattr(diffusers_video, "run_pipeline", recording)
    backend = DiffusersVideoBackend(opts("WanVACEPipeline", vace, mode="reference", max_frames=5))
    assert backend.capabilities.max_references == 2  # 5 frames: 2 latent frames
    bo = Figure("bo", "BO", "bo", references=(sheet(tmp_path / "bo-front.png", seed=1),
                                              sheet(tmp_path / "bo-34.png", seed=2)))
    ann = Figure("ann", "ANN", "ann", speaking=True, references=(sheet(tmp_path / "ann-front.png", seed=3),
                                                                 sheet(tmp_path / "ann-34.png", seed=4)))
    shot = request(figures=(bo, ann), duration_s=0.5)
    backend.generate(shot, tmp_path / "a.mp4")
    fit = fit_references(shot.figures, backend.capabilities.max_references, backend.name)  # what check names
    assert [r.path.name for r in fit.sent] == ["ann-front.png", "bo-front.png"]  # the speaker's first image first
    assert [r.path.name for r in fit.dropped] == ["ann-34.png", "bo-34.png"]
    passed = calls[0]["reference_images"]
    assert len(passed) == 2
    for img, ref in zip(passed, fit.sent):
        assert np.array_equal(pixels(img), pixels(ref.path))
    assert calls[0]["num_frames"] == 5

    # A dropped sheet does not reach the model: changing it changes nothing the pipeline is given.
    changed = replace(ann, references=(ann.references[0], sheet(tmp_path / "ann-34b.png", seed=9)))
    backend.generate(replace(shot, figures=(bo, changed)), tmp_path / "b.mp4")
    assert len(calls[1]["reference_images"]) == 2
    assert all(np.array_equal(pixels(x), pixels(y)) for x, y in zip(calls[1]["reference_images"], passed))
    assert backend.loads == 1
