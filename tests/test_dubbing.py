"""A series in another language (`languages:`): every line translated through a local OpenAI-compatible
server, spoken by each character's eSpeak voice in that language, fitted to its place, and cut from the
original's pictures as epNN.<language>.mp4; one own translation re-speaks one line; the glossary."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from conftest import SMALL, TINY_YAML, run_cli
from test_openai_backends import chat_reply, sent_lines
from test_voices import server  # noqa: F401  (a local OpenAI-compatible server, as a fixture)

SPANISH = {"Is it ready?": "¿Está listo?", "Almost. Patience.": "Casi. Paciencia.",
           # far longer than its place: sped up to the bound, then its shot holds
           "Then I am leaving.": "Entonces me voy ahora mismo, sin mirar atrás, y no volveré nunca jamás a esta casa."}
FRENCH = {"Is it ready?": "C'est prêt ?", "Almost. Patience.": "Presque. Patience.",
          "Then I am leaving.": "Alors je m'en vais."}


def _translate(body: dict):
    """A translator that knows these lines in Spanish and French (the language the request names)."""
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    words = {"es": SPANISH, "fr": FRENCH}[re.search(r'into "(\w+)"', user).group(1)]
    return chat_reply(json.dumps({"lines": [{"id": i, "text": words[t]} for i, t in sent_lines(body).items()]}))


def _project(root, server, extra: str = "", languages: str = "[es]") -> None:
    (root / "project.yaml").write_text(
        TINY_YAML + SMALL + f"languages: {languages}\n"
        f"translation: {{base_url: '{server.base_url}', model: chat-test, api_key_env: DRAMAFORGE_TEST_OPENAI_KEY}}\n"
        + extra, encoding="utf-8")


def _frames(path, fps: int = 12):
    """Every decoded frame (gray, 270x480) of an mp4."""
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="gray").astype(np.int16) for f in c.decode(video=0)]


def _cues(srt: str) -> list[tuple[float, float]]:
    def sec(t: str) -> float:
        h, m, s = t.replace(",", ".").split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)

    return [(sec(a), sec(b)) for a, b in re.findall(r"(\d\d:\d\d:\d\d,\d+) --> (\d\d:\d\d:\d\d,\d+)", srt)]


def test_a_dub_reuses_the_pictures_speaks_spanish_fits_its_lines_and_respeaks_one_edited_line(tiny_project, server,
                                                                                             monkeypatch):
    from stages.backends.registry import backends_for
    from stages.core.loudness import measure_ebur128
    from stages.core.paths import BuildPaths
    from stages.load_project import load_project
    from stages.plan_dub import MAX_TEMPO, plan_dub
    from stages.plan_work import plan_work

    monkeypatch.setenv("DRAMAFORGE_TEST_OPENAI_KEY", "sk-test")
    _project(tiny_project, server, "subtitles: {bilingual: [en, es]}\n", languages="[es, fr]")
    server.replies.extend([_translate] * 4)
    proc = run_cli("render", str(tiny_project), "--language", "es")  # only that dub
    assert proc.returncode == 0, proc.stderr[-3000:]
    chats = [r for r in server.requests if r["path"] == "/v1/chat/completions"]
    assert len(chats) == 1 and chats[0]["headers"]["authorization"] == "Bearer sk-test"
    episodes = tiny_project / "build" / "episodes"
    original, dub, french = episodes / "ep01.mp4", episodes / "ep01.es.mp4", episodes / "ep01.fr.mp4"
    assert original.is_file() and dub.is_file() and not french.exists()
    proc = run_cli("render", str(tiny_project))  # the French dub now; the rest is up to date
    assert proc.returncode == 0 and french.is_file(), proc.stderr[-3000:]
    assert len([r for r in server.requests if r["path"] == "/v1/chat/completions"]) == 2

    # its speech: each character's eSpeak voice in Spanish, the same voice otherwise
    lp = load_project(tiny_project)
    backends, paths = backends_for(lp.project, lp.root), BuildPaths(lp.build)
    work = plan_work(lp, 1, backends)
    es = plan_dub(lp, work, "es", backends, paths)
    assert [ln.request.text for ln in es.lines] == list(SPANISH.values())
    assert {(ln.character, ln.request.language, ln.request.variant) for ln in es.lines} == \
        {("ann", "es", "f2"), ("bo", "es", "m3")} and {ln.engine for ln in es.lines} == {"espeak"}
    assert all(ln.path.is_file() for ln in es.lines)

    # no line cut: the long one at the bound and its shot held for the rest; the others as spoken
    fits = {f.line: f for f in es.fits}
    long = fits["ep01-sc02-sh001-l1.es"] if "ep01-sc02-sh001-l1.es" in fits else list(fits.values())[-1]
    assert long.tempo == MAX_TEMPO and long.overrun_s > 0.5
    assert all(f.tempo <= MAX_TEMPO for f in es.fits)
    status = json.loads(run_cli("status", str(tiny_project), "--json").stdout)
    d, fr = status["episodes"][0]["dubs"]
    assert d["state"] == "done" and d["held"] and d["held"][0]["line"] == long.line
    assert fr["language"] == "fr" and fr["state"] == "done" and not fr["held"]
    from stages.core.media import probe

    assert probe(dub).duration_s == pytest.approx(probe(original).duration_s + long.overrun_s, abs=0.2)
    listed = json.loads((tiny_project / "build" / "series.json").read_text(encoding="utf-8"))["episodes"][0]
    assert listed["languages"]["es"]["mp4"].endswith("ep01.es.mp4") and listed["languages"]["es"]["held"]
    page = (tiny_project / "build" / "review" / "ep01.html").read_text(encoding="utf-8")
    assert 'id="dub-es"' in page and "holds its last frame" in page and "ep01.es.mp4" in page

    # the same picture stream where neither shows a subtitle or a card (the dub's held shot at its end)
    a, b = _frames(original), _frames(dub)
    busy = _cues((episodes / "ep01.srt").read_text(encoding="utf-8")) + \
        _cues((episodes / "ep01.es.srt").read_text(encoding="utf-8"))
    opening = lp.project.cards.opening_s
    free = [i for i in range(len(a) - int(lp.project.cards.end_s * 12) - 1)
            if i / 12 > opening and not any(s - 0.1 <= i / 12 <= e + 0.1 for s, e in busy)]
    assert len(free) > 10
    for i in free:
        assert np.abs(a[i] - b[i]).mean() < 1.5, f"frame {i} differs"
    # its sound at the loudness target; its subtitles Spanish
    assert measure_ebur128(dub).integrated_lufs == pytest.approx(lp.project.audio.target[0], abs=1.0)
    srt = (episodes / "ep01.es.srt").read_text(encoding="utf-8")
    assert "¿Está listo?" in srt and "Is it ready?" not in srt and (episodes / "ep01.es.vtt").is_file()
    # bilingual (en above, es below) on the Spanish dub only: both burned, each language its own sidecar
    assert "Is it ready?" in (episodes / "ep01.es.en.srt").read_text(encoding="utf-8")
    ass = (tiny_project / "build" / "work" / "ep01.es.ass").read_text(encoding="utf-8")
    assert "Is it ready?\\N{\\rL-es}¿Está listo?" in ass
    assert "L-en" not in (tiny_project / "build" / "work" / "ep01.fr.ass").read_text(encoding="utf-8")

    # one line translated by the writer: that line of that language is spoken again, nothing else
    wavs = {p.name for p in (tiny_project / "build").rglob("*.wav")}
    before = {p: p.stat().st_mtime_ns for p in (original, dub, french)}
    (tiny_project / "translations").mkdir()
    (tiny_project / "translations" / "es.yaml").write_text('"Is it ready?": "¿Ya está?"\n', encoding="utf-8")
    asked = len(server.requests)
    again = run_cli("render", str(tiny_project))
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(server.requests) == asked  # the translation is cached
    new = {p.name for p in (tiny_project / "build").rglob("*.wav")} - wavs
    lp = load_project(tiny_project)
    es = plan_dub(lp, plan_work(lp, 1, backends), "es", backends, paths)
    assert new == {es.lines[0].path.name} and es.lines[0].request.text == "¿Ya está?"
    assert original.stat().st_mtime_ns == before[original] and dub.stat().st_mtime_ns != before[dub]
    assert french.stat().st_mtime_ns == before[french]
    assert "nothing to do" in run_cli("render", str(tiny_project)).stderr

    # the glossary: an own translation without a term's word is refused by `check`, where it is written;
    # the translator's answer is asked for again, told the term (the glossary is part of its key)
    (tiny_project / "glossary.yaml").write_text("ready: {es: listo}\n", encoding="utf-8")
    check = run_cli("check", str(tiny_project), "--json")
    report = json.loads(check.stdout)
    assert check.returncode != 0
    [miss] = [e for e in report["errors"] if e["message"].startswith("glossary")]
    assert miss["file"].endswith("es.yaml") and miss["line"] == 1 and "'listo' for 'ready'" in miss["message"]
    assert "¿Ya está?" in miss["text"] and "glossary.yaml:1" in miss["message"]
    est = json.loads(run_cli("estimate", str(tiny_project), "--json").stdout)
    work_of = {w["kind"]: w for w in est["work"]}
    assert est["episodes"] == [1] and work_of["translation"]["todo"] == 1


def test_the_translator_is_told_the_glossary_and_held_to_it():
    from stages.backends.openai_translate import translation_messages, validate

    glossary = (("林晚", "Lin Wan"), ("霸总", "the boss"))
    messages = translation_messages(["林晚，你回来了。"], "zh", "en", "", glossary=glossary)
    assert '"林晚" -> "Lin Wan"' in messages[1]["content"] and "霸总" not in messages[1]["content"]
    answer = {"lines": [{"id": 1, "text": "Linwan, you're back."}]}
    assert validate(answer, ["林晚，你回来了。"], glossary) == ["id 1 must write 'Lin Wan' for '林晚' (the glossary)"]
    assert validate({"lines": [{"id": 1, "text": "Lin Wan, you're back."}]}, ["林晚，你回来了。"], glossary) == []


def test_dub_settings_are_checked_where_they_are_written(tiny_project, tmp_path):
    yaml_text = TINY_YAML + "languages: [es, es]\n"
    (tiny_project / "project.yaml").write_text(yaml_text, encoding="utf-8")
    proc = run_cli("check", str(tiny_project))
    assert proc.returncode == 2 and "listed twice" in proc.stderr and "Traceback" not in proc.stderr
    (tiny_project / "project.yaml").write_text(TINY_YAML + "languages: [en]\n", encoding="utf-8")
    proc = run_cli("check", str(tiny_project))
    assert proc.returncode == 2 and "the script's own language" in proc.stderr
    (tiny_project / "project.yaml").write_text(TINY_YAML + "languages: [es]\ndialogue: native\n", encoding="utf-8")
    proc = run_cli("check", str(tiny_project))
    assert proc.returncode == 2 and "cannot re-voice" in proc.stderr
    (tiny_project / "project.yaml").write_text(
        TINY_YAML.replace("    voice: {language: en-gb, variant: m3, pitch: 35}",
                          "    voice: {language: en-gb, variant: m3, pitch: 35}\n    voices: {xx: {pitch: 20}}")
        + "languages: [xx]\n", encoding="utf-8")
    report = json.loads(run_cli("check", str(tiny_project), "--json").stdout)
    [err] = [e for e in report["errors"] if "cast bo: eSpeak NG has no voice for the dub language 'xx'" in e["message"]]
    assert err["line"] == 13 and "voices: {xx: {pitch: 20}}" in err["text"]
    (tiny_project / "glossary.yaml").write_text("Ann: Ana\n", encoding="utf-8")
    proc = run_cli("check", str(tiny_project))
    assert proc.returncode == 2 and "glossary.yaml:1" in proc.stderr and "Ann" in proc.stderr
    (tiny_project / "glossary.yaml").unlink()
    proc = run_cli("render", str(tiny_project), "--language", "fr")
    assert proc.returncode == 2 and "does not dub into it" in proc.stderr
    # the translator on OpenAI's own server without its key: `check` warns, a render refuses before any work
    (tiny_project / "project.yaml").write_text(TINY_YAML + "languages: [es]\n", encoding="utf-8")
    assert "OPENAI_API_KEY" not in os.environ
    report = json.loads(run_cli("check", str(tiny_project), "--json").stdout)
    assert any("needs an API key in $OPENAI_API_KEY" in w["message"] for w in report["warnings"])
    proc = run_cli("render", str(tiny_project))
    assert proc.returncode == 2 and "translator (gpt-4.1-mini) needs an API key" in proc.stderr
    assert not (tiny_project / "build" / "episodes").exists() or not list((tiny_project / "build" / "episodes").iterdir())


def test_a_dub_whose_translation_fails_is_reported_and_the_original_is_kept(tiny_project, server, monkeypatch):
    """The translator refuses (a bad request: not retried): the original episode is made, the dub is not,
    the render says why and exits 1; nothing half-written under the dub's name."""
    monkeypatch.setenv("DRAMAFORGE_TEST_OPENAI_KEY", "sk-test")
    _project(tiny_project, server)
    server.error(400, "The model 'chat-test' does not exist", code="model_not_found")
    proc = run_cli("render", str(tiny_project))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out, out[-3000:]
    assert "es not made" in out and "does not exist" in out and "a dub was not made" in out
    episodes = tiny_project / "build" / "episodes"
    assert (episodes / "ep01.mp4").is_file() and not list(episodes.glob("ep01.es.*"))
    assert len(server.requests) == 1
