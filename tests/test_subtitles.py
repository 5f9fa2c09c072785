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
