"""Normalization: the hand-checked corpus, number words, languages, idempotency, duration."""

from __future__ import annotations

import csv
import random
import re
from pathlib import Path

import pytest

from app.text import (
    detect_language,
    estimate_speech_seconds,
    normalize_details,
    normalize_text,
    numbers_en,
    numbers_ms,
    segment_text,
    strip_control_chars,
)

CORPUS_PATH = Path(__file__).parent / "data" / "normalization_corpus.tsv"
NUMBER_CATEGORIES = {"cardinal", "decimal", "negative", "thousands", "money", "percent", "date",
                     "year", "time", "ordinal", "range", "unit", "phone", "ic", "codeswitch",
                     "misc"}


def load_corpus() -> list[dict[str, str]]:
    with CORPUS_PATH.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


CORPUS = load_corpus()


def test_corpus_is_large_and_covers_every_category():
    categories = {row["category"] for row in CORPUS}
    assert len(CORPUS) >= 150
    assert NUMBER_CATEGORIES | {"abbreviation", "url_email", "markup", "nonlatin"} == categories
    assert {row["language"] for row in CORPUS} == {"ms", "en", "zh", "ta"}


@pytest.mark.parametrize("row", CORPUS, ids=[f"{r['category']}-{i}" for i, r in
                                             enumerate(CORPUS)])
def test_normalize_text_corpus_row(row):
    details = normalize_details(row["input"])
    assert details["text"] == row["expected"]
    assert details["sentences"][0]["language"] == row["language"]


def test_normalize_text_is_idempotent_over_the_corpus():
    for row in CORPUS:
        once = normalize_text(row["input"])
        assert normalize_text(once) == once, row["input"]
        assert normalize_text(row["expected"]) == row["expected"], row["expected"]


def test_normalize_text_leaves_no_digits_where_numbers_are_read():
    for row in CORPUS:
        if row["category"] in NUMBER_CATEGORIES:
            assert not re.search(r"[0-9]", normalize_text(row["input"])), row["input"]


def test_normalize_text_per_segment_equals_whole_text():
    text = " ".join(row["input"] for row in CORPUS if row["category"] != "markup")
    segments = segment_text(text, max_chars=10_000, first_max_chars=10_000)
    assert " ".join(normalize_text(s) for s in segments) == normalize_text(text)


@pytest.mark.parametrize("n,words", [
    (8, "lapan"), (18, "lapan belas"), (80, "lapan puluh"), (800, "lapan ratus"),
    (10, "sepuluh"), (11, "sebelas"), (100, "seratus"), (1000, "seribu"), (1_000_000, "sejuta"),
    (1_001_000, "sejuta seribu"), (2_000_000_000, "dua bilion"), (10**12, "satu trilion"),
    (-7, "negatif tujuh"),
])
def test_numbers_ms_cardinal(n, words):
    assert numbers_ms.cardinal(n) == words


def test_numbers_ms_never_uses_indonesian_delapan():
    assert all("delapan" not in numbers_ms.cardinal(n) for n in range(0, 2000, 7))


@pytest.mark.parametrize("n,ordinal", [(1, "pertama"), (2, "kedua"), (3, "ketiga"),
                                       (21, "kedua puluh satu")])
def test_numbers_ms_ordinal(n, ordinal):
    assert numbers_ms.ordinal(n) == ordinal


@pytest.mark.parametrize("n,words", [
    (0, "zero"), (15, "fifteen"), (40, "forty"), (101, "one hundred and one"),
    (1_000_001, "one million and one"), (10**15, " ".join(["one"] + ["zero"] * 15)),
])
def test_numbers_en_cardinal(n, words):
    assert numbers_en.cardinal(n) == words


@pytest.mark.parametrize("n,ordinal", [(1, "first"), (2, "second"), (3, "third"), (5, "fifth"),
                                       (9, "ninth"), (20, "twentieth"), (42, "forty-second")])
def test_numbers_en_ordinal(n, ordinal):
    assert numbers_en.ordinal(n) == ordinal


