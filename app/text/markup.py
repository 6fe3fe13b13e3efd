"""Markup clean-up: control characters, HTML/XML tags, markdown, links, emoji."""

from __future__ import annotations

import re
import unicodedata

_TAGS = re.compile(r"<[^<>]{1,200}>")
_MARKDOWN = re.compile(r"(\*{1,3}|_{2,3}|`{1,3}|^#{1,6}\s*|^\s*[-*+]\s+|^\s*>\s?)", re.MULTILINE)
_LINKS = re.compile(r"\[([^\]]*)\]\([^)]*\)")
# Pictographs, dingbats, flags, skin tones, variation selector and zero-width joiner.
_EMOJI = re.compile(
    "[\U0001F000-\U0001FAFF\U0001F1E6-\U0001F1FF\u2600-\u27BF\u2B00-\u2BFF\u2300-\u23FF"
    "\uFE0F\u200D\u20E3]+")
_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")
_SPACES = re.compile(r"\s+")


def strip_control_chars(text: str) -> str:
    """Every control/format character except newline and tab becomes a space."""
    return "".join(
        ch if ch in "\n\t" or unicodedata.category(ch)[0] != "C" else " " for ch in text
    )


def clean_markup(text: str) -> str:
    """Links keep their label; tags, markdown emphasis/headings/bullets and emoji go.

    Line breaks are kept (they end sentences); other runs of whitespace become one space.
    """
    text = _LINKS.sub(r"\1", text)
    text = _TAGS.sub(" ", text)
    text = _MARKDOWN.sub("", text)
    text = _EMOJI.sub(" ", text)
    return _HORIZONTAL_SPACE.sub(" ", text)


def collapse_spaces(text: str) -> str:
    return _SPACES.sub(" ", text).strip()
