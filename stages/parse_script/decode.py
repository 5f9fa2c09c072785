"""Step 1 of reading a script: bytes to text, or a refusal that says what the file is.

UTF-8 (with or without a BOM), UTF-16/UTF-32 with a BOM, and GB18030/Big5 when the bytes read as
Chinese; PDF, Word, RTF, Final Draft, HTML, zip and other binary files are refused with a fix hint.
"""

from __future__ import annotations

import codecs
import io
import zipfile

from stages.core.errors import InputError
from stages.schema import Warning_

FIX_EXPORT = ("export the script as Fountain (.fountain) or plain text (.txt), UTF-8: "
              "Final Draft: File > Export > Fountain; Word: Save As > Plain Text (UTF-8)")


# A few hundred of the most frequent Chinese characters, simplified and traditional. GB18030
# decodes almost any byte string, so "decodes cleanly" alone cannot tell GB18030 from Big5 or
# from a Latin-1 file; real Chinese text is dense in these characters, mojibake is not.
_COMMON_HAN = frozenset(
    "的一是不了人我在有他这這中大来來上个個们們到说說你她地出道也时時年得就那要下以生会會自着著"
    "去之过過家学學对對可里裡后後小么麼心多天而能好都然没沒日于於起还還发發成事只作当當想看文无無"
    "开開手用主行方又如前所本见見经經头頭面公同三已老从從动動两兩长長知样樣现現分将將外但身些与與"
    "高意进進把法此实實回二理美点點月明其种種声聲全工己话話儿兒者向情部正名定女问問力机機给給等几"
    "幾很业業最间間新什打便位因重被走电電四第门門相次东東海口使西再平真听聽世气氣信北少关關并内加"
    "化由却代军軍产產入先山五太水万萬市眼体體别別处處总總才场場师師书書比住员員九笑性通目华華报報"
    "立马馬命张張活难難神数數件安表原车車白应應路期叫死常提感金何更反合放做系计計或司利受光王果亲"
    "親界及今京务務制解各任至清物台象记記边邊共风風战戰干接它许許八特觉覺望直服毛林题題建南度统統"
    "色字请請交爱愛让讓认認算论論百吃义義科怎元社术術结結六功指思非流每青管夫连連远遠资資队隊跟带"
    "帶花快条條院变變联聯言权權往展该該领領传傳近留红紅治决決周保达達办辦运運半候七必城父强步完深"
    "区區即求品士转轉量空甚众眾技轻輕程告江语語英基满滿式李息写寫呢识識极極令黄德收脸臉钱錢倒未持"
    "取设設始版双雙历歷越史商千片容像找友孩站广廣改议議形委早房音火际際则則首单單据據导導影失拿网"
    "網香似专專石若兵弟谁誰校读讀志飞飛观觀争爭究包组組造落视視喜离離虽雖坐集编編谈談府拉黑且随隨"
    "格尽盡讲講杀殺怕母调調局根准团團段终終乐樂切级級克精哪官示冷吗嗎啊吧呀哥妈媽爸姐妹您谢謝起"
    "嗯哦喂呵哈嘿别別走快来來去吃喝睡门門窗桌椅客厅廳房间間办公室夜晨内外景集场場角色台詞词詞字幕"
)
# C0 controls that never occur in text files (tab, newlines, form feed and escape are allowed).
_CONTROL_BYTES = frozenset(set(range(9)) | set(range(0x0E, 0x1B)) | set(range(0x1C, 0x20)))


