"""The review site: rendered from a real (half-failed) render, opened from disk in headless Chromium.

The browser test needs a Chromium binary (`.ci/run` installs Debian's `chromium`); without one it
skips and says why. The font test needs no browser.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import run_cli

PROJECT = """\
title: 雨夜渡轮
language: zh
seed: 2
width: 270
height: 480
fps: 12
script: script.txt
cast:
  - id: lin
    name: 林美
    description: 二十五岁的女人，黑色短发，红色雨衣
    voice: {language: cmn, variant: f2, pitch: 60}
  - id: zhou
    name: 老周
    description: 六十岁的船长，灰色胡子，圆眼镜
    voice: {language: cmn, pitch: 30}
backends:
  video: chaos
  chaos: {wraps: animatic, fail_rate: FAIL, error: permanent, seed: 1}
"""

SCRIPT = """\
第1集：雨夜
1-1 夜 内 渡轮船舱
人物：林美、老周
△雨打在舷窗上。
林美：最后一班船还开吗？
老周：（低声）开。上船吧。

第2集：码头
2-1 日 外 码头
人物：林美、老周
林美：你一直在等我？
老周：等了十年。
"""


def _chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and (path := shutil.which(name)):
            return path
    return None


def _status(root: Path) -> dict:
    proc = run_cli("status", str(root), "--json")
    assert proc.returncode == 0, proc.stderr
    return {e["id"]: e for e in json.loads(proc.stdout)["episodes"]}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Both episodes rendered, then one shot of episode 2 re-run and failing for good."""
    root = tmp_path_factory.mktemp("review") / "雨夜 [review]"
    root.mkdir()
    (root / "project.yaml").write_text(PROJECT.replace("FAIL", "0.0"), encoding="utf-8")
    (root / "script.txt").write_text(SCRIPT, encoding="utf-8")
    first = run_cli("render", str(root))
    assert first.returncode == 0, first.stderr[-3000:]
    assert (root / "build" / "review" / "index.html").exists()  # every render refreshes the site
    # The chaos backend wraps the animatic without changing its keys: only the re-run shot fails.
    (root / "project.yaml").write_text(PROJECT.replace("FAIL", "1.0"), encoding="utf-8")
    broken = _status(root)["ep02"]["shots"][1]["id"]
    rerun = run_cli("rerun", str(root), "--shot", broken)
    assert rerun.returncode == 1 and "Traceback" not in rerun.stderr
    proc = run_cli("review", str(root))
    assert proc.returncode == 0, proc.stderr
    return root, broken, _status(root)


def test_review_pages_list_every_shot_with_state_and_rerun_command(site):
    root, broken, status = site
    page = (root / "build" / "review" / "ep02.html").read_text(encoding="utf-8")
    ids = re.findall(r'data-shot-id="([^"]+)"', page)
    assert ids == [s["id"] for s in status["ep02"]["shots"]]
    failed = next(s for s in status["ep02"]["shots"] if s["id"] == broken)
    assert failed["state"] == "failed" and "chaos: simulated PermanentError" in failed["reason"]
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing from a network


def test_script_text_is_escaped_on_the_pages(tiny_project):
    script = (tiny_project / "script.fountain").read_text(encoding="utf-8")
    (tiny_project / "script.fountain").write_text(
        script.replace("Steam rises from a kettle.", "Steam <img src=x onerror=alert(1)> & \"rises\"."),
        encoding="utf-8")
    proc = run_cli("review", str(tiny_project))
    assert proc.returncode == 0, proc.stderr
    page = (tiny_project / "build" / "review" / "ep01.html").read_text(encoding="utf-8")
    assert "&lt;img src=x onerror=alert(1)&gt; &amp;" in page and "<img src=x" not in page
    assert not (tiny_project / "build" / "ledger.sqlite").exists()  # reviewing renders nothing


def test_review_font_covers_every_character_shown(site):
    import base64
    import io

    from fontTools.ttLib import TTFont

    root, _, _ = site
    review = root / "build" / "review"
    (css,) = (review / "assets").glob("font-*.css")
    data = re.search(r"base64,([A-Za-z0-9+/=]+)", css.read_text(encoding="ascii")).group(1)
    cmap = TTFont(io.BytesIO(base64.b64decode(data))).getBestCmap()
    for page in review.glob("*.html"):
        html = page.read_text(encoding="utf-8")
        text = re.sub(r"<[^>]+>", "", html)
        missing = sorted({ch for ch in text if not ch.isspace() and ord(ch) not in cmap})
        assert not missing, (page.name, missing)
    assert "林美" in (review / "ep01.html").read_text(encoding="utf-8")


