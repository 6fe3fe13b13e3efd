"""Text normalization for Malay, English and Malaysian code-switching: what will be spoken.

Each sentence gets a language (`detect_language`) and is rewritten on its own, so a caller
may normalize segments separately and get the same words. Malay and English sentences have
numbers, money, percentages, dates, times, ordinals, ranges, units, phone/IC numbers, URLs,
e-mail addresses, abbreviations and a few symbols read out; afterwards no ASCII digit is
left. Sentences in other scripts (Chinese, Japanese, Korean, Tamil, ...) only get markup
and whitespace clean-up: their digits are left for the speech model, which reads them in
that language better than English words spliced in would.

Phone numbers are digit groups that start with 0 or + (012-345 6789, 03-1234 5678,
+60 12-345 6789, 0123456789) or a 1-300 / 1-800 number, 9 to 13 digits in all; Malaysian
IC numbers are 6-2-4 digits (900101-14-5678). Both are read digit by digit, group by group.
A four-digit number from 1100 to 2099 in an English sentence is read as a year.

Idempotent: normalize_text(normalize_text(x)) == normalize_text(x).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import TypedDict

from app.text import readers
from app.text.abbreviations import ABBREVIATIONS
from app.text.language import LATIN_LANGUAGES, Language, detect_language
from app.text.lexicon import CONNECTIVES, CURRENCIES, MONTH_NAMES, MONTHS_EN, MONTHS_MS, UNITS
from app.text.markup import clean_markup, collapse_spaces
from app.text.segment import split_sentences

Rule = Callable[[str, str], str]

_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d{1,3}(?:\.\d{3}){2,}|\d+(?:\.\d+)?"
_SNUM = rf"[-−]?(?:{_NUM})"
_FREE = r"(?<![\w.,/:-])"  # not glued to a word, another number, or a date/time
_END = r"(?![\w]|[.,]\d)"
_DASH = r"\s?[-–]\s?"
_MERIDIEM = r"(?P<mer>[AaPp]\.?[Mm]\.?)(?![A-Za-z])"
_CLOSING = "\"'”’)]}»"


def _names(options: list[str]) -> str:
    return "|".join(re.escape(o) for o in sorted(options, key=len, reverse=True))


_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(
    r"(?:https?://|www\.)[^\s<>\"']*[^\s<>\"'.,;:!?)\]]"
    r"|\b[\w-]+(?:\.[\w-]+)*\.(?:com|net|org|my|edu|gov|io|co|info|biz|asia)\b"
    r"(?:/[^\s<>\"']*[^\s<>\"'.,;:!?)\]])?")
_URL_PARTS = re.compile(r"[A-Za-z]+|\d+|[./:\-_@?=&#~+%]")
_IC = re.compile(r"(?<![\w-])(\d{6})-(\d{2})-(\d{4})(?![\w-])")
_PHONE = re.compile(r"(?<![\w.,+-])(\+?\d{1,4})((?:[ -]\d{2,8}){1,3})(?![\w-]|[.,]\d)"
                    r"|(?<![\w.,+-])(0\d{8,10})(?![\w.,-]|[.,]\d)")
_NUMERIC_DATE = re.compile(
    r"(?<![\w/.-])(?:(\d{1,2})([/.-])(\d{1,2})\2(\d{4})|(\d{4})-(\d{2})-(\d{2}))(?![\w/-]|\.\d)")
_MONTHS = _names(list(MONTH_NAMES))
_DAY_MONTH = re.compile(rf"(?<![\w.,])(\d{{1,2}})(?:hb)?\s+({_MONTHS})(?:\.?\s+(\d{{4}}))?\b")
_MONTH_DAY = re.compile(
    rf"\b({_MONTHS})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?(?:(,?\s+)(\d{{4}}))?(?![\w]|[.,]\d)")
_CLOCK = re.compile(rf"(?<![\w.:])(\d{{1,2}}):(\d{{2}})(?::(\d{{2}}))?(?:\s?{_MERIDIEM})?(?![\w:])")
_DOT_CLOCK = re.compile(
    rf"(?:\b(?P<lead>pukul|jam|pkl|at)\s+)?(?<![\w.:])(?P<h>\d{{1,2}})\.(?P<m>\d{{2}})"
    rf"(?:\s?{_MERIDIEM}|(?=\s+(?:pagi|petang|tengah|malam|pg|ptg|mlm|subuh)\b)|(?![\w]|\.\d))")
_HOUR = re.compile(rf"(?<![\w.:,])(\d{{1,2}})\s?{_MERIDIEM}")
_CURRENCY = _names(list(CURRENCIES))
_SCALE = r"k|K|j|juta|m|mil|million|b|bn|bilion|billion|trilion|trillion|tn|ribu|thousand"
_MONEY = re.compile(
    rf"(?<![\w$])(?P<cur>{_CURRENCY})\s?(?P<a>{_NUM})(?:{_DASH}(?:{_CURRENCY})?\s?(?P<b>{_NUM}))?"
    rf"(?:\s?(?P<scale>{_SCALE})(?![\w]))?(?![\w])")
_MONEY_AFTER = re.compile(rf"{_FREE}(?P<a>{_NUM})\s?(?P<cur>MYR|USD|SGD|EUR|GBP)\b")
_PERCENT = re.compile(rf"{_FREE}(?P<a>{_SNUM})(?:{_DASH}(?P<b>{_SNUM}))?\s?%")
_UNIT = re.compile(
    rf"{_FREE}(?P<a>{_SNUM})(?:{_DASH}(?P<b>{_SNUM}))?\s?(?P<unit>{_names(list(UNITS))})"
    r"(?![\w/°])")
_MS_ORDINAL = re.compile(r"\b([Kk])e-(\d+)\b")
_EN_ORDINAL = re.compile(r"(?<![\w.,])(\d+)(?:st|nd|rd|th)\b")
_MS_DECADE = re.compile(r"(?<![\w.,])(\d+)-?an\b")
_EN_DECADE = re.compile(r"(?<![\w.,])'?(\d+)'?s\b")
_RANGE = re.compile(rf"{_FREE}(?P<a>{_SNUM}){_DASH}(?P<b>{_SNUM}){_END}(?!{_DASH}\d)")
_THOUSANDS = re.compile(rf"{_FREE}(?P<a>{_NUM})[kK](?![\w])")
_LETTER_DASH_DIGIT = re.compile(r"(?<=[A-Za-z])-(?=\d)|(?<=\d)-(?=[A-Za-z])")
_NUMBER = re.compile(rf"(?P<sign>(?<![\w.,])[-−])?(?<![\d.,])(?P<a>{_NUM})")
_ANY_DIGITS = re.compile(r"\d+")
_AMPERSAND = re.compile(r"\s*&\s*")
_SYMBOLS = re.compile(r"(?<=\s)([@+=])(?=\s)")
_THE_BEFORE = re.compile(r"\bthe\s+$", re.IGNORECASE)
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.!?;:])")


def _keep_period(sentence: str, end: int, matched: str, spoken: str) -> str:
    """A sentence-final abbreviation keeps its period as the sentence's full stop."""
    if matched.endswith(".") and not sentence[end:].strip().strip(_CLOSING):
        return spoken + "."
    return spoken


