"""English number words (British usage, as in Malaysian English): "one hundred and five".

Cardinals use the short scale up to trillions; larger numbers are read digit by digit.
Years read in pairs (1999 -> "nineteen ninety-nine", 2005 -> "two thousand and five",
2024 -> "twenty twenty-four").
"""

from __future__ import annotations

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
POINT = "point"
NEGATIVE = "minus"
MAX_CARDINAL = 10**15 - 1
_TEENS = ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
          "seventeen", "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (10**3, "thousand"))
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                  "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}


def _under_hundred(n: int) -> str:
    if n < 10:
        return DIGITS[n]
    if n < 20:
        return _TEENS[n - 10]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + (f"-{DIGITS[ones]}" if ones else "")


def _under_thousand(n: int) -> list[str]:
    hundreds, rest = divmod(n, 100)
    words = [DIGITS[hundreds], "hundred"] if hundreds else []
    if rest:
        if hundreds:
            words.append("and")
        words.append(_under_hundred(rest))
    return words


def cardinal(n: int) -> str:
    """1234 -> "one thousand two hundred and thirty-four"."""
    if n < 0:
        return f"{NEGATIVE} {cardinal(-n)}"
    if n == 0:
        return DIGITS[0]
    if n > MAX_CARDINAL:
        return digits(str(n))
    words: list[str] = []
    for value, name in _SCALES:
        group, n = divmod(n, value)
        if group:
            words.extend(_under_thousand(group))
            words.append(name)
    if words and 0 < n < 100:
        words.append("and")
    words.extend(_under_thousand(n))
    return " ".join(words)


def ordinal(n: int) -> str:
    """3 -> "third", 21 -> "twenty-first", 100 -> "one hundredth"."""
    words = cardinal(n)
    head, sep, last = words.rpartition(" ")
    stem, hyphen, unit = last.rpartition("-")
    if unit in _ORDINAL_WORDS:
        unit = _ORDINAL_WORDS[unit]
    elif unit.endswith("y"):
        unit = unit[:-1] + "ieth"
    else:
        unit += "th"
    return head + sep + stem + hyphen + unit


def digits(text: str) -> str:
    """Each ASCII digit as a word: "012" -> "zero one two"; other characters are dropped."""
    return " ".join(DIGITS[int(ch)] for ch in text if "0" <= ch <= "9")


def year(n: int) -> str:
    """1999 -> "nineteen ninety-nine", 1905 -> "nineteen oh five", 2000 -> "two thousand"."""
    if not 1100 <= n <= 2099 or n % 1000 == 0 or 2000 < n < 2010:
        return cardinal(n)
    high, low = divmod(n, 100)
    if low == 0:
        return f"{_under_hundred(high)} hundred"
    if low < 10:
        return f"{_under_hundred(high)} oh {DIGITS[low]}"
    return f"{_under_hundred(high)} {_under_hundred(low)}"


def decimal(integer: int, fraction: str) -> str:
    """3, "14" -> "three point one four"."""
    return f"{cardinal(integer)} {POINT} {digits(fraction)}"


def plural(word: str) -> str:
    """Plural of a number word, for decades: "ninety" -> "nineties", "six" -> "sixes"."""
    if word.endswith("y"):
        return word[:-1] + "ies"
    if word.endswith(("s", "x")):
        return word + "es"
    return word + "s"
