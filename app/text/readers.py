"""How numbers in context are read: plain numbers, money, times, dates, digit strings.

Each function takes the sentence language ("ms" or "en") and returns words only, no ASCII
digits. Numbers are written Malaysian style: "," groups thousands (1,234,567) and "." is the
decimal point (1,234.50); a dot grouping (1.234.567) counts only with two or more groups.
"""

from __future__ import annotations

from types import ModuleType

from app.text import numbers_en, numbers_ms
from app.text.lexicon import CONNECTIVES, CURRENCIES, MONTHS_EN, MONTHS_MS, SCALES, Noun

_READERS: dict[str, ModuleType] = {"ms": numbers_ms, "en": numbers_en}


def reader(language: str) -> ModuleType:
    """The number-word module for a Latin-script language (numbers_ms or numbers_en)."""
    return _READERS[language]


def _split_number(text: str) -> tuple[bool, str, str]:
    """"-1,234.50" -> (True, "1234", "50"); "1.234.567" -> (False, "1234567", "")."""
    negative = text[:1] in "-−"
    text = text.lstrip("-−").replace(",", "")
    if text.count(".") > 1:
        return negative, text.replace(".", ""), ""
    integer, _, fraction = text.partition(".")
    return negative, integer or "0", fraction


def number(text: str, language: str, *, as_year: bool = False) -> str:
    """A written number (sign, thousands commas, decimal part) as words.

    Leading zeros ("007") and numbers past the largest scale are read digit by digit;
    `as_year` reads a bare four-digit English number as a year (1999 -> nineteen ninety-nine).
    """
    words = reader(language)
    negative, integer, fraction = _split_number(text)
    if len(integer) > 1 and integer.startswith("0") and not fraction:
        spoken = words.digits(integer)
    elif int(integer) > words.MAX_CARDINAL:
        spoken = words.digits(integer) + (f" {words.POINT} {words.digits(fraction)}"
                                          if fraction else "")
    elif fraction:
        spoken = words.decimal(int(integer), fraction)
    elif as_year:
        spoken = words.year(int(integer))
    else:
        spoken = words.cardinal(int(integer))
    return f"{words.NEGATIVE} {spoken}" if negative else spoken


def is_one(text: str) -> bool:
    negative, integer, fraction = _split_number(text)
    return not negative and integer.lstrip("0") == "1" and not fraction.strip("0")


def digit_groups(groups: list[str], language: str) -> str:
    """Phone and IC numbers: each group digit by digit, groups separated by commas."""
    words = reader(language)
    plus = CONNECTIVES[language]["plus"]
    spoken = []
    for group in groups:
        prefix = f"{plus} " if group.startswith("+") else ""
        spoken.append(prefix + words.digits(group))
    return ", ".join(spoken)


def money(symbol: str, amount: str, language: str, *, upper: str | None = None,
          scale: str | None = None) -> str:
    """RM12.50 -> "dua belas ringgit lima puluh sen"; RM1.2 juta; RM3k; RM10-20."""
    unit, minor = CURRENCIES[symbol]
    words = reader(language)
    if scale is not None:
        multiplier, scale_ms, scale_en = SCALES[scale]
        scale_word = scale_ms if language == "ms" else scale_en
        head = amount if upper is None else upper
        value = float(head.replace(",", "")) * multiplier
        if multiplier == 1000 and value.is_integer() and upper is None:
            return f"{words.cardinal(int(value))} {unit.read(language, False)}"
        spoken = number(amount, language)
        if upper is not None:
            spoken += f" {CONNECTIVES[language]['range']} {number(upper, language)}"
        return f"{spoken} {scale_word} {unit.read(language, False)}"
    if upper is not None:
        if "." in amount or "." in upper:
            return (f"{money(symbol, amount, language)} {CONNECTIVES[language]['range']} "
                    f"{money(symbol, upper, language)}")
        return (f"{number(amount, language)} {CONNECTIVES[language]['range']} "
                f"{number(upper, language)} {unit.read(language, False)}")
    return _amount(amount, unit, minor, language)


def _amount(amount: str, unit: Noun, minor: Noun, language: str) -> str:
    words = reader(language)
    negative, integer, fraction = _split_number(amount)
    if len(fraction) > 2:
        return f"{number(amount, language)} {unit.read(language, False)}"
    cents = int((fraction + "00")[:2]) if fraction else 0
    whole = int(integer)
    parts = []
    if whole or not cents:
        parts.append(f"{words.cardinal(whole)} {unit.read(language, whole == 1)}")
    if cents:
        parts.append(f"{words.cardinal(cents)} {minor.read(language, cents == 1)}")
    spoken = " ".join(parts)
    return f"{words.NEGATIVE} {spoken}" if negative else spoken


def clock(hour: str, minute: str, second: str | None, meridiem: str | None,
          language: str) -> str:
    """3:30 pm -> "three thirty p m"; pukul 3.30 -> "tiga tiga puluh"; 3:05 -> "three oh five"."""
    words = reader(language)
    h, m = int(hour), int(minute)
    spoken = [words.cardinal(h)]
    if m == 0:
        if meridiem is None and language == "en":
            spoken.append("o'clock" if h <= 12 else "hundred")
    elif m < 10:
        spoken.append(f"{'kosong' if language == 'ms' else 'oh'} {words.DIGITS[m]}")
    else:
        spoken.append(words.cardinal(m))
    if second is not None and int(second):
        s = int(second)
        spoken.append(f"{words.cardinal(s)} saat" if language == "ms"
                      else f"and {words.cardinal(s)} second{'s' if s != 1 else ''}")
    if meridiem is not None:
        spoken.append(" ".join(ch.lower() for ch in meridiem if ch.isalpha()))
    return " ".join(spoken)


def date(day: int, month: int, year: str | None, language: str, *,
         month_name: str | None = None) -> str:
    """12/3/2024 -> "dua belas Mac dua ribu dua puluh empat" / "twelfth of March twenty
    twenty-four"; `month_name` keeps a month the writer spelled out in full."""
    words = reader(language)
    if language == "ms":
        name = month_name or MONTHS_MS[month - 1]
        spoken = f"{words.cardinal(day)} {name}"
    else:
        name = month_name or MONTHS_EN[month - 1]
        spoken = f"{words.ordinal(day)} of {name}"
    if year is not None:
        spoken += " " + words.year(int(year))
    return spoken
