"""Input text clean-up before prompting."""

from __future__ import annotations

import re
import unicodedata

_TAGS = re.compile(r"<[^<>]{1,200}>")
_MARKDOWN = re.compile(r"(\*{1,3}|_{2,3}|`{1,3}|^#{1,6}\s*|^\s*[-*+]\s+|^\s*>\s?)", re.MULTILINE)
_LINKS = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_SPACES = re.compile(r"\s+")


def strip_control_chars(text: str) -> str:
    return "".join(
        ch if ch in "\n\t" or unicodedata.category(ch)[0] != "C" else " " for ch in text
    )


def normalize_text(text: str) -> str:
    """Plain clean-up applied for `normalize_malaysian`: markup removed, whitespace collapsed.

    (Malaysian-specific expansion of numbers and abbreviations is not implemented yet.)
    """
    text = _LINKS.sub(r"\1", text)
    text = _TAGS.sub(" ", text)
    text = _MARKDOWN.sub("", text)
    return _SPACES.sub(" ", text).strip()