def _emails(text: str, language: str) -> str:
    for _ in range(3):  # "a@b.coma@b.com": the first match swallows the second's name
        spelled = _EMAIL.sub(lambda m: _spell_address(m.group(), language), text)
        if spelled == text:
            break
        text = spelled
    return text


def _urls(text: str, language: str) -> str:
    return _URL.sub(lambda m: _spell_address(m.group(), language), text)


def _spell_address(address: str, language: str) -> str:
    words = CONNECTIVES[language]
    names = {".": words["dot"], "/": words["slash"], "-": words["dash"], "_": words["underscore"],
             "@": words["at"], ":": "", "?": "", "=": "", "&": words["and"], "#": "",
             "~": "", "+": words["plus"], "%": ""}
    address = re.sub(r"^https?://", "", address)
    spoken = []
    for part in _URL_PARTS.findall(address):
        if part.isdigit():
            spoken.append(readers.reader(language).digits(part))
        elif part.lower() == "www":
            spoken.append("w w w")
        else:
            spoken.append(names.get(part, part))
    return " ".join(p for p in spoken if p)


def _ic_numbers(text: str, language: str) -> str:
    return _IC.sub(lambda m: readers.digit_groups(list(m.groups()), language), text)


def _phone_groups(group: str) -> list[str]:
    if len(group) <= 4:
        return [group]
    head = 4 if len(group) == 8 else 3
    return [group[:head], *_phone_groups(group[head:])]


