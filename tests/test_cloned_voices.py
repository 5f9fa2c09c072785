"""Cloned voices end to end: a real render (the CLI, Prefect, ffmpeg) where two characters speak in
voices cloned on two hosted providers (local servers speaking DashScope's and MiniMax's protocols)
and a third speaks eSpeak NG; each voice is enrolled once, its id kept, every line measured against
its reference clip; a new clip re-enrolls and re-speaks only that character; `rerun --line` re-takes
one line, and a line that comes back in the wrong voice is flagged in `status` and the review."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import SMALL, run_cli
from fake_hosted import FakeHosted
from fake_openai import provider_mp4  # noqa: F401 (a fixture)
from fakes_tts import PROTOCOLS
from stages.backends.base import SpeechRequest
from stages.backends.espeak import EspeakBackend

SCRIPT = """\
Title: Voices

INT. KITCHEN - NIGHT

ANN
(angrily)
Where were you last night?

BO
Out. Working late again.

CY
Both of you, sit down.

ANN
I waited until dawn.
"""

CLIP_TEXT = ("I kept every letter you wrote me, and I read them all again last night, every single one of them, "
             "slowly, by the window, until the sun came up over the harbour.")  # 10 s or more: MiniMax's minimum
ENGINES = {"ann": "dashscope-tts", "bo": "minimax-tts"}


def _clip(path: Path, variant: str, pitch: int, text: str = CLIP_TEXT) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    EspeakBackend().synthesize(SpeechRequest(text=text, language="en-us", variant=variant, pitch=pitch,
                                             speed_wpm=150), path)


def _project(root: Path, server) -> Path:
    _clip(root / "voices" / "ann.wav", "f2", 70)
    _clip(root / "voices" / "bo.wav", "m3", 30)
    opts = {e: PROTOCOLS[e].options(server) for e in ENGINES.values()}
    yaml = (f"title: Voices\nlanguage: en\nseed: 3\n{SMALL}"
            "cast:\n"
            "  - id: ann\n    name: ANN\n    description: a woman with long red hair\n"
            f"    voice: {{backend: {ENGINES['ann']}, reference: voices/ann.wav, reference_text: \"{CLIP_TEXT}\"}}\n"
            "  - id: bo\n    name: BO\n    description: a bald man with a beard\n"
            f"    voice: {{backend: {ENGINES['bo']}, reference: voices/bo.wav, reference_text: \"{CLIP_TEXT}\"}}\n"
            "  - id: cy\n    name: CY\n    description: an old man in a grey cardigan\n"
            "    voice: {language: en-us, variant: m1, pitch: 40}\n"
            "backends:\n"
            + "".join(f"  {e.replace('-', '_')}: {json.dumps(o)}\n" for e, o in opts.items()))
    (root / "project.yaml").write_text(yaml, encoding="utf-8")
    (root / "script.fountain").write_text(SCRIPT, encoding="utf-8")
    return root


def _count(server, engine: str, kind: str) -> int:
    """Calls of `kind` (enroll, tts) the fake of `engine` received."""
    prefix, last, n = PROTOCOLS[engine].PREFIX + "/", "", 0
    for what, detail in server.calls:
        if what == "http":
            last = detail.split(" ", 1)[1]
        elif what == kind and last.startswith(prefix):
            n += 1
    return n


@pytest.fixture
def server(provider_mp4, monkeypatch):  # noqa: F811
    for engine in ENGINES.values():
        for env, value in PROTOCOLS[engine].ENV.items():
            monkeypatch.setenv(env, value)
    s = FakeHosted(provider_mp4)
    yield s
    s.close()


def _status(root: Path) -> dict:
    proc = run_cli("status", str(root), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)["episodes"][0]


def test_two_cloned_voices_and_espeak_enroll_once_retake_a_line_and_rerecord_only_the_changed_voice(tmp_path, server):
    root = _project(tmp_path / "voices-project", server)
    check = run_cli("check", str(root))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "cast cy" not in check.stderr and "backends.minimax_tts.base_url: sends" in check.stderr  # a test server
    assert "cast ann: dashscope-tts takes no acting notes, so 1 line(s) with a parenthetical" in check.stderr

    est = json.loads(run_cli("estimate", str(root), "--json").stdout)
    speech = {w["who"]: w for w in est["work"] if w["kind"] == "speech"}
    assert {who: (w["backend"], w["todo"], w["voices"]) for who, w in speech.items()} == {
        "ann": ("dashscope-tts", 2, 1), "bo": ("minimax-tts", 1, 1), "cy": ("espeak", 1, 0)}

    proc = run_cli("render", str(root))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    for who, engine in ENGINES.items():
        assert _count(server, engine, "enroll") == 1, who
    assert (_count(server, "dashscope-tts", "tts"), _count(server, "minimax-tts", "tts")) == (2, 1)
    status = _status(root)
    voices = {v["character"]: v for v in status["voices"]}
    assert {c: (v["engine"], v["state"]) for c, v in voices.items()} == {
        "ann": ("dashscope-tts", "done"), "bo": ("minimax-tts", "done")} and all(v["voice_id"] for v in voices.values())
    lines = {ln["id"]: ln for ln in status["lines"]}
    figures = {ln["character"]: ln["voice_figure"] for ln in lines.values()}
    assert figures["cy"] is None  # no reference clip: nothing to measure against
    assert all(ln["voice_figure"] >= 0.8 and not ln["low"] for ln in lines.values() if ln["character"] != "cy")
    report = next((root / "build" / "reports").glob("*.md")).read_text(encoding="utf-8")
    assert "1 voice(s) enrolled" in report

    # a second render changes nothing and calls no provider
    calls = len(server.calls)
    assert run_cli("render", str(root)).returncode == 0
    assert not [c for c in server.calls[calls:] if c[0] in ("enroll", "tts")]

    # `rerun --line`: one line re-taken; the provider answers in someone else's voice (a man's): flagged
    ann = next(ln for ln in status["lines"] if ln["character"] == "ann")
    server.wrong_voices = {voices["ann"]["voice_id"]}
    proc = run_cli("rerun", str(root), "--line", ann["id"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert (_count(server, "dashscope-tts", "tts"), _count(server, "minimax-tts", "tts")) == (3, 1)  # that line only
    retaken = next(ln for ln in _status(root)["lines"] if ln["id"] == ann["id"])
    assert retaken["low"] and retaken["voice_figure"] < 0.5
    text = run_cli("status", str(root)).stdout
    assert f"re-take: dramaforge rerun {root} --line {ann['id']}" in text and "below dialogue.min_voice" in text
    page = (root / "build" / "review" / "ep01.html").read_text(encoding="utf-8")
    assert "the wrong voice?" in page and f"--line {ann['id']}" in page
    bad = run_cli("rerun", str(root), "--line", "ep01-sc09-sh001-l1")
    assert bad.returncode != 0 and "no line ep01-sc09-sh001-l1" in bad.stderr and "Traceback" not in bad.stderr
    server.wrong_voices = set()

    # a new clip for ann: ann is enrolled again and re-spoken; bo and cy are not touched
    before = {p: p.stat().st_mtime_ns for p in (root / "build" / "speech").glob("*.wav")}
    _clip(root / "voices" / "ann.wav", "f4", 65, "Every night I wait by the window and count the cars that pass.")
    proc = run_cli("render", str(root))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert (_count(server, "dashscope-tts", "enroll"), _count(server, "minimax-tts", "enroll")) == (2, 1)
    assert (_count(server, "dashscope-tts", "tts"), _count(server, "minimax-tts", "tts")) == (5, 1)
    after = {p: p.stat().st_mtime_ns for p in (root / "build" / "speech").glob("*.wav")}
    assert all(after[p] == t for p, t in before.items())  # nothing spoken before was spoken again
    assert len(set(after) - set(before)) == 2  # ann's two lines, under keys of the new clip
    assert _status(root)["voices"][0]["state"] == "done"

    # the voice's file lost: the journal keeps its id, so nothing is paid again
    for f in (root / "build" / "voices").glob("*.json"):
        f.unlink()
    for f in (root / "build" / "speech").glob("*.wav"):
        f.unlink()
    enrolled = (_count(server, "dashscope-tts", "enroll"), _count(server, "minimax-tts", "enroll"))
    assert run_cli("render", str(root)).returncode == 0
    assert (_count(server, "dashscope-tts", "enroll"), _count(server, "minimax-tts", "enroll")) == enrolled
    # a voice the provider lost (MiniMax deletes one unused for 7 days) is given up by the user, then enrolled anew
    proc = run_cli("rerun", str(root), "--shot", "voice-bo-minimax-tts", "--new-job")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert _count(server, "minimax-tts", "enroll") == enrolled[1] + 1 and "gave up on job" in proc.stdout + proc.stderr


def test_check_names_a_missing_clip_a_clip_too_short_and_a_note_the_engine_cannot_act(tmp_path, server):
    from stages.check_project import check_project

    root = _project(tmp_path / "checked", server)
    (root / "script.fountain").write_text(SCRIPT.replace("BO\nOut.", "BO\n(beat)\nOut.").replace(
        "ANN\n(angrily)", "ANN\n(whispering)"), encoding="utf-8")
    warnings = [w.message for w in check_project(root).warnings]
    assert any(w.startswith("cast bo: 1 acting note(s) give minimax-tts nothing to act (first: (beat) at ")
               for w in warnings), warnings
    _clip(root / "voices" / "bo.wav", "m3", 30, "Too short.")
    (root / "voices" / "ann.wav").unlink()
    errors = {e["message"] for e in check_project(root).errors}
    assert "cast ann: the reference clip voices/ann.wav is not there" in errors
    assert any(e.startswith("cast bo: the reference clip voices/bo.wav is ") and "minimax-tts takes 10 to 300 s" in e
               for e in errors), errors
