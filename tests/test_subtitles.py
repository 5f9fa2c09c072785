import pysubs2
import pytest

from stages.core.fonts import missing_glyphs, pil_font
from stages.core.text import NO_START, wrap_text
from stages.make_subtitles import Cue, make_subtitles
from stages.schema import SubtitleStyle

FONT = pil_font(64)
SAFE = 1080 * 0.8


@pytest.mark.parametrize("text", [
    "我从来没有想过你会在这样一个下雨的夜晚回到这座城市还带着那封信，你到底想要什么？",  # 40 CJK, no spaces
    "Pneumonoultramicroscopicsilicovolcanoconiosisandthensomemorelettersforgoodmeasure",
    "I told you, 我们明天去 Shanghai 看看那个 project，好不好？OK！",
    "她说：“你好。”然后走了。",
])
def test_wrap_stays_inside_safe_width_with_kinsoku(text):
    lines = wrap_text(text, FONT, SAFE)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")  # nothing lost
    for ln in lines:
        assert FONT.getlength(ln) <= SAFE + 1, ln
    for ln in lines[1:]:
        assert ln[0] not in NO_START, f"line starts with closing punctuation: {ln!r}"
    assert len(lines[-1]) > 1 or len(lines) == 1, "orphan last character"


def test_english_breaks_at_spaces():
    lines = wrap_text("the quick brown fox jumps over the lazy dog and keeps on running far away", FONT, 500)
    assert len(lines) > 1
    words = set("the quick brown fox jumps over the lazy dog and keeps on running far away".split())
    for ln in lines:
        assert set(ln.split()) <= words


def test_srt_and_ass_written_with_play_res(tmp_path):
    cues = [Cue(0.5, 1.5, "Hello"), Cue(1.4, 2.0, "重叠的字幕不会重叠")]
    make_subtitles(cues, SubtitleStyle(), width=1080, height=1920, out_srt=tmp_path / "a.srt",
                   out_ass=tmp_path / "a.ass")
    ass = pysubs2.load(str(tmp_path / "a.ass"))
    assert ass.info["PlayResX"] == "1080" and ass.info["PlayResY"] == "1920"
    srt = pysubs2.load(str(tmp_path / "a.srt"), encoding="utf-8")
    assert srt[0].start == 500 and srt[1].start >= srt[0].end  # overlap removed
    assert "重叠" in (tmp_path / "a.srt").read_text(encoding="utf-8")
    vtt_text = (tmp_path / "a.vtt").read_text(encoding="utf-8")
    assert vtt_text.startswith("WEBVTT") and "00:00:00.500 --> 00:00:01.500" in vtt_text
    vtt = pysubs2.load(str(tmp_path / "a.vtt"), encoding="utf-8")
    assert [(e.start, e.end, e.text) for e in vtt] == [(e.start, e.end, e.text) for e in srt]


def test_font_covers_cjk_and_names_missing():
    assert missing_glyphs("你好 hello 未完待续") == []
    assert missing_glyphs("ok 😀") == ["😀"]


def test_english_wraps_balanced_with_no_word_alone():
    text = "She will come. She always comes when her son is in trouble."
    lines = wrap_text(text, FONT, SAFE)
    assert len(lines) == 3 and all(len(ln.split()) >= 2 for ln in lines), lines
    widths = [FONT.getlength(ln) for ln in lines]
    assert max(widths) - min(widths) < 0.35 * SAFE  # balanced, not a full line and a stub


@pytest.mark.parametrize("text", ["林晓端着汤走进来，看见母亲怔住了，手里的碗差点掉在地上。",
                                  "他说有东西要还给你，今晚十二点在天台见面，千万别迟到。", "好。"])
def test_chinese_breaks_between_words_and_keeps_names_whole(text):
    from stages.core.text import segment

    lines = wrap_text(text, FONT, SAFE * 0.6, words=["林晓"])
    assert "".join(lines) == text
    bounds = {sum(len(w) for w in segment(text, ["林晓"])[:k]) for k in range(len(text) + 1)}
    at = 0
    for ln in lines[:-1]:
        at += len(ln)
        assert at in bounds, (lines, segment(text, ["林晓"]))
    assert all(len([c for c in ln if c.isalnum()]) >= 2 or len(lines) == 1 for ln in lines), lines
    assert not any(ln[0] in NO_START for ln in lines), lines
    assert "林晓" in segment(text, ["林晓"]) or "林晓" not in text  # the name is one word, never split


