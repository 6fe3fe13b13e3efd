"""Text segmentation for streaming synthesis: sentences, then clauses, then words.

`segment_text` works on the raw input (before normalization) so that each segment can be
normalized on its own. Sentences end at . ! ? … (followed by whitespace), CJK 。！？, the
Indic danda । ॥ and line breaks. A period does not end a sentence after an abbreviation
(Dr., e.g., Jln., Sdn. Bhd.), an initial ("A. Samad"), a list number at the start of a line,
or inside a number (3.14, RM12.50, 3.30); closing quotes and brackets stay with their
sentence, and nothing splits inside a quotation. Sentences longer than `max_chars` split at
clauses (, ; : — and CJK ，；：、), then at words, then (runs without spaces, e.g. CJK)
every `max_chars` characters. The first segment is kept short for fast first audio.

Invariants: no segment is empty or has surrounding whitespace, and joining the segments with
single spaces keeps every non-space character of the input, in order.
"""

from __future__ import annotations

import bisect
import itertools
import re

from app.text.abbreviations import MAYBE_TERMINAL, NON_TERMINAL

_CLOSERS = "\"'”’)\\]}»」』）"
_TERMINATOR = re.compile(
    rf"\n|(?:\.\.\.|[.!?…])+[{_CLOSERS}]*|[。！？]+[{_CLOSERS}]*|[।॥]+[{_CLOSERS}]*")
_OPEN_QUOTES = "“«「『"
_CLOSE_QUOTES = "”»」』"
_QUOTES = re.compile(r'[“”«»「」『』"]')
_TOKEN_STRIP = "([{\"'“‘«"
_INITIAL = re.compile(r"[A-Z]")
_DOTTED = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")
_LIST_NUMBER = re.compile(r"\d{1,3}")
_NUMBER_NOUN = re.compile(r"\s*(?:IC|KP|K/P|tel|telefon|akaun|siri|pendaftaran|plat)\b")
_CLAUSE = re.compile(r"[,;:—–](?=\s)|—|[，；：、]")
_WORDS = re.compile(r"\S+")
_UPPER_START = re.compile(rf"[{_CLOSERS}“‘«(\[]*[A-Z\u00c0-\u00de]")


def _quote_depths(text: str) -> tuple[list[int], list[int]]:
    """Positions just after each quote mark and the quotation depth from there on."""
    positions: list[int] = []
    depths: list[int] = []
    depth = 0
    for match in _QUOTES.finditer(text):
        mark, start = match.group(), match.start()
        if mark in _OPEN_QUOTES:
            depth += 1
        elif mark in _CLOSE_QUOTES:
            depth = max(0, depth - 1)
        elif start == 0 or text[start - 1].isspace() or text[start - 1] in "([{":
            depth += 1
        else:
            depth = max(0, depth - 1)
        positions.append(match.end())
        depths.append(depth)
    return positions, depths


def _depth_at(position: int, positions: list[int], depths: list[int]) -> int:
    index = bisect.bisect_right(positions, position) - 1
    return depths[index] if index >= 0 else 0


def _period_decision(text: str, start: int, sentence_start: int, closers: str) -> str:
    """For a lone period at `start`: "split", "keep", or "ask" (split iff a capital follows)."""
    token_start = start
    while token_start > sentence_start and not text[token_start - 1].isspace():
        token_start -= 1
    token = text[token_start:start].lstrip(_TOKEN_STRIP)
    lower = token.lower()
    if lower not in NON_TERMINAL and lower not in MAYBE_TERMINAL and not _DOTTED.fullmatch(token):
        token = token.rsplit(".", 1)[-1]  # "see.Dr" -> "Dr"
        lower = token.lower()
    if not closers and (lower in NON_TERMINAL or _INITIAL.fullmatch(token)):
        return "keep"
    if lower == "no" and _NUMBER_NOUN.match(text, start + 1):
        return "keep"  # No. IC, No. tel
    if lower in MAYBE_TERMINAL or _DOTTED.fullmatch(token):
        return "ask"
    if _LIST_NUMBER.fullmatch(token) and not text[sentence_start:token_start].strip():
        return "keep"
    return "split"


def scan_sentences(text: str, *, final: bool = True) -> tuple[list[str], int]:
    """Split `text` into sentences; also return where the last complete sentence ends.

    With `final=False` (a stream that may continue) a boundary counts only once the text
    after it shows it is one: whitespace after the terminator, and a following character
    where the decision depends on it (etc. + capital, ellipsis, closing quote). The text
    after the returned offset is the unfinished remainder, not included in the list.
    """
    positions, depths = _quote_depths(text)
    if final and depths and depths[-1] != 0:
        positions, depths = [], []  # unbalanced quotes: ignore them rather than merge all
    sentences: list[str] = []
    sentence_start = 0
    length = len(text)
    for match in _TERMINATOR.finditer(text):
        start, end = match.span()
        mark = match.group()
        if mark == "\n":
            boundary = start
        else:
            if _depth_at(end, positions, depths) > 0:
                continue
            core = mark.rstrip(_CLOSERS)
            closers = mark[len(core):]
            latin = core[-1] in ".!?…"
            if latin and end < length and not text[end].isspace():
                continue  # 3.14, e.g., example.com, "Hi."Then
            if end == length and not final:
                continue  # more closers or a decimal digit may still come
            if latin:
                if core == ".":
                    decision = _period_decision(text, start, sentence_start, closers)
                elif "!" in core or "?" in core:
                    decision = "split"
                else:
                    decision = "ask"  # an ellipsis ends a sentence before a capital only
                if decision == "split" and any(q in closers for q in "\"”»'’"):
                    decision = "ask"  # “Hi!” she said.
                if decision == "keep":
                    continue
                if decision == "ask":
                    following = text[end:].lstrip()
                    if not following:
                        if not final:
                            continue
                    elif not _UPPER_START.match(following):
                        continue
            boundary = end
        sentence = text[sentence_start:boundary].strip()
        if sentence:
            sentences.append(sentence)
        sentence_start = boundary
    if final:
        rest = text[sentence_start:].strip()
        if rest:
            sentences.append(rest)
        return sentences, length
    return sentences, sentence_start


