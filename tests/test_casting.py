"""Casting from the script: `new` reads each character's introduction into a description and a voice
of their gender and age, says what it could not tell, and `check` catches a voice that contradicts a
description. Voices are measured (median pitch), not assumed."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli
from parse_helpers import FIXTURES, parse
from stages.backends.base import SpeechRequest
from stages.backends.espeak import EspeakBackend
from stages.cast_characters import VOICES, CastingError, cast_characters, cast_with_llm, pick_voice
from stages.core.people import read_person
from stages.parse_script import parse_script
from test_plan_llm import FakeOpenAI
from test_voices import median_f0

SAID = {"en-us": "The last ferry left an hour ago, and nobody is waiting on the dock tonight.",
        "cmn": "最后一班渡轮一个小时前就开走了，今晚码头上没有人在等。"}


@pytest.mark.parametrize("chinese", [False, True], ids=["en-us", "cmn"])
def test_every_voice_in_the_table_sounds_its_gender(chinese, tmp_path):
    """Women's voices measure above 180 Hz and men's below 160, in English and in Mandarin (165 Hz
    is where listeners switch between hearing a woman and a man)."""
    espeak = EspeakBackend()
    for (gender, band), alternatives in VOICES.items():
        for n in range(len(alternatives)):
            v = pick_voice(gender, band, chinese, {(gender, band): n})
            out = tmp_path / f"{gender}-{band}-{n}.wav"
            espeak.synthesize(SpeechRequest(text=SAID[v["language"]], language=v["language"], variant=v["variant"],
                                            pitch=v["pitch"], speed_wpm=v["speed_wpm"]), out)
            f0 = median_f0(out)
            assert (f0 > 180) if gender == "female" else (f0 < 160), (v, gender, band, round(f0))


def _cast(path, chinese):
    return {c.name: c for c in cast_characters(parse_script(path), chinese=chinese)}


def test_the_fountain_fixture_is_cast_from_its_introductions():
    cast = _cast(FIXTURES / "night_shift.fountain", chinese=False)
    got = {n: (c.gender, c.band) for n, c in cast.items()}
    assert got == {"ROSA": ("female", "elder"), "FRANK": ("male", "adult"), "DANI": ("female", "young"),
                   "MARCUS": ("male", "adult"), "THEO": ("male", "teen")}
    assert cast["ROSA"].description == "a woman, 60s, silver hair in a bun, a pink waitress uniform"
    assert "grey beard" in cast["MARCUS"].description and "teenage boy" in cast["THEO"].description
    assert cast["FRANK"].read[0][1] == 10  # `her son FRANK (40s)`: the line it read
    assert {c.voice["variant"][0] for c in cast.values() if c.gender == "female"} == {"f"}
    assert {c.voice["variant"][0] for c in cast.values() if c.gender == "male"} == {"m"}
    assert len({(c.voice["variant"], c.voice["pitch"]) for c in cast.values()}) == len(cast)  # all distinct


def test_the_chinese_fixture_is_cast_from_its_bios_lists_and_action():
    cast = _cast(FIXTURES / "late_call_zh.txt", chinese=True)
    got = {n: (c.gender, c.age) for n, c in cast.items()}
    assert got == {"林母": ("female", 58), "林晓": ("female", 25), "陈默": ("male", 30), "王总": ("male", 50),
                   "小雨": ("female", 16)}
    assert cast["林晓"].description == "女，25岁，蓝色连衣裙，短发"  # 林晓（25岁，蓝色连衣裙，短发）
    assert "林晓的母亲" in cast["林母"].description and "灰白短发" in cast["林母"].description  # bio + intro
    assert cast["小雨"].read[0][2].startswith("△林晓的妹妹小雨") or "妹妹" in cast["小雨"].read[0][2]
    assert all(c.voice["language"] == "cmn" for c in cast.values())


@pytest.mark.parametrize(("text", "gender", "age"), [
    ("INT. A - DAY\n\nJACK, a gruff fisherman in his fifties, mends a net.\n\nJACK\nHi.\n", "male", 55),
    ("INT. A - DAY\n\nHer grandson LEO (8) draws.\n\nLEO\nHi.\n", "male", 8),
    ("INT. A - DAY\n\nMRS. CHEN waits.\n\nMRS. CHEN\nHi.\n", "female", None),
    ("INT. A - DAY\n\nSAM stares at the sea. She does not move.\n\nSAM\nHi.\n", "female", None),
    ("INT. A - DAY\n\nKIT (early 30s) shrugs.\n\nKIT\nHi.\n", None, 32),
    ("INT. A - DAY\n\nA twenty-five-year-old nurse, ANA (twenty-five years old, ponytail), runs.\n\nANA\nHi.\n",
     "female", 25),
])
def test_english_introductions(text, gender, age):
    (c,) = cast_characters(parse(text), chinese=False)
    assert (c.gender, c.age) == (gender, age)


def test_what_cannot_be_told_is_said_per_character_with_the_line_read():
    from stages.cast_characters import casting_report

    report = casting_report(cast_characters(parse("INT. A - DAY\n\nKIT (early 30s) shrugs.\n\nKIT\nHi.\n"),
                                            chinese=False))
    assert report[0].startswith("KIT: gender unknown, 32 (young)")
    assert "could not tell KIT's gender; the script says: 'KIT (early 30s) shrugs.'" in report[1]


def test_people_words():
    assert read_person(["女，58岁"]).band == "elder" and read_person(["五十多岁"]).age == 55
    assert read_person(["in her late twenties"]).age == 28 and read_person(["a 17-year-old"]).band == "teen"
    assert read_person([], name="王总").gender == "male" and read_person([], name="林母").gender == "female"
    assert read_person(["其他人都走了"]).gender is None  # 其他 is not 他


def test_check_warns_when_a_voice_contradicts_the_description(tiny_project):
    yaml = tiny_project / "project.yaml"
    yaml.write_text(yaml.read_text().replace("variant: f2", "variant: m3"), encoding="utf-8")  # ANN: a woman
    data = json.loads(run_cli("check", str(tiny_project), "--json").stdout)
    (w,) = [w for w in data["warnings"] if "voice" in w["message"] and "ann" in w["message"]]
    lines = yaml.read_text().splitlines()
    assert "variant: m3" in lines[w["line"] - 1] and "says a woman" in w["message"] and "f2" in w["message"]


def test_new_reads_the_cast_and_says_what_it_read(tmp_path):
    src = tmp_path / "night.fountain"
    src.write_bytes((FIXTURES / "night_shift.fountain").read_bytes())
    proc = run_cli("new", str(tmp_path / "p"), "--from-script", str(src))
    assert proc.returncode == 0, proc.stderr
    assert "ROSA: female, 65 (elder); voice en-us f1" in proc.stderr and f"{src}:8" in proc.stderr
    cfg = (tmp_path / "p" / "project.yaml").read_text(encoding="utf-8")
    assert "silver hair in a bun" in cfg and "DESCRIBE ME:" not in cfg and "music/bed.ogg" in cfg
    from stages.core.media import probe

    assert probe(tmp_path / "p" / "music" / "bed.ogg").duration_s > 20  # an original bed, made for it
    warnings = [w["message"] for w in json.loads(run_cli("check", str(tmp_path / "p"), "--json").stdout)["warnings"]]
    acting = [w for w in warnings if "espeak takes no acting notes" in w]  # eSpeak cannot act a parenthetical
    assert acting and len(acting) == len(warnings), warnings  # and nothing else


def test_new_prints_the_warnings_check_would(tmp_path):
    src = tmp_path / "gb.txt"
    src.write_bytes((FIXTURES / "late_call_zh.txt").read_text(encoding="utf-8").encode("gb18030"))
    proc = run_cli("new", str(tmp_path / "p"), "--from-script", str(src))
    assert proc.returncode == 0, proc.stderr
    assert "GB18030" in proc.stderr and "林晓: female, 25 (young); voice cmn f2" in proc.stderr


def _answer(ids_gender):
    return {"characters": [{"id": i, "gender": g, "age": 30, "description": "a person, 30",
                            "quote": q} for i, g, q in ids_gender]}


def test_llm_casting_is_validated_and_repaired():
    fake = FakeOpenAI()
    try:
        script = parse("INT. A - DAY\n\nKIT (early 30s) shrugs.\n\nKIT\nHi.\n\nBO\nHey.\n")
        cast = cast_characters(script, chinese=False)
        fake.answer(json.dumps(_answer([("kit", "female", "KIT was a dancer")])))  # BO missing, quote invented
        fake.answer(json.dumps(_answer([("kit", "female", "KIT (early 30s) shrugs."), ("bo", "unknown", "")])))
        got = cast_with_llm(script, cast, chinese=False, model="m", base_url=f"http://127.0.0.1:{fake.port}/v1",
                            api_key_env="NO_SUCH_KEY")
        assert [(c.name, c.gender, c.told_by) for c in got] == [("KIT", "female", "llm"), ("BO", None, "llm")]
        assert got[0].voice["variant"].startswith("f")
        repair = fake.requests[1]["body"]["messages"][-1]["content"]
        assert "'bo' must appear exactly once" in repair and "is not in the script" in repair
        assert fake.requests[0]["body"]["response_format"]["type"] == "json_schema"
        for _ in range(3):
            fake.answer(json.dumps(_answer([("kit", "female", "")])))
        with pytest.raises(CastingError) as err:
            cast_with_llm(script, cast, chinese=False, model="m", base_url=f"http://127.0.0.1:{fake.port}/v1",
                          api_key_env="NO_SUCH_KEY")
        assert "after 2 repair round(s)" in err.value.message
    finally:
        fake.server.shutdown()


def test_new_with_an_llm_writes_its_planner_and_its_cast(tmp_path):
    fake = FakeOpenAI()
    try:
        src = tmp_path / "s.fountain"
        src.write_text("INT. A - DAY\n\nKIT (early 30s) shrugs.\n\nKIT\nHi.\n", encoding="utf-8")
        fake.answer(json.dumps({"characters": [{"id": "kit", "gender": "male", "age": 33, "description":
                                                "a man in his early thirties", "quote": "KIT (early 30s) shrugs."}]}))
        proc = run_cli("new", str(tmp_path / "p"), "--from-script", str(src), "--llm", "m",
                       "--base-url", f"http://127.0.0.1:{fake.port}/v1")
        assert proc.returncode == 0, proc.stderr
        cfg = (tmp_path / "p" / "project.yaml").read_text(encoding="utf-8")
        assert "a man in his early thirties" in cfg and "kind: llm" in cfg and "variant: m" in cfg
    finally:
        fake.server.shutdown()