def test_a_cue_moves_off_a_face_into_the_safe_area():
    from stages.make_subtitles import place

    face = (400, 1300, 700, 1600)  # a face low in the frame, behind the default band
    args = dict(width=1080, top=240, floor=1560)
    assert place(0, 1, 800, 130, [], **args) == 1560  # no face: the band
    moved = place(0, 1, 800, 130, [(0.5, 2, [face])], **args)
    assert moved - 130 > 240 and moved <= face[1] - 30  # above the face, inside the safe area
    assert place(3, 4, 800, 130, [(0.5, 2, [face])], **args) == 1560  # the face is not shown then
    assert place(0, 1, 200, 130, [(0.5, 2, [(0, 1300, 300, 1600)])], **args) == 1560  # beside, not under
    assert place(0, 1, 800, 130, [(0, 2, [(0, 200, 1080, 1600)])], **args) == 1560  # no room: the band


def test_markup_never_reaches_a_subtitle():
    from stages.make_subtitles import clean_markup

    assert clean_markup("^\nScrew retirement.") == "Screw retirement."
    assert clean_markup("Did you *hear* that? [[beat]]") == "Did you hear that?"
    assert clean_markup("...I don't know. f*ck.") == "...I don't know. f*ck."


ZH = ["林美推开门，看见陈大富坐在她父亲曾经坐过的那把椅子上，手里还拿着那份合同。", "是你？"]
EN = ["Lin Mei opens the door and sees Chen Dafu sitting in the chair her father once sat in, still "
      "holding the contract.", "You?"]


@pytest.mark.parametrize("size", [(1080, 1920), (720, 1280)])
@pytest.mark.parametrize("order", [("zh", "en"), ("en", "zh")])
def test_bilingual_cues_burn_both_languages_each_wrapped_by_its_rule_inside_the_safe_area(tmp_path, size, order):
    """`subtitles.bilingual`: the first language above, in its own ASS style; each wrapped by its own
    rule (Chinese between words, English at spaces); libass draws both inside the safe area, measured on
    black frames at 1080x1920 and at the 720 preset; each language has its own SRT."""
    import subprocess

    import numpy as np

    from stages.core.fonts import fonts_dir
    from stages.core.media import ffmpeg_exe

    w, h = size
    style = SubtitleStyle(bilingual=list(order))
    cues = [Cue(0.0, 1.0, ZH[0], "linmei"), Cue(1.0, 2.0, ZH[1], "chen")]
    make_subtitles(cues, style, width=w, height=h, out_srt=tmp_path / "ep01.srt", out_ass=tmp_path / "ep01.ass",
                   translated=EN, languages=("zh", "en"),
                   out_translated=(tmp_path / "ep01.en.srt", tmp_path / "ep01.en.vtt"))
    ass = pysubs2.load(str(tmp_path / "ep01.ass"))
    assert {f"L-{lang}" for lang in order} <= set(ass.styles)
    first, second = ass.styles[f"L-{order[0]}"], ass.styles[f"L-{order[1]}"]
    assert first.fontsize > second.fontsize
    for ev, zh, en in zip(ass.events, ZH, EN):
        assert ev.style == f"L-{order[0]}"
        top, bottom = ev.text.split(r"\N{\rL-%s}" % order[1])
        top_lines, bottom_lines = top.split(r"\N"), bottom.split(r"\N")
        words = {"zh": (zh, ""), "en": (en, " ")}
        for lang, lines in zip(order, (top_lines, bottom_lines)):
            text, glue = words[lang]
            assert glue.join(lines) == text  # nothing lost or added: English broken only at its spaces
            assert all(ln[:1] not in NO_START for ln in lines)
        if ev is ass.events[0]:
            assert len(top_lines) > 1 and len(bottom_lines) > 1  # both long lines wrapped
    srt = (tmp_path / "ep01.srt").read_text(encoding="utf-8")
    other = (tmp_path / "ep01.en.srt").read_text(encoding="utf-8")
    assert "是你？" in srt and "You?" not in srt and "You?" in other and "是你" not in other

    # burned on black by libass: every lit pixel inside the safe area (both lines of both cues)
    frames = subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", f"color=c=black:s={w}x{h}:r=2:d=2",
                             "-vf", f"subtitles=ep01.ass:fontsdir={fonts_dir()}", "-f", "rawvideo", "-pix_fmt",
                             "gray", "-"], cwd=tmp_path, capture_output=True, check=True).stdout
    k = w / 1080
    margin = w * (1 - style.safe_width) / 2 - style.outline_px * k  # the outline may reach past the text
    top_y, floor = style.margin_top_px * h / 1920, h - style.margin_bottom_px * h / 1920
    for frame in np.frombuffer(frames, dtype=np.uint8).reshape(-1, h, w)[[0, 2]]:
        ys, xs = np.nonzero(frame > 40)
        assert len(ys)
        assert xs.min() >= margin - 1 and xs.max() <= w - margin + 1, (xs.min(), xs.max(), margin)
        assert ys.min() >= top_y and ys.max() <= floor + style.outline_px * k + 1, (ys.min(), ys.max(), floor)
