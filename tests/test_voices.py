"""A voice per character: the demo's cast sound different (measured pitch), and a character on the
openai engine plus translated subtitles render through the real CLI against a local server."""

from __future__ import annotations

import itertools
import json
import re
import wave
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, TINY_SCRIPT, TINY_YAML, run_cli
from stages.backends.registry import make_speech_backend
from stages.load_project import load_project
from stages.synthesize_speech import speech_engine, speech_request
from test_openai_backends import FakeOpenAI, chat_reply, sent_lines, tone_pcm, wav_bytes

SENTENCE = "The last ferry left an hour ago, and nobody is waiting on the dock tonight."


def median_f0(path: Path) -> float:
    """Median pitch of the voiced frames (autocorrelation, 60-400 Hz)."""
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(float)
    frame = int(0.04 * rate)
    loud = 0.1 * np.sqrt(np.mean(x ** 2))
    found = []
    for i in range(0, len(x) - frame, frame // 2):
        s = x[i: i + frame] - x[i: i + frame].mean()
        if np.sqrt(np.mean(s ** 2)) < loud:
            continue
        ac = np.correlate(s, s, "full")[frame - 1:]
        lo, hi = rate // 400, rate // 60
        k = lo + int(np.argmax(ac[lo:hi]))
        if ac[k] > 0.4 * ac[0]:
            found.append(rate / k)
    assert len(found) > 20, f"{path.name}: too few voiced frames to measure"
    return float(np.median(found))


def test_demo_characters_are_recognisably_different_voices(tmp_path):
    lp = load_project(REPO / "projects" / "demo")
    pitch = {}
    for c in lp.project.cast:
        backend = make_speech_backend(speech_engine(lp.project, c.id), lp.project.backends)
        out = tmp_path / f"{c.id}.wav"
        backend.synthesize(speech_request(SENTENCE, c.id, lp.project, lp.root), out)
        pitch[c.id] = median_f0(out)
    assert len(pitch) >= 3
    for (a, fa), (b, fb) in itertools.combinations(pitch.items(), 2):
        # 20 % is over three semitones: heard as another person, not the same voice twice
        assert max(fa, fb) / min(fa, fb) > 1.2, f"{a} ({fa:.0f} Hz) and {b} ({fb:.0f} Hz) sound alike"


@pytest.fixture
def server():
    fake = FakeOpenAI()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def _route(body: dict):
    """Speech requests get a WAV; chat requests get each line upper-cased (a stand-in translator)."""
    if "input" in body:
        return 200, wav_bytes(tone_pcm(0.8)), {"Content-Type": "audio/wav"}
    lines = sent_lines(body)
    return chat_reply(json.dumps({"lines": [{"id": i, "text": t.upper()} for i, t in lines.items()]}))


def test_openai_voice_and_translated_subtitles_render_end_to_end(tiny_project, server):
    yaml_text = TINY_YAML.replace(
        "    voice: {language: en-gb, variant: m3, pitch: 35}",
        "    voice: {backend: openai, voice: onyx, speed: 1.1, notes: 'gravelly, tired harbour-master'}")
    yaml_text += "width: 270\nheight: 480\n"
    yaml_text += (f"backends:\n  openai: {{base_url: '{server.base_url}', speech_model: tts-test}}\n"
                  f"subtitles:\n  translation: {{language: fr, base_url: '{server.base_url}', model: chat-test}}\n")
    (tiny_project / "project.yaml").write_text(yaml_text, encoding="utf-8")
    server.replies.extend([_route] * 8)
    est = json.loads(run_cli("estimate", str(tiny_project), "--json").stdout)
    work = {(w["kind"], w["backend"]): w for w in est["work"]}
    assert work["speech", "openai"]["todo"] == 1 and work["speech", "openai"]["cost"] is None  # billed, no rate
    assert work["speech", "espeak"]["todo"] == 2 and work["translation", "translation"]["todo"] == 1
    proc = run_cli("render", str(tiny_project))
    assert proc.returncode == 0, proc.stderr[-3000:]

    spoken = [r for r in server.requests if r["path"] == "/v1/audio/speech"]
    assert len(spoken) == 1  # only BO is on the openai engine; ANN stays on eSpeak
    body = spoken[0]["body"]
    assert body["input"] == "Almost. Patience." and body["voice"] == "onyx" and body["model"] == "tts-test"
    assert body["speed"] == 1.1 and body["response_format"] == "wav"
    assert "gravelly, tired harbour-master" in body["instructions"] and '"grumbling"' in body["instructions"]

    episodes = tiny_project / "build" / "episodes"
    srt = (episodes / "ep01.srt").read_text(encoding="utf-8")
    assert "Almost. Patience.\nALMOST. PATIENCE." in srt  # the translation as a second line
    fr = (episodes / "ep01.fr.srt").read_text(encoding="utf-8")
    assert "IS IT READY?" in fr and "Is it ready?" not in fr
    assert (episodes / "ep01.fr.vtt").is_file()

    # Nothing changed: a second render calls neither the speech nor the translation server.
    before = len(server.requests)
    again = run_cli("render", str(tiny_project))
    assert again.returncode == 0 and "nothing to do" in again.stdout + again.stderr
    assert len(server.requests) == before

    # A lost episode file: the estimate reassembles it from cached speech and translation.
    (episodes / "ep01.mp4").unlink()
    est = json.loads(run_cli("estimate", str(tiny_project), "--json").stdout)
    work = {w["kind"]: w for w in est["work"]}
    assert work["assembly"]["todo"] == 1 and work["translation"]["todo"] == 0 and work["translation"]["cached"] == 1
    assert est["cost"] == 0 and len(server.requests) == before


def test_a_line_the_engine_refuses_names_episode_scene_and_script_line(tiny_project, server):
    yaml_text = TINY_YAML.replace("    voice: {language: en-gb, variant: m3, pitch: 35}",
                                  "    voice: {backend: openai, voice: nobody}")
    yaml_text += f"backends:\n  openai: {{base_url: '{server.base_url}'}}\n"
    (tiny_project / "project.yaml").write_text(yaml_text, encoding="utf-8")
    server.error(400, "Invalid voice 'nobody'. Supported voices are alloy, coral, onyx.", code="invalid_value")
    proc = run_cli("render", str(tiny_project))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out
    line = next(i for i, t in enumerate(TINY_SCRIPT.splitlines(), 1) if t == "BO")
    assert re.search(rf"episode 1, scene 1, \S*script\.fountain:({line}|{line + 1}|{line + 2})\b", out), out[-2000:]
    assert "Invalid voice 'nobody'" in out
    assert len(server.requests) == 1  # a bad request is not retried
    assert not list((tiny_project / "build" / "episodes").glob("*.mp4"))


def test_check_refuses_a_missing_piper_voice_and_warns_on_subtitles_under_the_platform_ui(tiny_project):
    yaml_text = TINY_YAML.replace("    voice: {language: en-gb, variant: m3, pitch: 35}",
                                  "    voice: {backend: piper, voice: voices/bo.onnx}")
    (tiny_project / "project.yaml").write_text(yaml_text + "subtitles: {margin_bottom_px: 40}\n", encoding="utf-8")
    proc = run_cli("check", str(tiny_project), "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 2
    assert any("voices/bo.onnx" in e["message"] for e in report["errors"])
    assert any("margin_bottom_px 40" in w["message"] for w in report["warnings"])
    render = run_cli("render", str(tiny_project))
    assert render.returncode == 2 and "voices/bo.onnx" in render.stderr and "Traceback" not in render.stderr