def split_sentences(text: str) -> list[str]:
    return scan_sentences(text)[0]


def _spans(text: str, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
    """Consecutive spans of `text` cut after each match of `pattern`."""
    cuts = [m.end() for m in pattern.finditer(text)]
    bounds = [0, *[c for c in cuts if 0 < c < len(text)], len(text)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if text[a:b].strip()]


def _word_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _WORDS.finditer(text)]


def _pack(text: str, spans: list[tuple[int, int]], limit: int) -> list[str]:
    """Greedily join consecutive spans into pieces of at most `limit` characters."""
    pieces: list[str] = []
    start: int | None = None
    end = 0
    for a, b in spans:
        if start is not None and len(text[start:b].strip()) > limit:
            pieces.append(text[start:end].strip())
            start = None
        if start is None:
            start = a
        end = b
    if start is not None:
        pieces.append(text[start:end].strip())
    return [p for p in pieces if p]


def _split_words(text: str, limit: int) -> list[str]:
    pieces: list[str] = []
    for piece in _pack(text, _word_spans(text), limit):
        if len(piece) <= limit:
            pieces.append(piece)
        else:  # one word longer than the limit: a CJK run or a URL
            pieces.extend(piece[i:i + limit] for i in range(0, len(piece), limit))
    return pieces


def split_long(sentence: str, limit: int) -> list[str]:
    """A sentence cut at clauses, then words, then characters into pieces <= `limit`."""
    if len(sentence) <= limit:
        return [sentence]
    pieces: list[str] = []
    for piece in _pack(sentence, _spans(sentence, _CLAUSE), limit):
        pieces.extend([piece] if len(piece) <= limit else _split_words(piece, limit))
    return pieces


def split_head(sentence: str, limit: int) -> list[str]:
    """[first clause (or first words up to `limit`), rest] for a sentence over `limit`."""
    if len(sentence) <= limit:
        return [sentence]
    clauses = _spans(sentence, _CLAUSE)
    if len(clauses) > 1 and len(sentence[:clauses[0][1]].strip()) <= limit:
        cut = clauses[0][1]
    else:
        words = _word_spans(sentence)
        cut = 0
        for _, end in words:
            if end > limit:
                break
            cut = end
        if cut == 0 or cut >= len(sentence.rstrip()):
            cut = limit
    head, rest = sentence[:cut].strip(), sentence[cut:].strip()
    return [p for p in (head, rest) if p]


def _pieces(sentences: list[str], max_chars: int, first_max_chars: int | None) -> list[str]:
    pieces: list[str] = []
    for index, sentence in enumerate(sentences):
        parts = [sentence]
        if index == 0 and first_max_chars is not None:
            parts = split_head(sentence, min(first_max_chars, max_chars))
        for part in parts:
            pieces.extend(split_long(part, max_chars))
    return pieces


def segment_text(text: str, *, max_chars: int = 300, first_max_chars: int = 60) -> list[str]:
    """Segments to synthesize one by one; see the module docstring for the rules."""
    if max_chars < 1 or first_max_chars < 1:
        raise ValueError("max_chars and first_max_chars must be positive")
    return _pieces(split_sentences(text), max_chars, first_max_chars)


class SentenceBuffer:
    """Incremental splitter for text that arrives in pieces (possibly mid-word).

    `push` returns the segments that are complete now; an unfinished sentence, a trailing
    abbreviation or a number such as "3." stays buffered until more text shows how it ends.
    A buffered sentence longer than `max_chars` is released at clause or word boundaries,
    and the first segment is released early once it passes `first_max_chars`.
    """

    def __init__(self, *, max_chars: int = 300, first_max_chars: int | None = 60) -> None:
        if max_chars < 1 or (first_max_chars is not None and first_max_chars < 1):
            raise ValueError("max_chars and first_max_chars must be positive")
        self.max_chars = max_chars
        self.first_max_chars = first_max_chars
        self._text = ""
        self._started = False

    @property
    def pending(self) -> str:
        return self._text

    def _release(self, sentences: list[str]) -> list[str]:
        first = None if self._started else self.first_max_chars
        pieces = _pieces(sentences, self.max_chars, first)
        self._started = self._started or bool(pieces)
        return pieces

    def push(self, piece: str) -> list[str]:
        self._text += piece
        sentences, complete_end = scan_sentences(self._text, final=False)
        ready = self._release(sentences)
        rest = self._text[complete_end:]
        limit = self.max_chars
        if not self._started and self.first_max_chars is not None:
            limit = min(limit, self.first_max_chars)
        body = rest.strip()
        if len(body) > limit:
            # The last word may be unfinished: release every piece but the last.
            parts = split_long(body, limit) if self._started else split_head(body, limit)
            if len(parts) > 1:
                self._started = True
                for part in parts[:-1]:
                    ready.extend(split_long(part, self.max_chars))
                rest = parts[-1] + rest[len(rest.rstrip()):]
        self._text = rest.lstrip()
        return ready

    def flush(self) -> list[str]:
        """Everything still buffered, as segments; the buffer is empty afterwards."""
        text, self._text = self._text, ""
        return self._release(split_sentences(text))
