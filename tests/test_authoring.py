"""Issue-level checks for authoring: `new` + `check` on a Chinese-layout script and on a two-episode
Fountain script that uses every element; bad input refused with exit 2 and nothing written."""

from __future__ import annotations

import json

from conftest import run_cli

CHINESE = """第1集：雨夜来客

1-1 夜 内 当铺
人物：林美、陈大富
△雨点敲打着玻璃，林美推门而入。
林美：（喘着气）我要当这个。
陈大富：这么晚了，你要当什么？
【字幕：三天前】
林美（OS）：他不知道，这是我父亲的东西。

第2集：旧船票

2-1 日 外 码头
△雾气弥漫，渡轮停在码头边。
陈大富：你来晚了。
陈大富（续）：我等了七年。
林美：七年？
"""

FOUNTAIN = """Title: Every Element
Author: Tests

# Episode 1: First

= The one where everything appears.

INT. HOUSE - DAY #1#

!SILENT ACTION IN CAPS
    Indented action keeps its indent.

[[close-up on the key]]

MARY
(whispering)
Did you *hear* that?

TOM (O.S.)
Hear what?

MARY ^
Nothing.

@McDUCK
Quack, _really_.

~Singing in the rain~

> THE END OF PART ONE <

CUT TO:

/* a cut scene that must vanish
TOM
Never said.
*/

===

# Episode 2: Second

EXT. GARDEN - NIGHT

MARY (CONT'D)
Still here.

## Act Two

.BACK OF THE SHED

TOM
Fine.

> FADE OUT.
"""


def _elements(root):
    proc = run_cli("plan", str(root), "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_new_and_check_on_chinese_layout(tmp_path):
    src = tmp_path / "剧本.txt"
    src.write_text(CHINESE, encoding="utf-8")
    dest = tmp_path / "雨夜"
    proc = run_cli("new", str(dest), "--from-script", str(src))
    assert proc.returncode == 0, proc.stderr
    cfg = (dest / "project.yaml").read_text(encoding="utf-8")
    assert "林美" in cfg and "陈大富" in cfg and "language: zh" in cfg and "cmn" in cfg
    data = json.loads(run_cli("check", str(dest), "--json").stdout)
    assert data["errors"] == []
    assert (data["episodes"], data["scenes"], data["lines"]) == (2, 2, 6)
    assert {c["name"] for c in data["characters"]} == {"林美", "陈大富"}  # 陈大富（续） is the same person
    plans = _elements(dest)
    said = [ln["text"] for p in plans for s in p["shots"] for ln in s["lines"]]
    assert "我要当这个。" in said and not any("字幕" in t or "三天前" in t for t in said)
    # 【字幕：三天前】 is an on-screen card over a clean shot of the place, not an action or a line
    assert any(s.get("card") == "三天前" and not s["action"] and not s["lines"] for s in plans[0]["shots"])


def test_new_and_check_on_two_episode_fountain_with_every_element(tmp_path):
    src = tmp_path / "every.fountain"
    src.write_text(FOUNTAIN, encoding="utf-8")
    dest = tmp_path / "every"
    assert run_cli("new", str(dest), "--from-script", str(src)).returncode == 0
    data = json.loads(run_cli("check", str(dest), "--json").stdout)
    assert data["errors"] == [] and data["episodes"] == 2 and data["scenes"] == 3
    names = {c["name"] for c in data["characters"]}
    assert {"MARY", "TOM", "McDUCK"} <= names and len(names) == 3  # MARY (CONT'D) is MARY
    said = [ln["text"] for p in _elements(dest) for s in p["shots"] for ln in s["lines"]]
    assert said == ["Did you hear that?", "Hear what?", "Nothing.", "Quack, really.", "Still here.", "Fine."]
    joined = " ".join(said)
    for never in ("whispering", "close-up on the key", "Never said", "one where everything", "Act Two"):
        assert never not in joined


def test_bad_scripts_refused_with_exit_2_and_nothing_written(tiny_project):
    cases = {
        "empty": b"   \n\n",
        "pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n",
        "unclosed boneyard": b"INT. A - DAY\n\nBOB\nHi.\n\n/* forgot to close\n\nBOB\nBye.\n",
        "no scene heading at all": b"BOB\nHello.\n\nShe leaves.\n",
    }
    for name, data in cases.items():
        (tiny_project / "script.fountain").write_bytes(data)
        for cmd in ("check", "render"):
            proc = run_cli(cmd, str(tiny_project))
            assert proc.returncode == 2, (name, cmd, proc.stderr)
            assert "script.fountain" in proc.stderr and "Traceback" not in proc.stderr, (name, proc.stderr)
        assert not (tiny_project / "build").exists(), name
