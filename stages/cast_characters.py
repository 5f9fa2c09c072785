"""A script -> its cast as the script describes it: each character's look and voice, and what could not
be told.

Read, for every character, in this order: a cast list before the first scene (`林晓：女，25岁，外卖员`,
`MAYA — 30s, a detective`), the scene's `人物：` line (`林晓（25岁，短发）`), and their introduction in an
action line (`MAYA (30s, red raincoat)`, `JACK, a fisherman in his fifties,`), with the role word before
the name (`her son FRANK`, `林晓的妹妹小雨`), the pronouns that follow it, and a title in the name (林母,
王总, MRS. CHEN). The introduction becomes the `description`; gender and age band pick an eSpeak voice
that sounds it (measured: women above 165 Hz, men below). With `planner: llm` the model reads the same
lines instead, and its answer is checked against the script.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from stages.core.errors import RenderError
from stages.core.people import Band, Gender, band, read_person
from stages.parse_script.chinese import listed_names
from stages.presence import name_pattern, spellings
from stages.schema import Element, Script, normalize_name

DESCRIBE = "DESCRIBE ME:"  # `check` warns while a description still starts with this

# eSpeak NG voices by gender and age band: (variant, pitch, words per minute), alternatives for a
# second and third character of the same kind. Measured (tests/test_casting.py): every woman's median
# pitch above 180 Hz, every man's below 150 Hz, in English and in Mandarin.
VOICES: dict[tuple[Gender, Band], list[tuple[str, int, int]]] = {
    ("female", "child"): [("f5", 88, 175), ("f3", 86, 170)],
    ("female", "teen"): [("f3", 78, 175), ("f5", 76, 170)],
    ("female", "young"): [("f2", 70, 170), ("f3", 66, 165), ("f5", 68, 170)],
    ("female", "adult"): [("f4", 64, 160), ("f1", 66, 160), ("f2", 62, 155)],
    ("female", "elder"): [("f1", 62, 140), ("f4", 60, 135)],
    ("male", "child"): [("m1", 88, 175), ("m2", 80, 170)],
    ("male", "teen"): [("m1", 76, 175), ("m2", 72, 170)],
    ("male", "young"): [("m3", 52, 165), ("m1", 56, 170), ("m7", 50, 165)],
    ("male", "adult"): [("m7", 40, 155), ("m3", 36, 150), ("m4", 46, 155)],
    ("male", "elder"): [("m2", 30, 135), ("m7", 26, 130)],
}
_LOWER_LANGUAGES = ("cmn", "yue", "zh")  # eSpeak's Mandarin sits about 10 pitch steps lower: lift women's voices
FEMALE_VARIANTS = frozenset({"f1", "f2", "f3", "f4", "f5", "grandma", "aunty", "linda", "belinda", "alicia",
                             "andrea", "anika", "anikarobot"})
MALE_VARIANTS = frozenset({"m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "grandpa", "adam", "edward", "john",
                           "max", "michel", "ian", "david", "mike", "michael", "boris", "benjamin", "gustave",
                           "norbert", "caleb", "alex", "andy", "hugo", "marco", "mario", "miguel", "antonio"})


@dataclass
class Casting:
    """One character as the script introduces them, and the voice that suits them."""

    id: str  # as the script parser names them
    name: str
    gender: Gender | None
    age: int | None
    description: str  # what the script says they look like ("" if it says nothing)
    read: list[tuple[str, int, str]] = field(default_factory=list)  # (file, line, text) the reading came from
    voice: dict = field(default_factory=dict)
    told_by: str = "script"  # "script" (these rules) or "llm"

    @property
    def band(self) -> Band | None:
        return band(self.age)

    def unknown(self) -> list[str]:
        return [what for what, v in (("gender", self.gender), ("age", self.age)) if v is None]

    def summary(self) -> str:
        """`woman, 60s (elder); voice en-us f1 pitch 62` with what could not be told."""
        who = {"female": "female", "male": "male", None: "gender unknown"}[self.gender]
        age = f"{self.age} ({self.band})" if self.age is not None else "age unknown"
        v = self.voice
        return f"{who}, {age}; voice {v['language']} {v['variant']} pitch {v['pitch']}"


def cast_characters(script: Script, *, chinese: bool) -> list[Casting]:
    """Every character in `script`, read by the rules, each with a voice (eSpeak NG)."""
    spelled = spellings(script.characters)
    out = []
    taken: dict[tuple, int] = {}
    for cid, name in script.characters.items():
        intros, roles, around, read = _introductions(script, cid, spelled)
        reading = read_person(intros + roles, around, name)
        c = Casting(cid, name, reading.gender, reading.age, _describe(intros, reading.gender, reading.band, chinese), read)
        c.voice = pick_voice(c.gender, c.band, chinese, taken)
        out.append(c)
    return out


def pick_voice(gender: Gender | None, age_band: Band | None, chinese: bool, taken: dict[tuple, int]) -> dict:
    """A voice of the gender and age band, the next alternative each time one kind is asked for again.
    Unknown gender alternates women's and men's voices; unknown age is young."""
    unknown = taken.setdefault(("unknown",), 0)
    if gender is None:
        gender = "female" if unknown % 2 == 0 else "male"
        taken[("unknown",)] = unknown + 1
    kind = (gender, age_band or "young")
    n = taken.get(kind, 0)
    taken[kind] = n + 1
    variant, pitch, wpm = VOICES[kind][n % len(VOICES[kind])]
    language = "cmn" if chinese else "en-us"
    if chinese and gender == "female":
        pitch = min(99, pitch + 10)
    return {"language": language, "variant": variant, "pitch": pitch, "speed_wpm": wpm}


def voice_gender(voice) -> Gender | None:
    """The gender a character's voice sounds (eSpeak variants; OpenAI's named voices), if it tells."""
    engine = voice.backend or "espeak"
    if engine == "espeak":
        variant = (voice.variant or "").lower()
        if variant in FEMALE_VARIANTS:
            return "female"
        if variant in MALE_VARIANTS or not variant:  # eSpeak's default voice is a man's
            return "male"
    if engine == "openai" and voice.voice:
        return {"coral": "female", "nova": "female", "shimmer": "female", "sage": "female", "marin": "female",
                "ash": "male", "ballad": "male", "echo": "male", "onyx": "male", "verse": "male",
                "cedar": "male"}.get(voice.voice.lower())
    return None


# --- where a character is introduced ----------------------------------------------------------

_PAREN_AFTER = re.compile(r"\s*[（(]([^（()）]{1,200})[）)]")
_APPOSITIVE = re.compile(r",\s*((?:an?|the|early|mid|late|[0-9]|twenty|thirty|forty|fifty|sixty|seventy|eighty|"
                         r"ninety|young|old|elderly|middle-aged|teenage)\b[^,.;:!?]{1,120}?)\s*(?:,|\.|;|$)",
                         re.IGNORECASE)
_ROLE_BEFORE_EN = re.compile(r"(?:\b(?:her|his|their|my|our|the|a|an)\s+)?((?:[a-z-]+\s+){0,2})$", re.IGNORECASE)
_ROLE_BEFORE_ZH = re.compile(r"(?:的)?([\u4e00-\u9fff]{1,4})$")
_BIO = re.compile(r"^\s*(?P<name>[^\s:：,，（(—–-][^:：,，（(—–]{0,20}?)\s*(?:[（(](?P<paren>[^）)]*)[）)])?\s*"
                  r"(?:[:：,，]|\s[—–-]\s)\s*(?P<bio>.+)$")


def _introductions(script: Script, cid: str, spelled: dict[str, set[str]]
                   ) -> tuple[list[str], list[str], list[str], list[tuple[str, int, str]]]:
    """(introductions, role words before the name, text after them for pronouns, the lines they came
    from) for one character."""
    names = {normalize_name(n) for n in spelled[cid]}
    named = name_pattern(spelled[cid])
    others = name_pattern([n for other, ns in spelled.items() if other != cid for n in ns])
    intros: list[str] = []
    roles: list[str] = []
    around: list[str] = []
    read: list[tuple[str, int, str]] = []

    def note(el: Element, line_text: str) -> None:
        if (el.file, el.line, line_text) not in read:
            read.append((el.file, el.line, line_text.strip()[:160]))

    for el in script.front_matter:  # a cast list: one character a line
        for line in el.text.split("\n"):
            m = _BIO.match(line)
            if m and normalize_name(m.group("name")) in names:
                intros += [t for t in (m.group("paren"), m.group("bio")) if t]
                note(el, line)
    seen_in_action = 0
    for ep in script.episodes:
        for sc in ep.scenes:
            for el in sc.elements:
                if el.kind == "note" and (listed := listed_names(el.text)):
                    for n, intro in listed:
                        if intro and normalize_name(n) in names:
                            intros.append(intro)
                            note(el, el.text)
                elif el.kind == "action" and seen_in_action < 3:
                    for m in named.finditer(el.text) if named else ():
                        pos, end = m.span()
                        seen_in_action += 1
                        found = _intro_at(el.text, end)
                        role = _role_before(el.text, pos)
                        if found or role:
                            intros += [found] if found else []
                            roles += [role] if role else []
                            around.append(_after(el.text, end, others))
                            note(el, el.text)
                        elif seen_in_action == 1:
                            around.append(_after(el.text, end, others))
                        break
    return intros, roles, around, read


def _intro_at(text: str, end: int) -> str | None:
    """`(30s, red raincoat)` or `, a fisherman in his fifties,` right after a name."""
    if m := _PAREN_AFTER.match(text, end):
        return m.group(1).strip()
    if m := _APPOSITIVE.match(text, end):
        return m.group(1).strip()
    return None


_ROLE_WORDS = re.compile(r"(?<![A-Za-z])(?:son|daughter|mother|father|mom|dad|sister|brother|wife|husband|"
                         r"grandson|granddaughter|grandmother|grandfather|aunt|uncle|niece|nephew|girlfriend|"
                         r"boyfriend|fiancée?|widow|widower|boss|assistant|partner|friend)(?![A-Za-z])"
                         r"|妹妹|姐姐|哥哥|弟弟|母亲|母親|父亲|父親|妈妈|媽媽|爸爸|女儿|女兒|儿子|兒子|妻子|丈夫|老公|老婆|"
                         r"男友|女友|男朋友|女朋友|前男友|前女友|奶奶|爷爷|爺爺|外婆|外公|闺蜜|閨蜜|助理|秘书|秘書", re.I)


def _role_before(text: str, pos: int) -> str | None:
    """The kinship or role noun right before a name: `her son FRANK` -> son, `林晓的妹妹小雨` -> 妹妹."""
    head = text[max(0, pos - 24):pos]
    m = (_ROLE_BEFORE_ZH if re.search(r"[\u4e00-\u9fff]$", head) else _ROLE_BEFORE_EN).search(head)
    if not m:
        return None
    words = _ROLE_WORDS.findall(m.group(1) or m.group(0))
    return words[-1] if words else None


def _after(text: str, end: int, others: re.Pattern | None) -> str:
    """The text after a name up to the next other character (what its pronouns refer to)."""
    rest = text[end:]
    m = others.search(rest) if others else None
    return rest[:m.start()] if m else rest


def _describe(intros: list[str], gender: Gender | None, age_band: Band | None, chinese: bool) -> str:
    """The introductions, with the gender said first where the words do not already say it."""
    texts = list(dict.fromkeys(t.strip(" ,，。.;；") for t in intros if t.strip(" ,，。.;；")))
    if not texts:
        return ""
    joined = ("，" if chinese else ", ").join(texts)
    if chinese:
        word = {"female": "女", "male": "男", None: ""}[gender]
        return f"{word}，{joined}" if word and word not in joined else joined
    word = {"female": "a woman", "male": "a man", None: ""}[gender]
    if gender and age_band in ("child", "teen"):
        word = ("a teenage " if age_band == "teen" else "a ") + ("girl" if gender == "female" else "boy")
    lead = re.search(r"\b(woman|man|girl|boy|lady|guy|gentleman|mother|father|wife|husband)\b", joined, re.I)
    return f"{word}, {joined}" if word and not lead else joined


# --- the same reading from an LLM, checked --------------------------------------------------------

class CastingError(RenderError):
    """The LLM could not cast the script (after its repair rounds)."""


CAST_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["characters"],
    "properties": {"characters": {"type": "array", "items": {
        "type": "object", "additionalProperties": False,
        "required": ["id", "gender", "age", "description", "quote"],
        "properties": {"id": {"type": "string"}, "gender": {"type": "string", "enum": ["female", "male", "unknown"]},
                       "age": {"type": ["integer", "null"]}, "description": {"type": "string"},
                       "quote": {"type": "string"}}}}},
}


def cast_with_llm(script: Script, castings: list[Casting], *, chinese: bool, model: str, base_url: str | None,
                  api_key_env: str, project_dir: Path | None = None, max_repairs: int = 2, client=None,
                  timeout_s: float = 120) -> list[Casting]:
    """Ask an OpenAI-compatible model for each character's gender, age and look, quoting the script line
    it read them from; the answer is validated (every character once, a quote that is in the script)."""
    from stages.backends._openai import ask_json, openai_client
    from stages.core.prompts import render_template

    lines = _script_lines(script)
    people = [{"id": c.id, "name": c.name, "read": [t for _, _, t in c.read]} for c in castings]
    msgs = [{"role": "system", "content": render_template("cast.system.j2", project_dir)},
            {"role": "user", "content": render_template("cast.user.j2", project_dir, people=people,
                                                        lines=lines[:400])}]
    text = "\n".join(lines)
    ids = [c.id for c in castings]

    def problems(answer: dict) -> list[str]:
        got = answer.get("characters")
        if not isinstance(got, list):
            return ["`characters` must be an array"]
        out = []
        answered = [a.get("id") for a in got]
        for cid in ids:
            if answered.count(cid) != 1:
                out.append(f"character {cid!r} must appear exactly once (it appears {answered.count(cid)} times)")
        for a in got:
            who = a.get("id")
            if who not in ids:
                out.append(f"{who!r} is not a character id ({', '.join(ids)})")
            if not isinstance(a.get("age"), (int, type(None))) or (a.get("age") is not None and not 0 < a["age"] < 120):
                out.append(f"{who}: age must be a whole number of years, or null when the script does not say")
            if not (a.get("description") or "").strip() or len(a.get("description", "")) > 300:
                out.append(f"{who}: description must say what the script says of their look, in at most 300 characters")
            quote = (a.get("quote") or "").strip()
            if quote and quote not in text:
                out.append(f"{who}: the quote {quote[:60]!r} is not in the script; quote a line exactly, or leave it empty")
        return out

    client = client or openai_client(api_key_env, base_url, timeout_s, what="the casting model",
                                     setting="--base-url")
    answer = ask_json(client, model=model, messages=msgs, schema=CAST_SCHEMA, name="cast", validate=problems,
                      max_repairs=max_repairs, error=CastingError, what="the casting model",
                      fix="try another model, or cast by the script's own words (leave out --llm)")
    taken: dict[tuple, int] = {}
    by_id = {a["id"]: a for a in answer["characters"]}
    out = []
    for c in castings:
        a = by_id[c.id]
        gender = None if a["gender"] == "unknown" else a["gender"]
        quote = (a.get("quote") or "").strip()
        read = [(f, n, t) for f, n, t in c.read] if not quote else [("(quoted by the model)", 0, quote)]
        cast = Casting(c.id, c.name, gender, a["age"], a["description"].strip(), read, told_by="llm")
        cast.voice = pick_voice(cast.gender, cast.band, chinese, taken)
        out.append(cast)
    return out


def _script_lines(script: Script) -> list[str]:
    """Every line of text a reader of the script sees, cast list first (what a quote must come from)."""
    out = [ln for el in script.front_matter for ln in el.text.split("\n") if ln.strip()]
    for ep in script.episodes:
        for sc in ep.scenes:
            out.append(sc.heading)
            for el in sc.elements:
                who = f"{el.cue}: " if el.kind in ("dialogue", "reaction") and el.cue else ""
                out += [who + ln for ln in el.text.split("\n") if ln.strip()]
    return out


def casting_report(castings: list[Casting]) -> list[str]:
    """One line per character for `new` to print: what was read, from where, and what was not."""
    out = []
    for c in castings:
        where = f" (read {c.read[0][0]}:{c.read[0][1]})" if c.read and c.read[0][1] else \
            " (the model's reading)" if c.told_by == "llm" else ""
        out.append(f"{c.name}: {c.summary()}{where}")
        for what in c.unknown():
            said = f"; the script says: {c.read[0][2]!r}" if c.read else "; the script introduces them nowhere"
            out.append(f"  could not tell {c.name}'s {what}{said}; set it in project.yaml "
                       f"({'description and voice' if what == 'gender' else 'description'})")
    return out
