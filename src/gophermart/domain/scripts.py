"""Which script a character is written in (Unicode's Script property), for the one rule
that needs it: a login must not mix scripts (:mod:`gophermart.domain.users`).

Python's ``unicodedata`` has no Script property, so the table below carries it: every
range of code points that belongs to a script, Common and Inherited (punctuation,
digits, combining marks: they go with any script) left out. It is generated from
Unicode's ``Scripts.txt`` by ``tools/unicode_scripts.py`` (Scripts-15.0.0.txt; Debian's
``unicode-data`` package has the file); a code point missing from it is Common,
Inherited or unassigned, and unassigned ones never reach it (``Login`` refuses what
``str.isprintable`` does not accept).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Final

#: Scripts that one writing system uses together (UTS #39, "Highly Restrictive"): a
#: Japanese, Chinese or Korean login may mix them, and Latin, and nothing else.
TOGETHER: Final = (
    frozenset({"Latin", "Han", "Hiragana", "Katakana"}),
    frozenset({"Latin", "Han", "Bopomofo"}),
    frozenset({"Latin", "Han", "Hangul"}),
)

_TABLE: Final = """
Adlam 1E900-1E95F
Ahom 11700-11746
Anatolian_Hieroglyphs 14400-14646
Arabic 600-604 606-60B 60D-61A 61C-61E 620-63F 641-64A 656-66F 671-6DC 6DE-6FF 750-77F
Arabic 870-8E1 8E3-8FF FB50-FD3D FD40-FDFF FE70-FEFC 10E60-10E7E 10EFD-10EFF 1EE00-1EEF1
Armenian 531-58F FB13-FB17
Avestan 10B00-10B3F
Balinese 1B00-1B7E
Bamum A6A0-A6F7 16800-16A38
Bassa_Vah 16AD0-16AF5
Batak 1BC0-1BFF
Bengali 980-9FE
Bhaiksuki 11C00-11C6C
Bopomofo 2EA-2EB 3105-312F 31A0-31BF
Brahmi 11000-1107F
Braille 2800-28FF
Buginese 1A00-1A1F
Buhid 1740-1753
Canadian_Aboriginal 1400-167F 18B0-18F5 11AB0-11ABF
Carian 102A0-102D0
Caucasian_Albanian 10530-1056F
Chakma 11100-11147
Cham AA00-AA5F
Cherokee 13A0-13FD AB70-ABBF
Chorasmian 10FB0-10FCB
Coptic 3E2-3EF 2C80-2CFF
Cuneiform 12000-12543
Cypriot 10800-1083F
Cypro_Minoan 12F90-12FF2
Cyrillic 400-484 487-52F 1C80-1C88 1D2B 1D78 2DE0-2DFF A640-A69F FE2E-FE2F 1E030-1E08F
Deseret 10400-1044F
Devanagari 900-950 955-963 966-97F A8E0-A8FF 11B00-11B09
Dives_Akuru 11900-11959
Dogra 11800-1183B
Duployan 1BC00-1BC9F
Egyptian_Hieroglyphs 13000-13455
Elbasan 10500-10527
Elymaic 10FE0-10FF6
Ethiopic 1200-1399 2D80-2DDE AB01-AB2E 1E7E0-1E7FE
Georgian 10A0-10FA 10FC-10FF 1C90-1CBF 2D00-2D2D
Glagolitic 2C00-2C5F 1E000-1E02A
Gothic 10330-1034A
Grantha 11300-11339 1133C-11374
Greek 370-373 375-37D 37F-384 386 388-3E1 3F0-3FF 1D26-1D2A 1D5D-1D61 1D66-1D6A 1DBF
Greek 1F00-1FFE 2126 AB65 10140-1018E 101A0 1D200-1D245
Gujarati A81-AFF
Gunjala_Gondi 11D60-11DA9
Gurmukhi A01-A76
Han 2E80-2FD5 3005 3007 3021-3029 3038-303B 3400-4DBF 4E00-9FFF F900-FAD9 16FE2-16FE3
Han 16FF0-16FF1 20000-323AF
Hangul 1100-11FF 302E-302F 3131-318E 3200-321E 3260-327E A960-A97C AC00-D7FB FFA0-FFDC
Hanifi_Rohingya 10D00-10D39
Hanunoo 1720-1734
Hatran 108E0-108FF
Hebrew 591-5F4 FB1D-FB4F
Hiragana 3041-3096 309D-309F 1B001-1B11F 1B132-1B152 1F200
Imperial_Aramaic 10840-1085F
Inscriptional_Pahlavi 10B60-10B7F
Inscriptional_Parthian 10B40-10B5F
Javanese A980-A9CD A9D0-A9DF
Kaithi 11080-110CD
Kannada C80-CF3
Katakana 30A1-30FA 30FD-30FF 31F0-31FF 32D0-32FE 3300-3357 FF66-FF6F FF71-FF9D
Katakana 1AFF0-1B000 1B120-1B122 1B155-1B167
Kawi 11F00-11F59
Kayah_Li A900-A92D A92F
Kharoshthi 10A00-10A58
Khitan_Small_Script 16FE4 18B00-18CD5
Khmer 1780-17F9 19E0-19FF
Khojki 11200-11241
Khudawadi 112B0-112F9
Lao E81-EDF
Latin 41-5A 61-7A AA BA C0-D6 D8-F6 F8-2B8 2E0-2E4 1D00-1D25 1D2C-1D5C 1D62-1D65
Latin 1D6B-1D77 1D79-1DBE 1E00-1EFF 2071 207F 2090-209C 212A-212B 2132 214E 2160-2188
Latin 2C60-2C7F A722-A787 A78B-A7FF AB30-AB5A AB5C-AB64 AB66-AB69 FB00-FB06 FF21-FF3A
Latin FF41-FF5A 10780-107BA 1DF00-1DF2A
Lepcha 1C00-1C4F
Limbu 1900-194F
Linear_A 10600-10767
Linear_B 10000-100FA
Lisu A4D0-A4FF 11FB0
Lycian 10280-1029C
Lydian 10920-1093F
Mahajani 11150-11176
Makasar 11EE0-11EF8
Malayalam D00-D7F
Mandaic 840-85E
Manichaean 10AC0-10AF6
Marchen 11C70-11CB6
Masaram_Gondi 11D00-11D59
Medefaidrin 16E40-16E9A
Meetei_Mayek AAE0-AAF6 ABC0-ABF9
Mende_Kikakui 1E800-1E8D6
Meroitic_Cursive 109A0-109FF
Meroitic_Hieroglyphs 10980-1099F
Miao 16F00-16F9F
Modi 11600-11659
Mongolian 1800-1801 1804 1806-18AA 11660-1166C
Mro 16A40-16A6F
Multani 11280-112A9
Myanmar 1000-109F A9E0-A9FE AA60-AA7F
Nabataean 10880-108AF
Nag_Mundari 1E4D0-1E4F9
Nandinagari 119A0-119E4
New_Tai_Lue 1980-19DF
Newa 11400-11461
Nko 7C0-7FF
Nushu 16FE1 1B170-1B2FB
Nyiakeng_Puachue_Hmong 1E100-1E14F
Ogham 1680-169C
Ol_Chiki 1C50-1C7F
Old_Hungarian 10C80-10CFF
Old_Italic 10300-1032F
Old_North_Arabian 10A80-10A9F
Old_Permic 10350-1037A
Old_Persian 103A0-103D5
Old_Sogdian 10F00-10F27
Old_South_Arabian 10A60-10A7F
Old_Turkic 10C00-10C48
Old_Uyghur 10F70-10F89
Oriya B01-B77
Osage 104B0-104FB
Osmanya 10480-104A9
Pahawh_Hmong 16B00-16B8F
Palmyrene 10860-1087F
Pau_Cin_Hau 11AC0-11AF8
Phags_Pa A840-A877
Phoenician 10900-1091F
Psalter_Pahlavi 10B80-10BAF
Rejang A930-A95F
Runic 16A0-16EA 16EE-16F8
Samaritan 800-83E
Saurashtra A880-A8D9
Sharada 11180-111DF
Shavian 10450-1047F
Siddham 11580-115DD
SignWriting 1D800-1DAAF
Sinhala D81-DF4 111E1-111F4
Sogdian 10F30-10F59
Sora_Sompeng 110D0-110F9
Soyombo 11A50-11AA2
Sundanese 1B80-1BBF 1CC0-1CC7
Syloti_Nagri A800-A82C
Syriac 700-74F 860-86A
Tagalog 1700-171F
Tagbanwa 1760-1773
Tai_Le 1950-1974
Tai_Tham 1A20-1AAD
Tai_Viet AA80-AADF
Takri 11680-116C9
Tamil B82-BFA 11FC0-11FFF
Tangsa 16A70-16AC9
Tangut 16FE0 17000-18AFF 18D00-18D08
Telugu C00-C7F
Thaana 780-7B1
Thai E01-E3A E40-E5B
Tibetan F00-FD4 FD9-FDA
Tifinagh 2D30-2D7F
Tirhuta 11480-114D9
Toto 1E290-1E2AE
Ugaritic 10380-1039F
Vai A500-A62B
Vithkuqi 10570-105BC
Wancho 1E2C0-1E2FF
Warang_Citi 118A0-118FF
Yezidi 10E80-10EB1
Yi A000-A4C6
Zanabazar_Square 11A00-11A47
"""


def _ranges(table: str) -> tuple[list[int], list[tuple[int, str]]]:
    spans = []
    for line in table.split("\n"):
        if not line:
            continue
        script, *ranges = line.split(" ")
        for span in ranges:
            first, _, last = span.partition("-")
            spans.append((int(first, 16), int(last or first, 16), script))
    spans.sort()
    return [s[0] for s in spans], [(s[1], s[2]) for s in spans]


_STARTS, _ENDS = _ranges(_TABLE)


def script_of(ch: str) -> str | None:
    """The script of ``ch``, or ``None`` for Common, Inherited and unassigned ones."""
    cp = ord(ch)
    i = bisect.bisect_right(_STARTS, cp) - 1
    if i < 0:
        return None
    end, script = _ENDS[i]
    return script if cp <= end else None


def scripts_in(text: Iterable[str]) -> frozenset[str]:
    """The scripts ``text`` is written in (Common and Inherited left out)."""
    return frozenset(s for ch in text if (s := script_of(ch)) is not None)


def mixes_scripts(text: str) -> bool:
    """Whether ``text`` mixes scripts that are not written together: Latin with
    Cyrillic or Greek, say, which is how look-alike names are made."""
    if text.isascii():
        return False
    scripts = scripts_in(text)
    return len(scripts) > 1 and not any(scripts <= allowed for allowed in TOGETHER)
