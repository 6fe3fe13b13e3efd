"""Malay number words: cardinals with the se- forms, ordinals, decimals, digit strings.

Scales are ribu (10^3), juta (10^6), bilion (10^9) and trilion (10^12); larger numbers are
read digit by digit. Malaysian usage: "lapan" (not Indonesian "delapan"), "kosong" for the
digit zero, "sejuta" for one million but "satu bilion" / "satu trilion".
"""

from __future__ import annotations

DIGITS = ("kosong", "satu", "dua", "tiga", "empat", "lima", "enam", "tujuh", "lapan", "sembilan")
POINT = "perpuluhan"
NEGATIVE = "negatif"
MAX_CARDINAL = 10**15 - 1
_SCALES = ((10**12, "trilion"), (10**9, "bilion"), (10**6, "juta"), (10**3, "ribu"))
_SE_SCALES = {"ribu": "seribu", "juta": "sejuta"}


def _under_thousand(n: int) -> list[str]:
    words: list[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        words.append("seratus" if hundreds == 1 else f"{DIGITS[hundreds]} ratus")
    if rest == 0:
        return words
    if rest < 10:
        words.append(DIGITS[rest])
    elif rest == 10:
        words.append("sepuluh")
    elif rest == 11:
        words.append("sebelas")
    elif rest < 20:
        words.append(f"{DIGITS[rest - 10]} belas")
    else:
        tens, ones = divmod(rest, 10)
        words.append(f"{DIGITS[tens]} puluh")
        if ones:
            words.append(DIGITS[ones])
    return words


def cardinal(n: int) -> str:
    """0 -> "kosong", 1000 -> "seribu", 1_500_000 -> "sejuta lima ratus ribu"."""
    if n < 0:
        return f"{NEGATIVE} {cardinal(-n)}"
    if n == 0:
        return DIGITS[0]
    if n > MAX_CARDINAL:
        return digits(str(n))
    words: list[str] = []
    for value, name in _SCALES:
        group, n = divmod(n, value)
        if group == 1 and name in _SE_SCALES:
            words.append(_SE_SCALES[name])
        elif group:
            words.extend(_under_thousand(group))
            words.append(name)
    words.extend(_under_thousand(n))
    return " ".join(words)


def ordinal(n: int) -> str:
    """1 -> "pertama", 3 -> "ketiga", 21 -> "kedua puluh satu"."""
    return "pertama" if n == 1 else "ke" + cardinal(n)


def digits(text: str) -> str:
    """Each ASCII digit as a word: "012" -> "kosong satu dua"; other characters are dropped."""
    return " ".join(DIGITS[int(ch)] for ch in text if "0" <= ch <= "9")


def year(n: int) -> str:
    """Malay reads years as cardinals: 2024 -> "dua ribu dua puluh empat"."""
    return cardinal(n)


def decimal(integer: int, fraction: str) -> str:
    """3, "14" -> "tiga perpuluhan satu empat"."""
    return f"{cardinal(integer)} {POINT} {digits(fraction)}"
