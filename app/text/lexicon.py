"""Words the number rules put around numbers: units, currencies, months, connectives.

Each entry reads (Malay, English singular, English plural); Malay nouns do not inflect.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Noun:
    ms: str
    en: str
    en_plural: str

    def read(self, language: str, value_is_one: bool) -> str:
        if language == "ms":
            return self.ms
        return self.en if value_is_one else self.en_plural


def _noun(ms: str, en: str, en_plural: str | None = None) -> Noun:
    return Noun(ms, en, en + "s" if en_plural is None else en_plural)


# Longest spellings first, so "km/j" wins over "km" and "mg" over "m".
UNITS: dict[str, Noun] = {
    "km/j": _noun("kilometer sejam", "kilometre per hour", "kilometres per hour"),
    "km/jam": _noun("kilometer sejam", "kilometre per hour", "kilometres per hour"),
    "km/h": _noun("kilometer sejam", "kilometre per hour", "kilometres per hour"),
    "kmj": _noun("kilometer sejam", "kilometre per hour", "kilometres per hour"),
    "°C": _noun("darjah Celsius", "degree Celsius", "degrees Celsius"),
    "℃": _noun("darjah Celsius", "degree Celsius", "degrees Celsius"),
    "°F": _noun("darjah Fahrenheit", "degree Fahrenheit", "degrees Fahrenheit"),
    "°": _noun("darjah", "degree"),
    "km": _noun("kilometer", "kilometre"),
    "kg": _noun("kilogram", "kilogram"),
    "Kg": _noun("kilogram", "kilogram"),
    "mg": _noun("miligram", "milligram"),
    "cm": _noun("sentimeter", "centimetre"),
    "mm": _noun("milimeter", "millimetre"),
    "ml": _noun("mililiter", "millilitre"),
    "mL": _noun("mililiter", "millilitre"),
    "GB": _noun("gigabait", "gigabyte"),
    "MB": _noun("megabait", "megabyte"),
    "TB": _noun("terabait", "terabyte"),
    "ha": _noun("hektar", "hectare"),
    "ft": _noun("kaki", "foot", "feet"),
    "m": _noun("meter", "metre"),
    "g": _noun("gram", "gram"),
    "l": _noun("liter", "litre"),
    "L": _noun("liter", "litre"),
}

# Currency symbols and codes written before (or codes after) the amount: (unit, minor unit).
CURRENCIES: dict[str, tuple[Noun, Noun]] = {
    "RM": (_noun("ringgit", "ringgit", "ringgit"), _noun("sen", "sen", "sen")),
    "MYR": (_noun("ringgit", "ringgit", "ringgit"), _noun("sen", "sen", "sen")),
    "USD": (_noun("dolar Amerika", "US dollar"), _noun("sen", "cent")),
    "US$": (_noun("dolar Amerika", "US dollar"), _noun("sen", "cent")),
    "SGD": (_noun("dolar Singapura", "Singapore dollar"), _noun("sen", "cent")),
    "S$": (_noun("dolar Singapura", "Singapore dollar"), _noun("sen", "cent")),
    "$": (_noun("dolar", "dollar"), _noun("sen", "cent")),
    "EUR": (_noun("euro", "euro"), _noun("sen", "cent")),
    "€": (_noun("euro", "euro"), _noun("sen", "cent")),
    "GBP": (_noun("paun", "pound"), _noun("peni", "penny", "pence")),
    "£": (_noun("paun", "pound"), _noun("peni", "penny", "pence")),
}

# Scale words after an amount ("RM1.2 juta", "RM3k"): multiplier, Malay word, English word.
SCALES: dict[str, tuple[int, str, str]] = {
    "k": (10**3, "ribu", "thousand"), "K": (10**3, "ribu", "thousand"),
    "ribu": (10**3, "ribu", "thousand"), "thousand": (10**3, "ribu", "thousand"),
    "j": (10**6, "juta", "million"), "juta": (10**6, "juta", "million"),
    "m": (10**6, "juta", "million"), "mil": (10**6, "juta", "million"),
    "million": (10**6, "juta", "million"), "j.": (10**6, "juta", "million"),
    "b": (10**9, "bilion", "billion"), "bn": (10**9, "bilion", "billion"),
    "bilion": (10**9, "bilion", "billion"), "billion": (10**9, "bilion", "billion"),
    "trilion": (10**12, "trilion", "trillion"), "trillion": (10**12, "trilion", "trillion"),
    "tn": (10**12, "trilion", "trillion"),
}

MONTHS_MS = ("Januari", "Februari", "Mac", "April", "Mei", "Jun", "Julai", "Ogos",
             "September", "Oktober", "November", "Disember")
MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August",
             "September", "October", "November", "December")
# Every spelling of a month (Malay or English, full or abbreviated) -> month number.
MONTH_NAMES: dict[str, int] = {}
for _number, (_ms, _en) in enumerate(zip(MONTHS_MS, MONTHS_EN, strict=True), start=1):
    for _name in (_ms, _en, _ms[:3], _en[:3]):
        MONTH_NAMES.setdefault(_name, _number)
MONTH_NAMES.update({"Sept": 9, "Ogo": 8, "Okt": 10, "Dis": 12})

CONNECTIVES: dict[str, dict[str, str]] = {
    "ms": {"range": "hingga", "percent": "peratus", "and": "dan", "at": "di", "dot": "titik",
           "slash": "garis miring", "per": "per", "plus": "tambah", "dash": "sempang",
           "underscore": "garis bawah", "decade": "an", "times": "kali"},
    "en": {"range": "to", "percent": "percent", "and": "and", "at": "at", "dot": "dot",
           "slash": "slash", "per": "over", "plus": "plus", "dash": "dash",
           "underscore": "underscore", "decade": "s", "times": "times"},
}
