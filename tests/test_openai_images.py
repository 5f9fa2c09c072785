"""The images backend (`/v1/images/generations` and `/v1/images/edits`) against the local fake service."""

from __future__ import annotations

from pathlib import Path

import pytest

from fake_openai import KEY_ENV, FakeService, b64_reply, error, fake, png_bytes, provider_mp4  # noqa: F401  (fixtures)
from stages.backends.base import ImageBackend, ImageOptions, ImageRequest, PermanentError, RejectedError, TransientError
from stages.backends.openai_image import OpenAIImageBackend, nearest_size


def images(fake: FakeService, **kw) -> OpenAIImageBackend:
    return OpenAIImageBackend(ImageOptions(kind="openai", base_url=fake.base_url, api_key_env=KEY_ENV, **kw))


def image_request(**kw) -> ImageRequest:
    args = dict(purpose="keyframe", prompt="Ann at the kitchen window, morning light.", width=90, height=160, seed=1)
    return ImageRequest(**{**args, **kw})


def check_png(path: Path, width: int, height: int):
    from PIL import Image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        assert (im.size, im.mode) == ((width, height), "RGB")
        return im.getpixel((width // 2, height // 2))


def test_image_identity_and_nearest_sizes(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    b = OpenAIImageBackend(ImageOptions(kind="openai"))
    assert isinstance(b, ImageBackend)
    assert b.identity() == {"engine": "openai-image", "model": "gpt-image-1", "base_url": "api.openai.com"}
    assert nearest_size("gpt-image-1", 1080, 1920) == "1024x1536"
    assert nearest_size("gpt-image-1", 1920, 1080) == "1536x1024"
    assert nearest_size("gpt-image-1", 512, 512) == "1024x1024"
    assert nearest_size("dall-e-3", 1080, 1920) == "1024x1792"


def test_generate_without_references(fake, tmp_path):
    fake.image_replies.append(b64_reply(64, 96))
    out = tmp_path / "key.png"
    images(fake).generate_image(image_request(negative_prompt="blurry"), out)
    (req,) = fake.image_requests
    assert req["path"] == "/v1/images/generations"
    assert req["form"] == {"model": "gpt-image-1", "prompt": "Ann at the kitchen window, morning light.\nAvoid: blurry",
                           "size": "1024x1536", "n": 1}
    assert check_png(out, 90, 160) == (10, 120, 200)


def test_edit_with_references_uploads_every_sheet(fake, tmp_path):
    refs = []
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0)]):
        p = tmp_path / f"ann_{i}.png"
        p.write_bytes(png_bytes(32, 48, colour))
        refs.append(p)
    fake.image_replies.append(b64_reply(120, 80, "RGBA", (0, 0, 0, 0)))  # transparent: flattened onto white
    out = tmp_path / "key.png"
    images(fake, model="gpt-image-test").generate_image(image_request(references=tuple(refs), width=96, height=96),
                                                        out)
    (req,) = fake.image_requests
    assert req["path"] == "/v1/images/edits"
    form = req["form"]
    assert (form["model"], form["prompt"], form["size"]) == ("gpt-image-test", image_request().prompt, "1024x1024")
    assert [name for name, _ in form["image"]] == ["ann_0.png", "ann_1.png"]
    assert [data for _, data in form["image"]] == [p.read_bytes() for p in refs]
    assert check_png(out, 96, 96) == (255, 255, 255)


def test_an_image_given_by_url_is_downloaded(fake, tmp_path):
    fake.png_file = png_bytes(50, 50, (1, 2, 3))
    fake.image_replies.append((200, {"created": 1, "data": [{"url": fake.base_url[:-3] + "/files/a.png"}]}))
    images(fake, model="dall-e-3").generate_image(image_request(), tmp_path / "key.png")
    assert fake.image_requests[0]["form"]["size"] == "1024x1792"
    assert check_png(tmp_path / "key.png", 90, 160) == (1, 2, 3)


@pytest.mark.parametrize("status, code, message, cls", [
    (400, "moderation_blocked", "Your request was rejected by the safety system.", RejectedError),
    (429, "rate_limit_exceeded", "Too many requests.", TransientError),
    (400, "invalid_value", "Invalid size.", PermanentError),
])
def test_image_errors_are_mapped(fake, tmp_path, status, code, message, cls):
    fake.image_replies.append((status, error(code, message)))
    with pytest.raises(cls, match=message.split()[0]):
        images(fake).generate_image(image_request(), tmp_path / "key.png")


def test_an_image_reply_without_an_image_is_transient(fake, tmp_path):
    fake.image_replies.append((200, {"created": 1, "data": []}))
    with pytest.raises(TransientError, match="no image"):
        images(fake).generate_image(image_request(), tmp_path / "key.png")


def test_a_missing_reference_is_permanent(fake, tmp_path):
    with pytest.raises(PermanentError, match="reference image"):
        images(fake).generate_image(image_request(references=(tmp_path / "gone.png",)), tmp_path / "key.png")
    assert fake.image_requests == []
