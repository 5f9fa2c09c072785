"""What a few words say about a person: gender and age, in English and Chinese.

Read from a character's introduction (`MAYA (30s, red raincoat)`, `林晓（25岁，蓝色连衣裙，短发）`), the
words around it, a cast list, or a `description`. Casting picks voices from it, `check` compares it
with a voice, the animatic draws from it. Each reading says which words decided it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Gender = Literal["female", "male"]
Band = Literal["child", "teen", "young", "adult", "elder"]

# (pattern, weight): nouns and titles weigh 2, clothes and hair 1, a pronoun 1 each.
_FEMALE_EN = (r"woman|women|girl|lady|ladies|mother|mom|mommy|mum|grandmother|grandma|granny|wife|sister|"
              r"daughter|granddaughter|stepdaughter|stepmother|stepsister|aunt|auntie|niece|queen|princess|"
              r"waitress|actress|hostess|stewardess|widow|bride|"
              r"girlfriend|heroine|female|businesswoman|policewoman|landlady|nun|matriarch|mrs|ms|miss|madam|"
              r"ma'am|her majesty|duchess|empress|goddess|witch|diva|femme|she-")
_MALE_EN = (r"man|men|boy|guy|gentleman|father|dad|daddy|grandfather|grandpa|husband|brother|son|uncle|"
            r"grandson|stepson|stepfather|stepbrother|"
            r"nephew|king|prince|waiter|widower|groom|boyfriend|hero|male|businessman|policeman|landlord|"
            r"monk|patriarch|mr|sir|lord|duke|emperor|god|wizard|bloke|lad|fella|fellow")
_FEMALE_WEAK_EN = r"dress|skirt|gown|blouse|heels|lipstick|bikini|pigtails|braids|ponytail"
_MALE_WEAK_EN = r"beard|bearded|moustache|mustache|stubble|goatee|sideburns|bald"
_FEMALE_ZH = ("女|母|妈|媽|娘|姐|妹|姑|婆|嫂|奶|姨|婶|嬸|妻|太太|夫人|小姐|闺蜜|閨蜜|媳|千金|公主|皇后|妃|"
              "她(?!们|們)")
_MALE_ZH = ("男|父|爸|爹|哥|弟|叔|伯|爷|爺|公子|少爷|少爺|先生|丈夫|老公|儿子|兒子|兄|舅|王爷|王爺|皇帝|"
            "(?<!其)他(?!们|們)")
_FEMALE_WEAK_ZH = "裙|高跟|口红|口紅|马尾辫|馬尾辮|麻花辫|麻花辮"
_MALE_WEAK_ZH = "胡子|胡须|鬍|络腮胡|絡腮鬍|秃顶|禿頂|光头|光頭"
# A Chinese name that carries a title or kinship: 林母, 王总, 李姐, 陈叔.
_NAME_FEMALE_ZH = re.compile(r"(?:母|妈|媽|姐|妹|嫂|婆|奶|姨|婶|嬸|姑|娘|女|太太|小姐|女士|夫人)$|^(?:阿姨|奶奶|外婆)")
_NAME_MALE_ZH = re.compile(r"(?:父|爸|总|總|哥|弟|叔|伯|爷|爺|公|少|兄|舅|先生|老板|老闆)$")
_NAME_FEMALE_EN = re.compile(r"\b(?:MRS|MS|MISS|MADAM|MOM|MUM|MOMMY|MA|GRANDMA|GRANNY|AUNT|AUNTIE|SISTER|QUEEN|"
                             r"LADY|WAITRESS|NURSE|GIRL|WOMAN|MOTHER|DAUGHTER|WIFE|PRINCESS)\b\.?", re.IGNORECASE)
_NAME_MALE_EN = re.compile(r"\b(?:MR|SIR|DAD|PA|PAPA|GRANDPA|UNCLE|BROTHER|KING|LORD|FATHER|SON|HUSBAND|MAN|"
                           r"BOY|GUY|PRINCE|OLD MAN)\b\.?", re.IGNORECASE)


def _words(alternatives: str) -> re.Pattern:
    return re.compile(rf"(?<![A-Za-z])(?:{alternatives})(?![A-Za-z])", re.IGNORECASE)


_SIGNS: list[tuple[re.Pattern, str, int]] = [
    (_words(_FEMALE_EN), "female", 2), (_words(_MALE_EN), "male", 2),
    (_words(_FEMALE_WEAK_EN), "female", 1), (_words(_MALE_WEAK_EN), "male", 1),
    (re.compile(_FEMALE_ZH), "female", 2), (re.compile(_MALE_ZH), "male", 2),
    (re.compile(_FEMALE_WEAK_ZH), "female", 1), (re.compile(_MALE_WEAK_ZH), "male", 1),
]
_PRONOUNS = [(_words(r"she|her|hers|herself"), "female"), (_words(r"he|him|his|himself"), "male"),
             (re.compile("她(?!们|們)"), "female"), (re.compile("(?<!其)他(?!们|們)"), "male")]


@dataclass
class Reading:
    """Gender and age read from some text, and the words that decided each."""

    gender: Gender | None = None
    age: int | None = None
    gender_words: list[str] = field(default_factory=list)
    age_words: str = ""

    @property
    def band(self) -> Band | None:
        return band(self.age)


def band(age: int | None) -> Band | None:
    if age is None:
        return None
    return "child" if age < 13 else "teen" if age < 20 else "young" if age < 35 else "adult" if age < 55 else "elder"


def read_gender(texts: list[str], pronoun_texts: list[str] = (), name: str = "") -> tuple[Gender | None, list[str]]:
    """Female or male by the weight of the words in `texts` (introductions, a description), the
    pronouns in `pronoun_texts` (what follows a character's introduction) and a title in `name`."""
    score = {"female": 0, "male": 0}
    found: list[str] = []
    for rx in (_NAME_FEMALE_ZH, _NAME_FEMALE_EN):
        if m := rx.search(name):
            score["female"] += 3
            found.append(m.group(0))
    for rx in (_NAME_MALE_ZH, _NAME_MALE_EN):
        if m := rx.search(name):
            score["male"] += 3
            found.append(m.group(0))
    for text in texts:
        for rx, gender, weight in _SIGNS:
            for m in rx.finditer(text):
                score[gender] += weight
                found.append(m.group(0))
    for text in pronoun_texts:
        for rx, gender in _PRONOUNS:
            for m in rx.finditer(text):
                score[gender] += 1
                found.append(m.group(0))
    if score["female"] == score["male"]:
        return None, found
    return ("female" if score["female"] > score["male"] else "male"), found


_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_UNITS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}
_SMALL = {"ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
          "seventeen": 17, "eighteen": 18, "nineteen": 19, **_UNITS}
