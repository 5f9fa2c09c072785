"""Who is on screen at each moment of a scene, read from the script: every planner, prompt and the
animatic use this one list.

Rules, in order of strength:
1. a line spoken on screen (no V.O., O.S., phone, 画外音 ...) or a wordless reaction puts its character
   on screen; a voice-over, off-screen or phone line is heard, not seen, and puts no one there;
2. an entrance in an action line (`MAYA walks in`, `门开了，林晓端着汤走进来`) brings its subject on
   at that beat, an exit (`leaves`, `离开`) takes them off after it; the subject is the name before the
   verb in the same sentence (or the first after it: `Enter MAYA`);
3. a character named in an action line is there, unless they speak only off screen in this scene and
   the sentence says how they are reached (a phone, a photo, a screen: `It's FRANK, calling from a pay phone`);
4. a character listed on the scene's `人物：` line is there unless (1-3) say otherwise.
A character whose first event in the scene is an entrance is off screen until it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from stages.parse_script.chinese import listed_names
from stages.schema import Scene, normalize_name

# Extensions that mean the speaker is not in the picture (V.O. also covers a phone call: it is heard).
_HEARD = re.compile(r"^(?:V\.?O\.?|O\.S\.?|O\.?C\.?|OFF|OFF[- ]?SCREEN|PHONE|ON (?:THE )?PHONE|OVER (?:THE )?PHONE|"
                    r"FILTERED|RADIO|ON RADIO|INTERCOM|ON SPEAKER|SPEAKERPHONE|TV|ON TV|VOICEMAIL|PRE-?LAP|"
                    r"VOICE|画外|画外音|電話|电话|旁白|广播|廣播|录音|錄音|语音|語音|视频|視頻)$", re.IGNORECASE)
# Chinese OS (内心, 心声) is the on-screen character's thoughts: it neither shows nor hides them.
_THOUGHTS = re.compile(r"^(?:OS|内心|内心独白|心声|心聲|独白|獨白|回忆|回憶)$", re.IGNORECASE)

_ENTER = re.compile(
    r"\b(?:enters|enter|walks in(?:to)?|walk in|comes in|come in|steps in|step in|bursts in|barges in|runs in|"
    r"rushes in|hurries in|storms in|slips in|strides in|wanders in|arrives|arrive|comes through the door|"
    r"walks through the door|emerges|returns|joins (?:him|her|them)|walks up)\b"
    r"|走进|走進|跑进|跑進|冲进|衝進|闯进|闖進|进来|進來|进门|進門|推门而入|推門而入|走来|走來|跑来|跑來|赶来|趕來|"
    r"走过来|走過來|跑过来|跑過來|来到|來到|走上|跑上|赶到|趕到|出现|出現|回来了|回來了",
    re.IGNORECASE)
_EXIT = re.compile(
    r"\b(?:exits|exit|leaves|leave|walks out|storms out|goes out|runs out|rushes out|hurries out|heads out|"
    r"slips out|disappears|is gone|departs|walks off|walks away|drives off|drives away)\b"
    r"|离开|離開|走出|跑出|冲出|衝出|出去|离去|離去|摔门而去|摔門而去|扬长而去|揚長而去|转身离开|轉身離開|消失|下楼|下樓",
    re.IGNORECASE)
# How someone is reached without being there: a mention in such a sentence is not presence.
_REMOTE = re.compile(
    r"\b(?:phone|phones|calls|calling|call|caller|line|voicemail|speaker|radio|screen|photo|photograph|"
    r"picture|portrait|video|message|text|texts|letter|tv|television|intercom|recording)\b"
    r"|电话|電話|手机|手機|来电|來電|视频|視頻|照片|相片|屏幕|短信|微信|语音|語音|录音|錄音|信上|画外|畫外",
    re.IGNORECASE)
_SENTENCE = re.compile(r"[^.!?。！？；;\n]+[.!?。！？；;]*")


def heard_only(extension: str | None, cue: str | None = None) -> bool:
    """A line with this extension is heard, not seen: V.O., O.S., phone, 画外音 ... A bare OS is
    off screen under a Latin cue (`BOB (OS)`), a thought under a Chinese one (`陈大富（OS）`)."""
    parts = [p.strip() for p in re.split(r"[,，/]", extension or "") if p.strip()]
    latin = not re.search(r"[\u3040-\u9fff]", cue or "")
    return any(_HEARD.match(p) or latin and cue is not None and p.upper() == "OS" for p in parts)


def lips_move(extension: str | None) -> bool:
    """Whether a line with this extension is said on screen: not heard from off it, not a thought (OS, 内心)."""
    return not heard_only(extension) and not _thoughts(extension)


def _thoughts(extension: str | None) -> bool:
    return any(_THOUGHTS.match(p.strip()) for p in re.split(r"[,，/]", extension or "") if p.strip())


@dataclass(frozen=True)
class Presence:
    """Per element of a scene: who is on screen as it starts, and anyone on screen during it (those
    entering or leaving in it included). `heard` are speakers only heard (V.O., a phone), never seen."""

    before: tuple[tuple[str, ...], ...]
    during: tuple[tuple[str, ...], ...]
    heard: frozenset[str]

    @property
    def at_start(self) -> tuple[str, ...]:
        return self.before[0] if self.before else ()

    def anywhere(self) -> tuple[str, ...]:
        """Everyone on screen at some moment of the scene, in order of appearance."""
        return tuple(dict.fromkeys(c for d in self.during for c in d))


def spellings(names: Mapping[str, str], cast: Iterable = ()) -> dict[str, set[str]]:
    """Character id -> every way the script may write them: the cue spelling, the cast's name and aliases."""
    out: dict[str, set[str]] = {cid: {name} for cid, name in names.items()}
    for c in cast:
        out.setdefault(c.id, set()).update([c.name, *c.aliases])
    return out