def _decode(data: bytes, file: str) -> tuple[str, list[Warning_]]:
    """Decode a script file's bytes, or refuse with what the file is and how to fix it."""
    _refuse_non_text(data, file)
    for bom, codec, name in ((codecs.BOM_UTF32_LE, "utf-32", "UTF-32"),
                             (codecs.BOM_UTF32_BE, "utf-32", "UTF-32"),
                             (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"),
                             (codecs.BOM_UTF16_BE, "utf-16", "UTF-16")):
        if data.startswith(bom):
            try:
                text = data.decode(codec)
            except UnicodeDecodeError as e:
                raise InputError(f"the file starts with a {name} byte-order mark but is not valid {name}",
                                 file=file, line=_byte_line(data, e.start), hint=FIX_EXPORT) from None
            _refuse_binary_text(text, file)
            return text, [_encoding_notice(file, name)]
    data = data.removeprefix(codecs.BOM_UTF8)
    _refuse_binary_bytes(data, file)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        guesses = _guess_cjk(data)
        if guesses:
            name, text = guesses[0]
            return text, [_encoding_notice(file, name)]
        raise InputError(
            f"not UTF-8: byte 0x{data[e.start]:02x} cannot be decoded, and the file is not "
            "UTF-16, GB18030 or Big5 either", file=file, line=_byte_line(data, e.start),
            hint="open it in a text editor and save it as UTF-8 (e.g. from Windows-1252 or Shift-JIS)",
        ) from None
    _refuse_binary_text(text, file)
    return text, []


def _encoding_notice(file: str, name: str) -> Warning_:
    return Warning_(file=file, line=1, message=(
        f"the file is encoded as {name}, not UTF-8; it was converted to Unicode "
        "(save it as UTF-8 to silence this notice)"))


def _guess_cjk(data: bytes) -> list[tuple[str, str]]:
    """Clean GB18030/Big5 decodings that read like Chinese, best first."""
    found: list[tuple[float, str, str]] = []
    for codec, name in (("gb18030", "GB18030"), ("big5", "Big5")):
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            continue
        if any(ord(c) < 32 and c not in "\t\n\r\f" for c in text):
            continue
        han = [c for c in text if "\u3400" <= c <= "\u9fff"]
        if not han:
            continue
        score = sum(c in _COMMON_HAN for c in han) / len(han)
        if score >= 0.2:
            found.append((score, name, text))
    found.sort(key=lambda t: -t[0])
    return [(name, text) for _, name, text in found]


def _byte_line(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _refuse_non_text(data: bytes, file: str) -> None:
    """Name the file type when the user handed us a document that is not plain text."""
    head = data[:4096]
    what = None
    if head.startswith(b"%PDF"):
        what = "a PDF document"
    elif head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        what = "a Word 97-2003 (.doc) or other old Office document"
    elif head.startswith(b"{\\rtf"):
        what = "an RTF document"
    elif head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        what = _describe_zip(data)
    else:
        probe = head.lstrip(codecs.BOM_UTF8).lstrip()
        probe16 = b""
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            probe16 = head.decode("utf-16", errors="ignore").encode("utf-8", errors="ignore")
        for p in (probe, probe16.lstrip()):
            if p.startswith(b"<") and b"<FinalDraft" in p[:2000]:
                what = "a Final Draft file (.fdx, XML `<FinalDraft`)"
            elif p[:200].lower().startswith((b"<!doctype html", b"<html")):
                what = "an HTML page"
    if what:
        raise InputError(f"this is {what}, not a script in plain text", file=file, line=None,
                         hint=FIX_EXPORT)


def _describe_zip(data: bytes) -> str:
    try:
        names = set(zipfile.ZipFile(io.BytesIO(data)).namelist())
    except (zipfile.BadZipFile, ValueError, OSError):
        return "a zip-based file (damaged)"
    if "word/document.xml" in names:
        return "a Word document (.docx, a zip file)"
    if "content.xml" in names:
        return "an OpenDocument file (.odt, a zip file)"
    if any(n.startswith("Index/") for n in names):
        return "an Apple Pages document (a zip file)"
    return "a zip archive"


def _refuse_binary_bytes(data: bytes, file: str) -> None:
    nul = data.find(b"\x00")
    if nul >= 0:
        # UTF-16 without a byte-order mark is NUL-heavy too, and guessing its byte order could
        # garble the script silently: name both possibilities instead.
        raise InputError(
            "binary data (NUL bytes): this is not a text file, or it is UTF-16 without a byte-order mark",
            file=file, line=_byte_line(data, nul), hint=FIX_EXPORT)
    sample = data[:8192]
    if sample and sum(b in _CONTROL_BYTES for b in sample) > max(8, len(sample) // 100):
        raise InputError("binary data (control bytes): this is not a text file", file=file,
                         line=None, hint=FIX_EXPORT)


def _refuse_binary_text(text: str, file: str) -> None:
    nul = text.find("\x00")
    if nul >= 0:
        raise InputError("binary data (NUL characters): this is not a text file", file=file,
                         line=text.count("\n", 0, nul) + 1, hint=FIX_EXPORT)
