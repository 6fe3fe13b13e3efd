"""Text before prompting: clean-up, Malaysian normalization, segmentation, duration.

Public surface: `strip_control_chars`, `normalize_text`, `normalize_details`,
`detect_language`, `segment_text`, `SentenceBuffer`, `estimate_speech_seconds`.
"""

from __future__ import annotations

from app.text.duration import estimate_speech_seconds
from app.text.language import Language, detect_language
from app.text.markup import strip_control_chars
from app.text.normalize import (
    NormalizedSentence,
    NormalizedText,
    normalize_details,
    normalize_sentence,
    normalize_text,
)
from app.text.segment import SentenceBuffer, segment_text, split_sentences

__all__ = [
    "Language",
    "NormalizedSentence",
    "NormalizedText",
    "SentenceBuffer",
    "detect_language",
    "estimate_speech_seconds",
    "normalize_details",
    "normalize_sentence",
    "normalize_text",
    "segment_text",
    "split_sentences",
    "strip_control_chars",
]
