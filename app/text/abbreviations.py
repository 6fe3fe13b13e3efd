"""Abbreviations: how each is read (Malay, English), and which ones a period does not end.

Malaysian place, company and honorific abbreviations (Jln, Tmn, Sdn Bhd, En., Pn.) read the
same in both languages; the rest have a reading per language.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Abbreviation:
    """`pattern` matches the abbreviation (with its optional period) inside a sentence."""

    pattern: re.Pattern[str]
    ms: str
    en: str


_BEFORE = r"(?<![\w.@/-])"
_AFTER = r"(?![\w@/-])"
_BEFORE_NAME = r"(?=\s+[A-Z])"  # ambiguous short forms only before a capitalised name


def _abbreviation(source: str, ms: str, en: str | None = None, *, flags: int = 0,
                  before_name: bool = False) -> Abbreviation:
    tail = _BEFORE_NAME if before_name else _AFTER
    return Abbreviation(re.compile(_BEFORE + source + tail, flags), ms, ms if en is None else en)


ABBREVIATIONS: tuple[Abbreviation, ...] = (
    _abbreviation(r"Sdn\.?\s+Bhd\.?", "Sendirian Berhad"),
    _abbreviation(r"Sdn\.?", "Sendirian"),
    _abbreviation(r"Bhd\.?", "Berhad"),
    _abbreviation(r"Jln\.?", "Jalan"),
    _abbreviation(r"Tmn\.?", "Taman"),
    _abbreviation(r"Kg\.", "Kampung"),
    _abbreviation(r"Kg", "Kampung", before_name=True),
    _abbreviation(r"Kpg\.?", "Kampung"),
    _abbreviation(r"Bdr\.?", "Bandar"),
    _abbreviation(r"Bkt\.?", "Bukit"),
    _abbreviation(r"Sg\.?", "Sungai", before_name=True),
    _abbreviation(r"Lrg\.?", "Lorong"),
    _abbreviation(r"Hjh\.?", "Hajah", before_name=True),
    _abbreviation(r"Hj\.?", "Haji", before_name=True),
    _abbreviation(r"En\.", "Encik"),
    _abbreviation(r"En", "Encik", before_name=True),
    _abbreviation(r"Pn\.?", "Puan", before_name=True),
    _abbreviation(r"Tn\.?", "Tuan", before_name=True),
    _abbreviation(r"YB", "Yang Berhormat", before_name=True),
    _abbreviation(r"dll\.?", "dan lain-lain"),
    _abbreviation(r"dsb\.?", "dan sebagainya"),
    _abbreviation(r"cth\.?", "contoh"),
    _abbreviation(r"spt\.?", "seperti"),
    _abbreviation(r"yg", "yang"),
    _abbreviation(r"dgn", "dengan"),
    _abbreviation(r"utk", "untuk"),
    _abbreviation(r"dlm", "dalam"),
    _abbreviation(r"kpd", "kepada"),
    _abbreviation(r"drpd", "daripada"),
    _abbreviation(r"sbg", "sebagai"),
    _abbreviation(r"tdk", "tidak"),
    _abbreviation(r"Dr\.?", "Doktor", "Doctor"),
    _abbreviation(r"Prof\.?", "Profesor", "Professor"),
    _abbreviation(r"Mrs\.?", "Missus"),
    _abbreviation(r"Mr\.?", "Mister"),
    _abbreviation(r"Ms\.?", "Miz", before_name=True),
    _abbreviation(r"Jr\.?", "Junior"),
    _abbreviation(r"Sr\.", "Senior"),
    _abbreviation(r"No\.?(?=\s*\d)", "nombor", "number", flags=re.IGNORECASE),
    _abbreviation(r"No\.?(?=\s+(?:IC|KP|K/P|tel|telefon|akaun|siri|pendaftaran|plat)\b)",
                  "nombor", "number"),
    _abbreviation(r"e\.g\.", "contohnya", "for example", flags=re.IGNORECASE),
    _abbreviation(r"i\.e\.", "iaitu", "that is", flags=re.IGNORECASE),
    _abbreviation(r"etc\.", "dan lain-lain", "et cetera"),
    _abbreviation(r"vs\.?", "lawan", "versus"),
    _abbreviation(r"approx\.", "lebih kurang", "approximately"),
    _abbreviation(r"Dept\.", "Jabatan", "Department"),
    _abbreviation(r"Ltd\.?", "Limited"),
    _abbreviation(r"Inc\.", "Incorporated"),
)

# A period after these never ends a sentence (a name or a number follows).
NON_TERMINAL = frozenset({
    "dr", "mr", "mrs", "ms", "prof", "en", "pn", "tn", "jln", "tmn", "kg", "kpg", "bdr", "bkt",
    "sg", "lrg", "sdn", "st", "hj", "hjh", "e.g", "i.e", "vs", "approx", "dept", "cth", "spt",
    "yb", "mt", "fig", "lt", "col", "gen", "capt", "sgt",
})
# A period after these ends a sentence only when a capitalised word follows.
MAYBE_TERMINAL = frozenset({
    "etc", "dll", "dsb", "bhd", "ltd", "inc", "co", "jr", "sr", "no", "a.m", "p.m", "ogos",
    "jan", "feb", "mac", "mar", "apr", "jun", "jul", "aug", "ogo", "sep", "sept", "okt", "oct",
    "nov", "dis", "dec",
})