def name_pattern(names: Iterable[str]) -> re.Pattern | None:
    """Where a character is named in action text: a CJK name anywhere, a Latin one as a word written
    MAYA or Maya, never maya (a name that is also a common word: will, may, hope). Extensions and a
    forcing `@` are not part of the name."""
    forms: set[str] = set()
    for n in names:
        n = re.sub(r"\s*[(（][^)）]*[)）]\s*$", "", n.lstrip("@")).strip()
        if not n:
            continue
        if re.search(r"[\u3040-\u9fff]", n):
            forms.add(re.escape(n))
        else:
            forms.update(rf"(?<![\w'-]){re.escape(f)}(?![\w-])" for f in {n, n.upper(), n.title()})
    return re.compile("|".join(sorted(forms, key=len, reverse=True))) if forms else None


def _mention_patterns(spelled: Mapping[str, set[str]]) -> list[tuple[str, re.Pattern]]:
    return [(cid, rx) for cid, names in spelled.items() if (rx := name_pattern(names)) is not None]


def presence(scene: Scene, spelled: Mapping[str, set[str]]) -> Presence:
    """Who is on screen before and during each element of `scene` (see the module's rules)."""
    patterns = _mention_patterns(spelled)
    by_spelling = {normalize_name(n): cid for cid, names in spelled.items() for n in names}
    listed: list[str] = []
    on_screen_lines: set[str] = set()
    heard: set[str] = set()
    for el in scene.elements:
        if el.kind == "note" and (names := listed_names(el.text)):
            listed += [by_spelling.get(normalize_name(n), normalize_name(n)) for n, _ in names]
        elif el.kind in ("dialogue", "lyrics", "reaction") and el.character:
            if heard_only(el.extension, el.cue or ""):
                heard.add(el.character)
            elif not _thoughts(el.extension):  # a thought (OS, 内心) neither shows nor hides its speaker
                on_screen_lines.add(el.character)

    # What each element does to whom: "on" (there from here), "enter", "exit", or a mention.
    events: list[list[tuple[str, str]]] = []
    for el in scene.elements:
        ev: list[tuple[str, str]] = []
        if el.kind in ("dialogue", "lyrics") and el.character and el.character in on_screen_lines \
                and not heard_only(el.extension, el.cue or "") and not _thoughts(el.extension):
            ev.append((el.character, "on"))
        elif el.kind == "reaction" and el.character:
            ev.append((el.character, "on"))
        elif el.kind == "action":
            ev += _action_events(el.text, patterns, on_screen_lines)
        events.append(ev)

    first: dict[str, str] = {}
    for ev in events:
        for cid, what in ev:
            first.setdefault(cid, what)
    # 人物-listed characters heard only (a caller) and never seen in the action are not in the room
    start = [c for c in dict.fromkeys([*listed, *first])
             if first.get(c, "listed") in ("on", "mention", "exit", "listed")
             and not (c in heard and c not in on_screen_lines and first.get(c) is None)]
    here = list(start)
    before, during = [], []
    for ev in events:
        before.append(tuple(here))
        now = list(here)
        leaving = []
        for cid, what in ev:
            if what in ("on", "enter", "mention") and cid not in now:
                now.append(cid)
            elif what == "exit":
                if cid not in now:
                    now.append(cid)  # seen leaving
                leaving.append(cid)
        during.append(tuple(now))
        here = [c for c in now if c not in leaving]
    return Presence(tuple(before), tuple(during), frozenset(heard - on_screen_lines))


def _action_events(text: str, patterns: list[tuple[str, re.Pattern]], seen_speaking: set[str]
                   ) -> list[tuple[str, str]]:
    """(character, enter | exit | mention) for one action element, sentence by sentence."""
    out: list[tuple[str, str]] = []
    for sentence in _SENTENCE.findall(text):
        found = [(m.start(), m.end(), cid) for cid, rx in patterns for m in rx.finditer(sentence)]
        # a name inside a longer one is not a mention of its own; `林晓的妹妹小雨` is about 小雨
        found = [(a, b, cid) for a, b, cid in found if not any(x <= a and b <= y and (x, y) != (a, b)
                                                               for x, y, _ in found)]
        mentions = sorted((a, cid) for a, b, cid in found if not sentence.startswith("的", b))
        if not mentions:
            continue
        verbs = sorted([(m.start(), "enter") for m in _ENTER.finditer(sentence)]
                       + [(m.start(), "exit") for m in _EXIT.finditer(sentence)])
        subject_of: dict[int, str] = {}
        last = -1
        for pos, what in verbs:
            subjects = [i for i, (at, _) in enumerate(mentions) if last < at < pos]
            if not subjects:  # `Enter MAYA`, `In walks MAYA`
                subjects = [i for i, (at, _) in enumerate(mentions) if at > pos][:1]
            for i in subjects:
                subject_of[i] = what
            last = pos
        remote = bool(_REMOTE.search(sentence))
        for i, (_, cid) in enumerate(mentions):
            if i in subject_of:
                out.append((cid, subject_of[i]))
            elif not (remote and cid not in seen_speaking):
                out.append((cid, "mention"))
    return out


