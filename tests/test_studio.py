"""`dramaforge studio` driven in headless Chromium (the system's, as the review site's test): the page
with its token (and refused without it), a take played, another take picked and the episode cut again from
it, a prompt edited (in Chinese: the page's own font draws it), that shot re-run and watched to the end,
the next episode rendered from the page (so a series is finished there, no terminal command needed); the
ledger, the shot list and the episode file checked after each step. And a take another render holds is
refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import COUNTING, SMALL, TINY_YAML, TWO_EPISODES, chaos_calls, run_cli
from stages.core.ledger import Ledger
from test_review import _chromium, _wait

pytestmark = pytest.mark.skipif(_chromium() is None, reason="no Chromium binary (apt install chromium, or set "
                                                            "CHROMIUM=path); `.ci/run` installs it")


@pytest.fixture(scope="module")
def _rendered(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("studio") / "two"
    root.mkdir()
    (root / "project.yaml").write_text(TINY_YAML + SMALL + COUNTING + "takes: 2\n", encoding="utf-8")
    (root / "script.fountain").write_text(TWO_EPISODES, encoding="utf-8")
    proc = run_cli("render", str(root), "-e", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root


@pytest.fixture
def studio(_rendered, tmp_path):
    root = Path(shutil.copytree(_rendered, tmp_path / "two"))
    exe = Path(sys.executable).with_name("dramaforge")
    proc = subprocess.Popen([str(exe), "studio", str(root), "--no-open"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "?token=" in line, line + proc.stderr.read()
        url = line.split(": ", 1)[1].strip()
        for _ in range(100):  # uvicorn answers once it is up
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        yield root, url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _shotlist(root: Path) -> dict:
    return {s["id"]: s for s in yaml.safe_load((root / "build" / "shotlists" / "ep01.yaml").read_text())["shots"]}


def _post(url: str, path: str, body: dict) -> tuple[int, dict]:
    base, token = url.split("/?token=")
    req = urllib.request.Request(f"{base}/{path}", data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json", "x-dramaforge-token": token})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_the_studio_without_its_token_answers_nothing(studio):
    root, url = studio
    base = url.split("/?token=")[0]
    for bad in (base + "/", base + "/api/series", base + "/?token=wrong", base + "/media/ledger.sqlite"):
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(bad, timeout=5)
        assert exc.value.code == 403
    assert base.startswith("http://127.0.0.1:")


def test_a_take_another_render_holds_is_refused(studio):
    from filelock import FileLock

    from stages.core.paths import BuildPaths

    root, url = studio
    ledger = Ledger(root / "build" / "ledger.sqlite")
    key = ledger.get("ep01-sc01-sh001-t2").spec_hash
    paths = BuildPaths(root / "build")
    lock = FileLock(str(paths.lock(paths.shots, key)))
    with lock:
        code, answer = _post(url, "api/rerun", {"shot": "ep01-sc01-sh001-t2"})
    assert code == 409 and "being made by another render" in answer["error"]
    code, answer = _post(url, "api/pick", {"shot": "ep01-sc01-sh001", "take": 5})
    assert code == 400 and "not a take 5" in answer["error"]
    code, answer = _post(url, "api/edit", {"shot": "ep01-sc01-sh001", "size": "huge"})
    assert code == 400 and "size" in answer["error"]


def test_review_pick_edit_rerun_and_cut_in_the_browser(studio, tmp_path):
    from playwright.sync_api import sync_playwright

    root, url = studio
    base = url.split("/?token=")[0]
    ledger = Ledger(root / "build" / "ledger.sqlite")
    shots = {r.id: r for r in ledger.rows() if r.kind == "shot"}
    cut, calls = ledger.get("ep01").spec_hash, len(chaos_calls(root))
    mp4 = root / "build" / "episodes" / "ep01.mp4"
    first, second = list(_shotlist(root))[:2]
    requests, errors = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=["--no-sandbox", "--disable-gpu",
                                     "--disable-background-networking", "--no-first-run", "--autoplay-policy=no-user-gesture-required"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})

            def route(r):  # nothing but the studio itself is fetched
                requests.append(r.request.url)
                r.continue_() if r.request.url.startswith(base) else r.abort()

            context.route("**/*", route)
            page = context.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            page.wait_for_selector(f'[data-shot="{first}"] [data-take="2"]')

            # every take of a shot plays inline
            take = page.locator(f'[data-shot="{first}"] [data-take="2"] video')
            take.evaluate("v => { v.muted = true; return v.play(); }")
            _wait(page, f"document.querySelector('[data-shot=\"{first}\"] [data-take=\"2\"] video').currentTime > 0")

            # pick take 2: the shot list says so, nothing is made
            page.locator(f'[data-shot="{first}"] [data-take="2"] button.pick').click()
            page.wait_for_selector(f'[data-shot="{first}"] .take.chosen[data-take="2"]')
            assert _shotlist(root)[first]["take"] == 2 and len(chaos_calls(root)) == calls

            # cut the episode again, from take 2: nothing is made
            before = mp4.stat().st_mtime_ns
            page.evaluate("delete document.body.dataset.run")  # the last run's end is not this one's
            page.locator('[data-episode="1"] button.cut').click()
            _wait(page, "document.body.dataset.run === 'done' || document.body.dataset.run === 'failed'", 120)
            assert page.evaluate("document.body.dataset.run") == "done", page.inner_text("#log")
            assert ledger.get("ep01").spec_hash != cut and mp4.stat().st_mtime_ns > before
            assert len(chaos_calls(root)) == calls  # nothing generated
            page.wait_for_selector('[data-episode="1"][data-cut="done"]')
            cut = ledger.get("ep01").spec_hash

            # edit a prompt (in Chinese): written to the shot list as a hand edit, kept by re-planning
            shot = page.locator(f'[data-shot="{second}"]')
            shot.locator("summary").click()
            shot.locator("textarea.prompt").fill("林美在雨夜里等最后一班船")
            shot.locator("button.save").click()
            _wait(page, "document.getElementById('status').textContent.includes('edited in its shot list')")
            assert _shotlist(root)[second]["prompt"] == "林美在雨夜里等最后一班船"
            assert run_cli("plan", str(root), "-e", "1").returncode == 0
            assert _shotlist(root)[second]["prompt"] == "林美在雨夜里等最后一班船"
            page.reload()
            page.wait_for_selector(f'[data-shot="{second}"]')
            page.evaluate("document.fonts.ready")
            assert page.evaluate("document.fonts.check('16px \"DF Noto Sans CJK\"', '林美在雨夜')")
            assert "林美在雨夜里" in page.locator(f'[data-shot="{second}"] textarea').input_value()

            # re-run that shot and watch it finish: made anew under its new prompt's key
            page.evaluate("delete document.body.dataset.run")  # the last run's end is not this one's
            page.locator(f'[data-shot="{second}"] [data-take="1"] button.rerun').click()
            _wait(page, "document.body.dataset.run === 'done' || document.body.dataset.run === 'failed'", 120)
            assert page.evaluate("document.body.dataset.run") == "done", page.inner_text("#log")
            remade = ledger.get(second)
            assert remade.spec_hash != shots[second].spec_hash and remade.state == "done"
            assert "dramaforge rerun" in page.inner_text("#log")
            assert ledger.get("ep01").spec_hash != cut  # its episode was cut again with it

            # episode 2, never rendered: rendered from the page (it asks first: shots are made)
            asked = []
            page.on("dialog", lambda d: (asked.append(d.message), d.accept()))
            page.wait_for_selector('[data-episode="2"] button.render')
            page.evaluate("delete document.body.dataset.run")  # the last run's end is not this one's
            page.locator('[data-episode="2"] button.render').click()
            _wait(page, "document.body.dataset.run === 'done' || document.body.dataset.run === 'failed'", 180)
            assert page.evaluate("document.body.dataset.run") == "done", page.inner_text("#log")
            assert asked and "to make" in asked[0] and (root / "build" / "episodes" / "ep02.mp4").exists()
            page.wait_for_selector('[data-episode="2"][data-cut="done"]')
            page.screenshot(path=str(tmp_path / "studio.png"), full_page=True)
        finally:
            browser.close()
    assert requests and all(u.startswith(base) for u in requests), requests
    assert not errors, errors
