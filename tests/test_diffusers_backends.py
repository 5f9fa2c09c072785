"""The diffusers video and image backends, on tiny pipelines built here from configs (no weights are
downloaded: random weights, a blank tokenizer, saved with save_pretrained and loaded back)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # before diffusers / transformers read it
pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import numpy as np

from stages.backends import diffusers_video
from stages.backends.base import (
    Figure,
    ImageOptions,
    ImageRequest,
    PermanentError,
    ShotRequest,
)
from stages.backends.diffusers_image import DiffusersImageBackend
from stages.backends.diffusers_video import (
    DiffusersOptions,
    DiffusersVideoBackend,
    plan_frames,
)
from stages.core.media import probe
from stages.generate_shot import generate_shot
from stages.plan_work import shot_key

REPO = Path(__file__).resolve().parents[1]
W, H, FPS = 64, 112, 12  # the project: vertical, even, tiny
GEN = {"width": 32, "height": 64}  # what the tiny models make (multiples of 16)


# --- tiny pipelines --------------------------------------------------------------------------------

def _text_encoder():
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.UMT5Config(vocab_size=128, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4)
    return transformers.UMT5EncoderModel(config), transformers.T5Tokenizer()  # a blank tokenizer: offline


def _wan_vae():
    import torch
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    return AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True])


def _wan_transformer(cls_name: str = "WanTransformer3DModel", **kw):
    import diffusers
    import torch

    torch.manual_seed(0)
    args = {"patch_size": (1, 2, 2), "num_attention_heads": 2, "attention_head_dim": 12, "in_channels": 16,
            "out_channels": 16, "text_dim": 32, "freq_dim": 256, "ffn_dim": 32, "num_layers": 2,
            "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "rope_max_seq_len": 32}
    return getattr(diffusers, cls_name)(**{**args, **kw})


def build_tiny_pipeline(kind: str, folder: Path, rope_max_seq_len: int = 32) -> Path:
    """Build a tiny random pipeline of `kind` (wan, wan-i2v, wan-vace, svd, sd) and save it to `folder`.
    Wan's `rope_max_seq_len` bounds the latent size: 32 allows 512 px; the benchmark raises it."""
    import diffusers
    import torch
    import transformers

    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=7.0)
    if kind == "wan":
        te, tok = _text_encoder()
        pipe = diffusers.WanPipeline(transformer=_wan_transformer(rope_max_seq_len=rope_max_seq_len),
                                     vae=_wan_vae(), scheduler=sched,
                                     text_encoder=te, tokenizer=tok)
    elif kind == "wan-i2v":
        te, tok = _text_encoder()
        torch.manual_seed(0)
        image_encoder = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(
            hidden_size=4, projection_dim=4, num_hidden_layers=2, num_attention_heads=2, image_size=32,
            intermediate_size=16, patch_size=1))
        pipe = diffusers.WanImageToVideoPipeline(
            transformer=_wan_transformer(in_channels=36, image_dim=4), vae=_wan_vae(), scheduler=sched,
            text_encoder=te, tokenizer=tok, image_encoder=image_encoder,
            image_processor=transformers.CLIPImageProcessor(crop_size=32, size=32))
    elif kind == "wan-vace":
        te, tok = _text_encoder()
        pipe = diffusers.WanVACEPipeline(
            transformer=_wan_transformer("WanVACETransformer3DModel", num_layers=3, vace_layers=[0, 2],
                                         vace_in_channels=96),
            vae=_wan_vae(), scheduler=sched, text_encoder=te, tokenizer=tok)
    elif kind == "svd":
        torch.manual_seed(0)
        unet = diffusers.UNetSpatioTemporalConditionModel(
            block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=8, out_channels=4,
            down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
            up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"), cross_attention_dim=32,
            num_attention_heads=8, projection_class_embeddings_input_dim=96, addition_time_embed_dim=32)
        scheduler = diffusers.EulerDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", interpolation_type="linear",
            num_train_timesteps=1000, prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002,
            steps_offset=1, timestep_spacing="leading", timestep_type="continuous", use_karras_sigmas=True)
        torch.manual_seed(0)
        vae = diffusers.AutoencoderKLTemporalDecoder(
            block_out_channels=[32, 64], in_channels=3, out_channels=3,
            down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"], latent_channels=4)
        torch.manual_seed(0)
        image_encoder = transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(
            hidden_size=32, projection_dim=32, num_hidden_layers=2, num_attention_heads=4, image_size=224,
            intermediate_size=37, patch_size=32))  # SVD always feeds its encoder 224x224
        pipe = diffusers.StableVideoDiffusionPipeline(
            unet=unet, image_encoder=image_encoder, scheduler=scheduler, vae=vae,
            feature_extractor=transformers.CLIPImageProcessor(crop_size=32, size=32))
    elif kind == "sd":
        torch.manual_seed(0)
        unet = diffusers.UNet2DConditionModel(
            block_out_channels=(4, 8), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, norm_num_groups=2)
        scheduler = diffusers.DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                            clip_sample=False, set_alpha_to_one=False, steps_offset=1)
        torch.manual_seed(0)
        vae = diffusers.AutoencoderKL(block_out_channels=[4, 8], in_channels=3, out_channels=3,
                                      down_block_types=["DownEncoderBlock2D"] * 2,
                                      up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4, norm_num_groups=2)
        torch.manual_seed(0)
        text_encoder = transformers.CLIPTextModel(transformers.CLIPTextConfig(
            bos_token_id=0, eos_token_id=2, hidden_size=32, intermediate_size=37, layer_norm_eps=1e-05,
            num_attention_heads=4, num_hidden_layers=2, pad_token_id=1, vocab_size=1000))
        tokenizer = transformers.CLIPTokenizer()  # blank: offline
        tokenizer.model_max_length = 77  # the pipeline pads prompts to this
        pipe = diffusers.StableDiffusionPipeline(unet=unet, scheduler=scheduler, vae=vae, text_encoder=text_encoder,
                                                 tokenizer=tokenizer, safety_checker=None, feature_extractor=None,
                                                 image_encoder=None, requires_safety_checker=False)
    else:
        raise ValueError(kind)
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {k: build_tiny_pipeline(k, root / k) for k in ("wan", "wan-i2v", "wan-vace", "svd", "sd")}