_DECADE_WORD = re.compile(r"\b(early|mid|late)?[- ]?(twenties|thirties|forties|fifties|sixties|seventies|eighties|"
                          r"nineties)\b", re.IGNORECASE)
_DECADE = re.compile(r"\b(early|mid|late)?[- ]?([1-9])0'?s\b", re.IGNORECASE)
_YEARS = re.compile(r"\b(\d{1,3})\s*(?:-?\s*years?[- ]old|-year-old|yrs? old|y/?o)\b", re.IGNORECASE)
_WORD_YEARS = re.compile(r"\b(?:(twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)(?:[- ](one|two|three|four|"
                         r"five|six|seven|eight|nine))?|(ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|"
                         r"eighteen|nineteen|one|two|three|four|five|six|seven|eight|nine))[- ]years?[- ]old\b",
                         re.IGNORECASE)
_AGE_OF = re.compile(r"\b(?:aged?|age)\s+(\d{1,3})\b", re.IGNORECASE)
_ZH_YEARS = re.compile(r"([0-9０-９〇零一二两三四五六七八九十百]+)\s*(多|出头|来)?\s*[岁歲]")
_BARE = re.compile(r"^\s*(\d{1,2})\s*$")
_STAGES = [  # (pattern, age): words for a time of life
    (re.compile(r"\b(?:baby|toddler|infant)\b", re.I), 2),
    (re.compile(r"\b(?:child|kid|little girl|little boy|schoolgirl|schoolboy)\b|小女孩|小男孩|孩子|儿童|兒童|小学生|小學生",
                re.I), 9),
    (re.compile(r"\b(?:teen|teens|teenage|teenager|adolescent|high[- ]school(?:er)?)\b|少年|少女|中学生|中學生|高中生",
                re.I), 16),
    (re.compile(r"\b(?:young|youthful|college|student|twentysomething)\b|年轻|年輕|青年|大学生|大學生", re.I), 25),
    (re.compile(r"\bmiddle[- ]aged\b|中年", re.I), 45),
    (re.compile(r"\bold[- ](?:man|woman|lady|men|women|timer|fisherman|sailor|couple)\b|\b(?:elderly|aged|aging|ageing|grandmother|grandfather|grandma|grandpa|granny|retired|"
                r"pensioner)\b|老人|老太|老头|老頭|老爷子|老爺子|白发苍苍|白髮蒼蒼|奶奶|爷爷|爺爺|外婆|外公|退休", re.I), 70),
]


def read_age(texts: list[str]) -> tuple[int | None, str]:
    """An age in years from the first text that tells one (a number before a time-of-life word)."""
    from stages.core.text import cn_number

    for text in texts:
        for rx in (_YEARS, _AGE_OF):
            if m := rx.search(text):
                return int(m.group(1)), m.group(0)
        if m := _WORD_YEARS.search(text):
            tens, unit, small = m.group(1), m.group(2), m.group(3)
            return (_TENS[tens.lower()] + _UNITS.get((unit or "").lower(), 0) if tens
                    else _SMALL[small.lower()]), m.group(0)
        if m := _ZH_YEARS.search(text):
            n = cn_number(m.group(1))
            return n + {"多": 5, "出头": 2, "来": 0}.get(m.group(2) or "", 0), m.group(0)
        for rx, decade in ((_DECADE, lambda g: int(g) * 10), (_DECADE_WORD, lambda g: _TENS[g.lower()[:-3] + "y"])):
            if m := rx.search(text):
                base = decade(m.group(2))
                return base + {"early": 2, "mid": 5, "late": 8}.get((m.group(1) or "mid").lower(), 5), m.group(0)
        for part in re.split(r"[,，、;；]", text):
            if m := _BARE.match(part):
                return int(m.group(1)), part.strip()
    for text in texts:
        for rx, age in _STAGES:
            if m := rx.search(text):
                return age, m.group(0)
    return None, ""


def read_person(texts: list[str], pronoun_texts: list[str] = (), name: str = "") -> Reading:
    gender, gender_words = read_gender(texts, pronoun_texts, name)
    age, age_words = read_age([name, *texts])
    return Reading(gender, age, gender_words, age_words)