def _phones(text: str, language: str) -> str:
    def spoken(m: re.Match[str]) -> str:
        if m.group(3):
            whole = m.group(3)
            return readers.digit_groups(_phone_groups(whole[:3]) + _phone_groups(whole[3:]),
                                        language)
        first, rest = m.group(1), m.group(2).replace("-", " ").split()
        count = sum(ch.isdigit() for ch in m.group())
        toll_free = first in ("1300", "1800") or (first == "1" and rest[0] in ("300", "800"))
        if not 9 <= count <= 13 or not (first[0] in "+0" or toll_free):
            return m.group()
        groups = [first] + [g for group in rest for g in _phone_groups(group)]
        return readers.digit_groups(groups, language)

    return _PHONE.sub(spoken, text)


def _dates(text: str, language: str) -> str:
    def numeric(m: re.Match[str]) -> str:
        if m.group(1):
            day, month, year = int(m.group(1)), int(m.group(3)), m.group(4)
        else:
            day, month, year = int(m.group(7)), int(m.group(6)), m.group(5)
        if not (1 <= day <= 31 and 1 <= month <= 12):
            return m.group()
        return _the(m.start(), readers.date(day, month, year, language))

    def day_month(m: re.Match[str]) -> str:
        day, name = int(m.group(1)), m.group(2)
        if not 1 <= day <= 31:
            return m.group()
        full = name if name in MONTHS_MS or name in MONTHS_EN else None
        return _the(m.start(), readers.date(day, MONTH_NAMES[name], m.group(3), language,
                                            month_name=full))

    def _the(start: int, spoken: str) -> str:
        if language == "en" and not _THE_BEFORE.search(text, 0, start):
            return "the " + spoken
        return spoken

    def month_day(m: re.Match[str]) -> str:
        name, day = m.group(1), int(m.group(2))
        if not 1 <= day <= 31:
            return m.group()
        month = name if name in MONTHS_EN else MONTHS_EN[MONTH_NAMES[name] - 1]
        spoken = f"{month} {readers.reader('en').ordinal(day)}"
        if m.group(4):
            spoken += f"{m.group(3)}{readers.reader('en').year(int(m.group(4)))}"
        return spoken

    text = _NUMERIC_DATE.sub(numeric, text)
    text = _DAY_MONTH.sub(day_month, text)
    return _MONTH_DAY.sub(month_day, text) if language == "en" else text


def _times(text: str, language: str) -> str:
    def colon(m: re.Match[str]) -> str:
        if int(m.group(1)) > 24 or int(m.group(2)) > 59:
            return m.group()
        spoken = readers.clock(m.group(1), m.group(2), m.group(3), m.group("mer"), language)
        return _keep_period(text, m.end(), m.group(), spoken)

    def dotted(m: re.Match[str]) -> str:
        lead, meridiem = m.group("lead"), m.group("mer")
        if (lead is None and meridiem is None and not _followed_by_day_part(text, m.end())) \
                or int(m.group("h")) > 24 or int(m.group("m")) > 59:
            return m.group()
        spoken = readers.clock(m.group("h"), m.group("m"), None, meridiem, language)
        if lead is not None:
            spoken = f"{'pukul' if lead == 'pkl' else lead} {spoken}"
        return _keep_period(text, m.end(), m.group(), spoken)

    def hour(m: re.Match[str]) -> str:
        if int(m.group(1)) > 24:
            return m.group()
        spoken = readers.clock(m.group(1), "00", None, m.group("mer"), language)
        return _keep_period(text, m.end(), m.group(), spoken)

    text = _CLOCK.sub(colon, text)
    text = _DOT_CLOCK.sub(dotted, text)
    return _HOUR.sub(hour, text)