@pytest.mark.parametrize("n,year", [(1999, "nineteen ninety-nine"), (1900, "nineteen hundred"),
                                    (2009, "two thousand and nine"), (2010, "twenty ten"),
                                    (3000, "three thousand")])
def test_numbers_en_year(n, year):
    assert numbers_en.year(n) == year


@pytest.mark.parametrize("text,language", [
    ("Saya nak pergi ke kedai sekarang.", "ms"),
    ("I want to go to the shop now.", "en"),
    ("Meeting tu pukul 3 petang, jangan lupa ya.", "ms"),
    ("So the meeting is at three lah.", "en"),
    ("我今天很高兴。", "zh"),
    ("こんにちは、世界。", "ja"),
    ("안녕하세요.", "ko"),
    ("வணக்கம், எப்படி இருக்கிறீர்கள்?", "ta"),
])
def test_detect_language(text, language):
    assert detect_language(text) == language


def test_detect_language_without_evidence_uses_the_default():
    assert detect_language("Ahmad Zulkifli", default="en") == "en"
    assert detect_language("12345") == "ms"


def test_normalize_details_reports_each_sentence_language():
    details = normalize_details("Saya ada 3 kucing. I have 2 dogs. 我有3个苹果。")
    assert details["text"] == "Saya ada tiga kucing. I have two dogs. 我有3个苹果。"
    assert [(s["language"], s["original"]) for s in details["sentences"]] == [
        ("ms", "Saya ada 3 kucing."), ("en", "I have 2 dogs."), ("zh", "我有3个苹果。")]
    assert details["language"] == "ms"


def test_normalize_details_of_blank_text_has_no_sentences():
    assert normalize_details("  <b></b> ") == {"text": "", "language": "ms", "sentences": []}


def test_normalize_text_keeps_non_latin_digits_and_cleans_only_markup():
    assert normalize_text("**我有** 3 个  苹果。") == "我有 3 个 苹果。"


def test_normalize_text_removes_markup_and_special_tokens_like_before():
    assert normalize_text("**Hello**   <b>world</b> <|speech_end|>") == "Hello world"
    assert normalize_text("  <i></i> ") == ""


def test_normalize_text_leaves_plain_words_alone():
    for text in ("Hello there, how are you?", "TOO_LONG", "FAIL_MIDWAY please", "Hi!"):
        assert normalize_text(text) == text


def test_strip_control_chars_keeps_newlines_and_tabs():
    assert strip_control_chars("a\x00b\nc\td\u200b") == "a b\nc\td "


def test_normalize_text_default_language_applies_to_bare_numbers():
    assert normalize_text("42") == "empat puluh dua"
    assert normalize_text("42", default_language="en") == "forty-two"


def test_estimate_speech_seconds_rates():
    assert estimate_speech_seconds("   ") == 0.0
    assert estimate_speech_seconds("a" * 14) == pytest.approx(1.0)
    assert estimate_speech_seconds("你" * 8, "zh") == pytest.approx(2.0)
    assert estimate_speech_seconds("Hello there. How are you?") > estimate_speech_seconds(
        "Hello there how are you")


def test_estimate_speech_seconds_grows_with_text():
    short = estimate_speech_seconds("Saya pergi ke kedai.", "ms")
    assert estimate_speech_seconds("Saya pergi ke kedai. " * 3, "ms") > 2.5 * short


RANDOM_TOKENS = ["RM", "km", "kg", "pukul", "ke-3", "Dr.", "No.", "saya", "the", "pm", "juta",
                 "Mac", "Jan", "3rd", "www.x.my", "ali@x.com", "012-345 6789", "900101-14-5678",
                 "12/3/2024", "3.30 petang", "3:30pm", "1,234.50", "-5", "50%", "10-20", "2024",
                 "1990s", "90-an", "&", "7", "0.5", ".", ",", "-", ":", "Ali"]


@pytest.mark.parametrize("seed", range(30))
def test_normalize_text_is_idempotent_and_digit_free_on_random_input(seed):
    rng = random.Random(seed)
    text = " ".join(rng.choice(RANDOM_TOKENS) for _ in range(rng.randint(1, 30)))
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert not re.search(r"[0-9]", once)