def opts(pipeline: str, model: Path, **kw) -> DiffusersOptions:
    args = dict(pipeline=pipeline, model=str(model), dtype="float32", device="cpu", steps=2, fps=8, **GEN)
    return DiffusersOptions(**{**args, **kw})


def request(**kw) -> ShotRequest:
    args = {"shot_id": "e1s1", "prompt": "A woman in a red coat waits at a bus stop.", "size": "medium",
            "camera": "static", "location": "BUS STOP", "time": "NIGHT", "action": "She waits.", "caption": "e1s1",
            "figures": (), "duration_s": 1.0, "width": W, "height": H, "fps": FPS, "seed": 7,
            "negative_prompt": "blurry"}
    return ShotRequest(**{**args, **kw})


def frames_of(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def png(path: Path, seed: int, size=(40, 56)) -> Path:
    from PIL import Image

    arr = (np.random.RandomState(seed).rand(size[1], size[0], 3) * 255).astype("uint8")
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def spy(monkeypatch):
    """Record the keyword arguments of every pipeline call (the call itself still runs)."""
    calls: list[dict] = []
    real = diffusers_video.run_pipeline

    def recording(pipe, kwargs, what):
        calls.append(dict(kwargs))
        return real(pipe, kwargs, what)

    monkeypatch.setattr(diffusers_video, "run_pipeline", recording)
    return calls


# --- pure parts ------------------------------------------------------------------------------------

def test_frame_plan_rounds_up_to_the_model_grid_and_caps():
    assert plan_frames(1.0, 16, 4, 81) == 17  # 16 frames needed -> 4k+1
    assert plan_frames(2.0, 16, 4, 81) == 33
    assert plan_frames(0.1, 16, 4, 81) == 5
    assert plan_frames(10.0, 16, 4, 81) == 81  # capped: the conform slows it to fill the shot
    assert plan_frames(10.0, 16, 4, 80) == 77  # the cap itself snaps down to the grid
    assert plan_frames(1.5, 7, 1, 25) == 11  # SVD: any count


def test_import_and_identity_do_not_import_torch(tmp_path):
    code = ("import sys; from stages.backends.diffusers_video import DiffusersOptions; "
            "from stages.backends.diffusers_video import DiffusersVideoBackend as B; "
            "from stages.backends.diffusers_image import DiffusersImageBackend as I; "
            "from stages.backends.base import ImageOptions; "
            f"b = B(DiffusersOptions(pipeline='WanPipeline', model={str(tmp_path)!r})); b.identity(); "
            "I(ImageOptions(kind='diffusers', pipeline='FluxPipeline', model='a/b')).identity(); "
            "I(ImageOptions(kind='diffusers', pipeline='FluxPipeline', model='a/b', ip_adapter={'model': "
            f"{str(tmp_path)!r}, 'weight_name': 'ip.safetensors'}})).identity(); "
            "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, 'heavy import'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr


def test_identity_fingerprints_the_model_folder_by_content(models, tmp_path):
    import shutil

    a = DiffusersVideoBackend(opts("WanPipeline", models["wan"])).identity()
    assert a["engine"] == "diffusers" and a["diffusers"] and a["model_fingerprint"]
    assert {"pipeline", "model", "mode", "dtype", "steps", "guidance", "cache", "fps", "size"} <= set(a)
    copy = shutil.copytree(models["wan"], tmp_path / "wan")
    assert DiffusersVideoBackend(opts("WanPipeline", copy)).identity() == a  # moved: same shots
    weights = copy / "transformer" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF  # a fine-tune: same size, other weights
    weights.write_bytes(bytes(data))
    assert DiffusersVideoBackend(opts("WanPipeline", copy)).identity()["model_fingerprint"] != a["model_fingerprint"]
    assert DiffusersVideoBackend(opts("WanPipeline", models["wan"], steps=3)).identity() != a


def make(shot, backend, folder: Path):
    """The shot at its content-addressed place in `folder`, as a render makes it."""
    return generate_shot(shot, backend, folder / f"{shot_key(shot, backend)}.mp4")


def test_shot_key_ignores_what_the_model_never_sees(models):
    backend = DiffusersVideoBackend(opts("WanPipeline", models["wan"]))
    r = request()
    assert shot_key(r, backend) == shot_key(replace(r, extra={"speaking": [[0.1, 0.5]]}, caption="x"), backend)
    assert shot_key(r, backend) != shot_key(replace(r, prompt="Another prompt."), backend)


# --- video -----------------------------------------------------------------------------------------

def test_text_to_video_shots_have_the_planned_frames_size_and_fps(models, tmp_path, spy):
    backend = DiffusersVideoBackend(opts("WanPipeline", models["wan"]))
    for i, dur in enumerate((1.0, 0.5, 0.75)):
        r = request(shot_id=f"e1s{i}", duration_s=dur, seed=100 + i)
        result = make(r, backend, tmp_path)
        info = probe(result.path)
        assert (info.width, info.height) == (W, H)
        assert info.fps == pytest.approx(FPS)
        assert abs(len(frames_of(result.path)) - round(dur * FPS)) <= 1
        assert info.audio_codec is None and info.video_codec == "h264" and info.pix_fmt == "yuv420p"
    assert backend.loads == 1  # one load for every shot
    assert [c["num_frames"] for c in spy] == [9, 5, 9]  # 8, 4, 6 frames at 8 fps, rounded up to 4k+1
    first = spy[0]
    assert (first["width"], first["height"]) == (32, 64)
    assert first["prompt"] == request().prompt and first["negative_prompt"] == "blurry"
    assert "image" not in first and "reference_images" not in first
    assert make(request(shot_id="e1s0", seed=100), backend, tmp_path).reused


def test_same_seed_same_frames_other_seed_other_frames(models, tmp_path):
    backend = DiffusersVideoBackend(opts("WanPipeline", models["wan"]))
    paths = [tmp_path / f"{n}.mp4" for n in ("a", "b", "c")]
    backend.generate(request(seed=1), paths[0])
    backend.generate(request(seed=1), paths[1])
    backend.generate(request(seed=2), paths[2])
    a, b, c = (frames_of(p) for p in paths)
    assert np.array_equal(a, b)
    assert a.shape == c.shape and not np.array_equal(a, c)


def test_a_shot_longer_than_max_frames_is_slowed_to_fill_it(models, tmp_path, spy):
    backend = DiffusersVideoBackend(opts("WanPipeline", models["wan"], max_frames=9))
    r = request(duration_s=2.0)
    result = make(r, backend, tmp_path)
    assert spy[0]["num_frames"] == 9  # 16 frames wanted, 9 made
    assert len(frames_of(result.path)) == round(2.0 * FPS)
    assert probe(result.path).duration_s == pytest.approx(2.0, abs=1.5 / FPS)


def test_image_to_video_starts_from_the_keyframe(models, tmp_path, spy):
    from PIL import Image, ImageOps

    backend = DiffusersVideoBackend(opts("WanImageToVideoPipeline", models["wan-i2v"], mode="image"))
    assert backend.capabilities.uses == {"keyframe"}
    key = png(tmp_path / "key.png", 3)
    r = request(keyframe=key, motion_prompt="She turns her head.")
    result = make(r, backend, tmp_path)
    assert abs(len(frames_of(result.path)) - round(r.duration_s * FPS)) <= 1
    call = spy[0]
    assert call["prompt"] == "She turns her head."  # the keyframe fixes the rest
    expected = ImageOps.fit(Image.open(key).convert("RGB"), (32, 64), centering=(0.5, 0.5))
    assert np.array_equal(np.asarray(call["image"]), np.asarray(expected))
    with pytest.raises(PermanentError, match="keyframe"):
        backend.generate(request(keyframe=None), tmp_path / "x.mp4")


def test_stable_video_diffusion_gets_only_what_it_accepts(models, tmp_path, spy):
    backend = DiffusersVideoBackend(opts("StableVideoDiffusionPipeline", models["svd"], mode="image", frame_multiple=1,
                                         max_frames=8, fps=6, guidance=2.5, call={"motion_bucket_id": 60}))
    r = request(keyframe=png(tmp_path / "key.png", 4), duration_s=0.75)
    result = make(r, backend, tmp_path)
    assert abs(len(frames_of(result.path)) - round(0.75 * FPS)) <= 1
    call = spy[0]
    assert "prompt" not in call and "negative_prompt" not in call and "guidance_scale" not in call
    assert call["max_guidance_scale"] == 2.5 and call["fps"] == 6 and call["motion_bucket_id"] == 60
    assert call["num_frames"] == 5  # 4.5 frames at 6 fps, rounded up


def test_reference_to_video_passes_every_figures_sheets(models, tmp_path, spy):
    from PIL import Image

    backend = DiffusersVideoBackend(opts("WanVACEPipeline", models["wan-vace"], mode="reference"))
    assert backend.capabilities.uses == {"references"}
    assert backend.capabilities.max_references == 21  # 81 frames: 21 latent frames, one per reference
    sheets = {"ann": (png(tmp_path / "ann-front.png", 5), png(tmp_path / "ann-34.png", 6)),
              "bo": (png(tmp_path / "bo-front.png", 7, size=(48, 48)),)}
    figures = tuple(Figure(cid, cid.upper(), f"{cid} description", references=refs) for cid, refs in sheets.items())
    r = request(figures=figures, duration_s=0.5)
    result = make(r, backend, tmp_path)
    assert abs(len(frames_of(result.path)) - round(0.5 * FPS)) <= 1
    assert spy[0]["num_frames"] == 9  # 5 frames would hold 2 latent frames: too few for 3 sheets
    passed = spy[0]["reference_images"]
    files = [sheets["ann"][0], sheets["bo"][0], sheets["ann"][1]]  # everyone's first image before anyone's second
    assert len(passed) == len(files) == 3
    for img, path in zip(passed, files):
        assert np.array_equal(np.asarray(img), np.asarray(Image.open(path).convert("RGB")))
    # A shot with nobody in it: plain text-to-video from the same model.
    make(request(shot_id="e1s9", duration_s=0.5), backend, tmp_path)
    assert "reference_images" not in spy[1]
    assert backend.loads == 1


def test_first_block_cache_is_attached_and_deterministic(models, tmp_path):
    backend = DiffusersVideoBackend(opts("WanPipeline", models["wan"], cache="first_block"))
    backend.generate(request(), tmp_path / "a.mp4")
    backend.generate(request(), tmp_path / "b.mp4")
    assert backend.pipeline().transformer.is_cache_enabled
    assert np.array_equal(frames_of(tmp_path / "a.mp4"), frames_of(tmp_path / "b.mp4"))


@pytest.mark.parametrize("kw, match", [
    ({"pipeline": "WanPipeline", "model": "/nonexistent/wan-models/tiny"}, "/nonexistent/wan-models/tiny"),
    ({"pipeline": "WanPipline"}, "WanPipeline"),  # a typo: the close name is suggested
    ({"pipeline": "WanImageToVideoPipeline", "mode": "text"}, "mode: image"),
    ({"pipeline": "WanPipeline", "mode": "image"}, "takes no image"),
    ({"pipeline": "StableVideoDiffusionPipeline", "mode": "image", "cache": "first_block"}, "cache"),
])
def test_configuration_errors_are_permanent_and_say_what_to_change(models, tmp_path, kw, match):
    kind = {"WanImageToVideoPipeline": "wan-i2v", "StableVideoDiffusionPipeline": "svd"}.get(kw["pipeline"], "wan")
    args = {"model": str(models[kind]), **kw}
    backend = DiffusersVideoBackend(opts(args.pop("pipeline"), Path(args.pop("model")), **args))
    r = request(keyframe=png(tmp_path / "k.png", 1))
    with pytest.raises(PermanentError, match=match):
        backend.generate(r, tmp_path / "x.mp4")
    with pytest.raises(PermanentError, match=match):  # remembered: no second load attempt per shot
        backend.generate(r, tmp_path / "x.mp4")
    assert backend.loads == 0


# --- image -----------------------------------------------------------------------------------------

def test_image_backend_makes_exact_size_rgb_pngs_deterministically(models, tmp_path):
    from PIL import Image

    backend = DiffusersImageBackend(ImageOptions(kind="diffusers", pipeline="StableDiffusionPipeline",
                                                 model=str(models["sd"]), dtype="float32", device="cpu", steps=2))
    assert backend.identity()["model_fingerprint"]
    req = ImageRequest(purpose="keyframe", prompt="a woman in a red coat", width=W, height=H, seed=5,
                       references=(png(tmp_path / "ref.png", 9),))
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        backend.generate_image(replace(req, seed=seed), tmp_path / f"{name}.png")
    imgs = [Image.open(tmp_path / f"{n}.png") for n in "abc"]
    assert all(im.size == (W, H) and im.mode == "RGB" for im in imgs)
    a, b, c = (np.asarray(im) for im in imgs)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert backend.reference_input(backend.pipeline()) is None  # text-to-image: prompt only
    assert backend.loads == 1


def test_image_to_image_pipelines_build_on_the_reference(models, tmp_path):
    backend = DiffusersImageBackend(ImageOptions(kind="diffusers", pipeline="StableDiffusionImg2ImgPipeline",
                                                 model=str(models["sd"]), dtype="float32", device="cpu", steps=4))
    ref = png(tmp_path / "ref.png", 9, size=(80, 80))
    req = ImageRequest(purpose="reference", prompt="three-quarter view", width=W, height=H, seed=5,
                       references=(ref,), view="three-quarter")
    pipe = backend.pipeline()
    assert backend.reference_input(pipe) == "image"
    kwargs = backend.call_kwargs(pipe, req)
    assert kwargs["image"].size == (W, H)
    backend.generate_image(req, tmp_path / "out.png")
    from PIL import Image

    assert Image.open(tmp_path / "out.png").size == (W, H)


def test_image_backend_missing_model_is_permanent(tmp_path):
    backend = DiffusersImageBackend(ImageOptions(kind="diffusers", pipeline="FluxPipeline",
                                                 model=str(tmp_path / "nowhere")))
    with pytest.raises(PermanentError, match="nowhere"):
        backend.generate_image(ImageRequest(purpose="keyframe", prompt="x", width=32, height=32, seed=1),
                               tmp_path / "x.png")
