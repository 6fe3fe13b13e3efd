"""Rough speaking time of a text, to size each segment's token budget.

Rates: 14 characters per second for Latin and other alphabetic scripts (spaces and
punctuation included; about 2.5 words/s of Malay or English), 12 per second for Indic
scripts such as Tamil (denser syllables per character), 4 per second for CJK characters
(one syllable each), plus 0.3 s for each sentence or clause break. This is an average, not
a bound: callers should multiply by a generous factor (2x or more) before capping tokens.
Pass normalized text; digits and abbreviations are counted as written.
"""

from __future__ import annotations

import re

LATIN_CHARS_PER_S = 14.0
INDIC_CHARS_PER_S = 12.0
CJK_CHARS_PER_S = 4.0
PAUSE_S = 0.3

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
_INDIC = re.compile(r"[\u0900-\u0dff]")
_PAUSES = re.compile(r"[.!?…;:,。！？，；：、।॥]+(?=\s|$)|[。！？，；：、।॥]")
_SPACES = re.compile(r"\s+")
_CJK_LANGUAGES = frozenset({"zh", "ja", "ko"})


def estimate_speech_seconds(text: str, language: str | None = None) -> float:
    """Seconds a speaker needs for `text`; 0.0 for blank text.

    `language` only matters for CJK ("zh", "ja", "ko"), where Latin letters inside the
    sentence (brand names) are still counted at the Latin rate.
    """
    text = _SPACES.sub(" ", text).strip()
    if not text:
        return 0.0
    cjk = len(_CJK.findall(text))
    indic = len(_INDIC.findall(text))
    pauses = len(_PAUSES.findall(text))
    other = len(text) - cjk - indic
    if language in _CJK_LANGUAGES:
        other -= text.count(" ")  # spaces are not spoken between CJK words
    seconds = (cjk / CJK_CHARS_PER_S + indic / INDIC_CHARS_PER_S
               + max(0, other) / LATIN_CHARS_PER_S + pauses * PAUSE_S)
    return round(seconds, 3)