def _followed_by_day_part(text: str, end: int) -> bool:
    return re.match(r"\s+(?:pagi|petang|tengah|malam|pg|ptg|mlm|subuh)\b", text[end:]) is not None


def _money(text: str, language: str) -> str:
    def before(m: re.Match[str]) -> str:
        return readers.money(m.group("cur"), m.group("a"), language, upper=m.group("b"),
                             scale=m.group("scale"))

    def after(m: re.Match[str]) -> str:
        return readers.money(m.group("cur"), m.group("a"), language)

    return _MONEY_AFTER.sub(after, _MONEY.sub(before, text))


def _quantity(m: re.Match[str], language: str, noun: str | None) -> str:
    spoken = readers.number(m.group("a"), language)
    if m.group("b"):
        spoken += f" {CONNECTIVES[language]['range']} {readers.number(m.group('b'), language)}"
    if noun is None:
        return spoken
    return f"{spoken} {noun}"


def _percents(text: str, language: str) -> str:
    percent = CONNECTIVES[language]["percent"]
    return _PERCENT.sub(lambda m: _quantity(m, language, percent), text)


def _units(text: str, language: str) -> str:
    def spoken(m: re.Match[str]) -> str:
        one = m.group("b") is None and readers.is_one(m.group("a"))
        return _quantity(m, language, UNITS[m.group("unit")].read(language, one))

    return _UNIT.sub(spoken, text)


def _ordinals(text: str, language: str) -> str:
    def malay(m: re.Match[str]) -> str:
        word = readers.reader("ms").ordinal(int(m.group(2)))
        return word.capitalize() if m.group(1) == "K" else word

    text = _MS_ORDINAL.sub(malay, text)
    return _EN_ORDINAL.sub(lambda m: readers.reader(language).ordinal(int(m.group(1))), text)


def _decades(text: str, language: str) -> str:
    if language == "ms":
        return _MS_DECADE.sub(lambda m: readers.number(m.group(1), "ms") + "an", text)

    def plural(m: re.Match[str]) -> str:
        spoken = readers.number(m.group(1), "en", as_year=len(m.group(1)) == 4)
        head, _, last = spoken.rpartition(" ")
        return (head + " " if head else "") + readers.reader("en").plural(last)

    return _EN_DECADE.sub(plural, text)


def _ranges(text: str, language: str) -> str:
    def spoken(m: re.Match[str]) -> str:
        return (f"{_bare(m.group('a'), language)} {CONNECTIVES[language]['range']} "
                f"{_bare(m.group('b'), language)}")

    return _RANGE.sub(spoken, text)


def _bare(written: str, language: str) -> str:
    year = language == "en" and re.fullmatch(r"1[1-9]\d\d|20\d\d", written) is not None
    return readers.number(written, language, as_year=year)


def _abbreviations(text: str, language: str) -> str:
    for abbreviation in ABBREVIATIONS:
        spoken = abbreviation.ms if language == "ms" else abbreviation.en
        text = abbreviation.pattern.sub(_abbreviation_reader(text, spoken), text)
    return text


def _abbreviation_reader(text: str, spoken: str) -> Callable[[re.Match[str]], str]:
    return lambda m: _keep_period(text, m.end(), m.group(), spoken)