@pytest.mark.skipif(_chromium() is None, reason="no Chromium binary (apt install chromium, or set CHROMIUM=path); "
                                                "`.ci/run` installs it so CI always runs this")
def test_review_site_in_headless_chromium(site, tmp_path):
    from PIL import Image, ImageStat
    from playwright.sync_api import sync_playwright

    root, broken, status = site
    review = root / "build" / "review"
    requests, errors = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1)

            def route(r):  # record every request; anything not on this disk is refused and reported
                requests.append(r.request.url)
                if r.request.url.startswith(("file:", "data:", "blob:")):
                    r.continue_()
                else:
                    r.abort()

            context.route("**/*", route)
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))

            # The series page: every episode, its poster and counts.
            page.goto((review / "index.html").as_uri())
            page.wait_for_load_state("load")
            cards = page.eval_on_selector_all("[data-episode]", "els => els.map(e => [e.dataset.episode, e.dataset.cut])")
            assert cards == [["ep01", "done"], ["ep02", "stale"]]
            assert page.eval_on_selector_all("img", "els => els.every(i => i.complete && i.naturalWidth > 0)")
            page.screenshot(path=str(tmp_path / "index.png"), full_page=True)

            # Episode 2: every shot, the failed one with its reason and re-run command.
            page.goto((review / "ep02.html").as_uri())
            page.wait_for_load_state("load")
            shown = page.eval_on_selector_all("[data-shot-id]", "els => els.map(e => [e.dataset.shotId, e.dataset.state])")
            assert shown == [[s["id"], s["state"]] for s in status["ep02"]["shots"]]
            card = page.locator(f'[data-shot-id="{broken}"]')
            reason = next(s["reason"] for s in status["ep02"]["shots"] if s["id"] == broken)
            assert reason in card.locator(".reason").inner_text()
            assert card.locator("pre.rerun").inner_text() == f"dramaforge rerun '{root}' --shot {broken}"
            # readable on a phone: nothing wider than the screen
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            page.screenshot(path=str(tmp_path / "ep02.png"), full_page=True)

            # Episode 1: the player plays the cut from disk; a shot's clip loads inline; Chinese is drawn
            # in the page's own font.
            page.goto((review / "ep01.html").as_uri())
            page.wait_for_load_state("load")
            _wait(page, "document.querySelector('#player video').readyState >= 1")
            duration = page.evaluate("document.querySelector('#player video').duration")
            assert abs(duration - _mp4_duration(root / "build" / "episodes" / "ep01.mp4")) < 0.1
            page.evaluate("document.querySelector('[data-shot-id] video').load()")
            _wait(page, "document.querySelector('[data-shot-id] video').readyState >= 1")
            assert page.evaluate("document.querySelector('[data-shot-id] video').duration") > 0
            page.evaluate("document.fonts.ready")
            fonts = page.evaluate("Array.from(document.fonts).map(f => [f.family, f.status])")
            assert fonts == [["DF Noto Sans CJK", "loaded"]], fonts
            assert page.evaluate("document.fonts.check('16px \"DF Noto Sans CJK\"', '林美老周雨夜')")
            assert "林美" in page.inner_text("#shots")
            page.screenshot(path=str(tmp_path / "ep01.png"), full_page=True)
        finally:
            browser.close()

    assert requests and all(u.startswith(("file:", "data:", "blob:")) for u in requests), requests
    assert not errors, errors
    for name in ("index.png", "ep01.png", "ep02.png"):
        with Image.open(tmp_path / name) as im:
            assert im.width == 390 and im.height > 844
            assert max(ImageStat.Stat(im.convert("L")).stddev) > 10  # a picture, not a blank page


def _wait(page, expression: str, timeout_s: float = 20) -> None:
    """Poll from outside: the pages' CSP forbids the eval that `page.wait_for_function` uses."""
    import time

    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.1)


def _mp4_duration(path: Path) -> float:
    from stages.core.media import probe

    return probe(path).duration_s
