"""Per-sentence language guess: script detection, then Malay vs English word evidence.

Non-Latin scripts win when they outnumber Latin letters (Han -> "zh", kana -> "ja",
Hangul -> "ko", Tamil -> "ta", Devanagari -> "hi", Arabic -> "ar", Thai -> "th").
Latin text scores Malay function words and affixed forms (meng-, ber-, -kan, -nya, ...)
against English function words; code-switched sentences take the majority, and a tie
(no evidence either way) goes to `default`.
"""

from __future__ import annotations

import re
from typing import Literal

Language = Literal["ms", "en", "zh", "ja", "ko", "ta", "hi", "ar", "th"]
LATIN_LANGUAGES: frozenset[str] = frozenset({"ms", "en"})

_SCRIPTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("ja", re.compile(r"[\u3040-\u30ff]")),
    ("zh", re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")),
    ("ko", re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")),
    ("ta", re.compile(r"[\u0b80-\u0bff]")),
    ("hi", re.compile(r"[\u0900-\u097f]")),
    ("ar", re.compile(r"[\u0600-\u06ff]")),
    ("th", re.compile(r"[\u0e00-\u0e7f]")),
)
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
_WORD = re.compile(r"[A-Za-z]\.[A-Za-z](?=\.)|[A-Za-z]+(?:[-'][A-Za-z]+)*")


def _word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


MALAY_WORDS = _word_set("""
yang dan di ke dari untuk dengan ini itu tidak tak ada adalah ialah akan sudah telah boleh
pada dalam juga atau tetapi tapi kerana sebab apa siapa bila bilakah mana macam nak lah kah pun
saya aku kami kita awak anda kamu dia mereka beliau kau encik puan tuan cik
harga pukul jam hari minggu bulan tahun baru lagi sangat sahaja saja semua setiap banyak sikit
sedikit masih belum mahu hendak perlu mesti jangan sila terima kasih selamat pagi petang malam
tengah hingga sampai antara oleh bagi tentang seperti kalau jika supaya agar maka lalu kemudian
sekarang nanti esok semalam kini tadi sini sana situ begitu begini bagaimana mengapa kenapa
satu dua tiga empat lima enam tujuh lapan sembilan sepuluh sebelas belas puluh ratus ribu juta
seratus seribu sejuta bilion ringgit sen peratus kosong perpuluhan negatif pertama
orang rumah kereta jalan taman kampung bandar negeri kerajaan syarikat duit wang kedai makan
minum pergi datang balik beli jual bayar kerja sekolah murid guru buat tengok tahu faham
berapa ya tidak betul salah baik besar kecil panjang pendek cantik lama dulu mula habis
je jer ni tu dah kat dekat sama macamana camne takde xde dll dsb cth yg dgn utk dlm kpd drpd sbg
""")

ENGLISH_WORDS = _word_set("""
the a an is are was were be been being am to of and in on at for with by from as into about
it its this that these those you your yours i me my we our us he him his she her they them their
not no do does did done have has had will would can could should shall may might must
what who whom which when where why how there here then than so but or if because while
all any some each every many much more most other such only also very just
one two three four five six seven eight nine ten eleven twelve hundred thousand million
billion percent point minus dollars dollar cents first second third
hello hi please thank thanks yes okay ok good morning afternoon evening night today tomorrow
yesterday now time price meeting starts start get got go going come call number people
everything something nothing anything everyone someone really well still even never always
make made take took give gave see saw know knew think want need like love said says say
e.g i.e etc vs
""")

_MALAY_AFFIX = re.compile(
    r"^(?:meng|meny|mem|men|ber|ter|peng|pem|pen|per|se|di)[a-z]{3,}$|^[a-z]{3,}(?:kan|nya|lah)$"
    r"|^([a-z]+)-\1$")
_ENGLISH_AFFIX = re.compile(r"^[a-z]{2,}(?:ed|tion|tions|ly|ness|ment|ful)$|^th[a-z]+$")


def detect_language(text: str, default: Language = "ms") -> Language:
    """The sentence's language; `default` when there is no evidence (digits only, names)."""
    latin = len(_LATIN.findall(text))
    best: Language | None = None
    best_count = 0
    for language, pattern in _SCRIPTS:
        count = len(pattern.findall(text))
        if count > best_count:
            best, best_count = language, count  # type: ignore[assignment]
    if best is not None:
        if best == "zh" and _SCRIPTS[0][1].search(text):
            best = "ja"
        if best_count * 2 >= latin:  # a CJK character carries a word; a Latin letter does not
            return best
    malay = english = 0.0
    for word in _WORD.findall(text):
        lower = word.lower()
        if lower in MALAY_WORDS:
            malay += 1
        elif lower in ENGLISH_WORDS:
            english += 1
        elif _MALAY_AFFIX.match(lower):
            malay += 0.5
        elif _ENGLISH_AFFIX.match(lower):
            english += 0.5
    if malay > english:
        return "ms"
    if english > malay:
        return "en"
    return default