def _numbers(text: str, language: str) -> str:
    text = _THOUSANDS.sub(
        lambda m: readers.reader(language).cardinal(int(float(m.group("a").replace(",", ""))
                                                        * 1000)), text)
    text = _LETTER_DASH_DIGIT.sub(" ", text)

    def spoken(m: re.Match[str]) -> str:
        written = (m.group("sign") or "") + m.group("a")
        start, end = m.span()
        glued_before = start > 0 and text[start - 1].isalpha()
        glued_after = end < len(text) and text[end].isalpha()
        if (glued_before or glued_after) and len(m.group("a")) >= 3 and m.group("a").isdigit():
            words = readers.reader(language).digits(m.group("a"))  # MH370, A380
        else:
            words = _bare(written, language)
        return (" " if glued_before else "") + words + (" " if glued_after else "")

    text = _NUMBER.sub(spoken, text)
    # Whatever the patterns above could not place (digits glued to punctuation) is still read.
    return _ANY_DIGITS.sub(lambda m: f" {readers.reader(language).digits(m.group())} ", text)


def _symbols(text: str, language: str) -> str:
    words = CONNECTIVES[language]
    names = {"&": words["and"], "@": words["at"], "+": words["plus"],
             "=": "sama dengan" if language == "ms" else "equals"}
    text = _AMPERSAND.sub(f" {names['&']} ", text)
    return _SYMBOLS.sub(lambda m: names[m.group(1)], text)


# Rules that only act on text with a digit in it, in order; the address rules come first.
ADDRESS_RULES: tuple[Rule, ...] = (_emails, _urls)
NUMBER_RULES: tuple[Rule, ...] = (
    _ic_numbers, _phones, _dates, _times, _money, _percents, _units, _ordinals, _decades,
    _ranges,
)
_DIGIT = re.compile(r"\d")


def normalize_sentence(sentence: str, language: str) -> str:
    """One sentence (already free of markup) in `language` -> the words to speak.

    Idempotent: a second pass, which only matters for tokens glued together ("2Dr.3"), is
    applied until nothing changes (at most twice; a pass without digits costs microseconds).
    """
    spoken = _normalize_once(sentence, language)
    for _ in range(2):
        again = _normalize_once(spoken, language)
        if again == spoken:
            break
        spoken = again
    return spoken


def _normalize_once(sentence: str, language: str) -> str:
    if language in LATIN_LANGUAGES:
        if "@" in sentence or "." in sentence:
            for rule in ADDRESS_RULES:
                sentence = rule(sentence, language)
        if _DIGIT.search(sentence):
            for rule in NUMBER_RULES:
                sentence = rule(sentence, language)
        sentence = _abbreviations(sentence, language)
        if _DIGIT.search(sentence):
            sentence = _numbers(sentence, language)
            sentence = _abbreviations(sentence, language)  # "2Dr." is "dua Dr." only now
        sentence = _symbols(sentence, language)
        sentence = _SPACE_BEFORE_PUNCT.sub(r"\1", collapse_spaces(sentence))
    return collapse_spaces(sentence)


class NormalizedSentence(TypedDict):
    text: str
    original: str
    language: Language


class NormalizedText(TypedDict):
    text: str
    language: Language
    sentences: list[NormalizedSentence]


def normalize_details(text: str, *, default_language: Language = "ms") -> NormalizedText:
    """The spoken text plus each sentence's language; for showing users what will be said.

    "language" is the language with the most characters; `default_language` applies where a
    sentence has no evidence either way (a bare number, a name).
    """
    sentences: list[NormalizedSentence] = []
    weights: Counter[Language] = Counter()
    for original in split_sentences(clean_markup(text)):
        language = detect_language(original, default_language)
        spoken = normalize_sentence(original, language)
        if spoken:
            sentences.append({"text": spoken, "original": original, "language": language})
            weights[language] += len(spoken)
    main = weights.most_common(1)[0][0] if weights else default_language
    return {"text": " ".join(s["text"] for s in sentences), "language": main,
            "sentences": sentences}


def normalize_text(text: str, *, default_language: Language = "ms") -> str:
    """Markup removed, whitespace collapsed, numbers/abbreviations/symbols read out."""
    return normalize_details(text, default_language=default_language)["text"]
