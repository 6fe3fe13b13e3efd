"""Segmentation: sentence rules, clause/word fallbacks, lossless joins, the streaming buffer."""

from __future__ import annotations

import random

import pytest

from app.text import SentenceBuffer, segment_text, split_sentences
from tests.test_text_normalize import CORPUS

BIG = 10_000


def non_space(text: str) -> str:
    return "".join(text.split())


def assert_well_formed(segments: list[str], text: str, max_chars: int) -> None:
    assert all(s and s == s.strip() and len(s) <= max_chars for s in segments)
    assert non_space(" ".join(segments)) == non_space(text)


@pytest.mark.parametrize("text,sentences", [
    ("He said “Hi.” Then left.", ["He said “Hi.”", "Then left."]),
    ('She said "Stop!" Then ran.', ['She said "Stop!"', "Then ran."]),
    ("Dr. Ali tinggal di Jln. Ampang. Dia doktor.", ["Dr. Ali tinggal di Jln. Ampang.",
                                                     "Dia doktor."]),
    ("Bring fruit, e.g. apples, i.e. food. Then go.", ["Bring fruit, e.g. apples, i.e. food.",
                                                       "Then go."]),
    ("ABC Sdn. Bhd. is a firm. It sells etc. Then stop.", ["ABC Sdn. Bhd. is a firm.",
                                                           "It sells etc.", "Then stop."]),
    ("Rumah di Tmn. Melawati, No. 5 sahaja. Okay.", ["Rumah di Tmn. Melawati, No. 5 sahaja.",
                                                     "Okay."]),
    ("Mr. Tan and Prof. Lee came. Bye.", ["Mr. Tan and Prof. Lee came.", "Bye."]),
    ("Pi is 3.14 here. It costs RM12.50 now.", ["Pi is 3.14 here.", "It costs RM12.50 now."]),
    ("Jumpa pukul 3.30 petang. Okay!", ["Jumpa pukul 3.30 petang.", "Okay!"]),
    ("A. Samad Said menulis. J. K. Rowling juga.", ["A. Samad Said menulis.",
                                                    "J. K. Rowling juga."]),
    ("“Wait… what?” she said. Fine.", ["“Wait… what?” she said.", "Fine."]),
    ("Saya... tak tahu. Okay.", ["Saya... tak tahu.", "Okay."]),
    ("Really?! Yes… Maybe.", ["Really?!", "Yes…", "Maybe."]),
    ("你好。我是小明！你呢？", ["你好。", "我是小明！", "你呢？"]),
    ("他说：“好。”然后走了。", ["他说：“好。”", "然后走了。"]),
    ("वह आया। फिर गया॥", ["वह आया।", "फिर गया॥"]),
    ("1. First item\n2. Second item", ["1. First item", "2. Second item"]),
    ("Visit example.com today. Thanks.", ["Visit example.com today.", "Thanks."]),
    ("(See the note.) Then go.", ["(See the note.)", "Then go."]),
    ("No. IC saya 900101-14-5678. Terima kasih.", ["No. IC saya 900101-14-5678.",
                                                   "Terima kasih."]),
])
def test_split_sentences_rules(text, sentences):
    assert split_sentences(text) == sentences


def test_segment_text_first_segment_is_its_first_clause():
    text = ("This is a fairly long first sentence, which keeps going well beyond sixty "
            "characters before it ends. Short.")
    assert segment_text(text) == [
        "This is a fairly long first sentence,",
        "which keeps going well beyond sixty characters before it ends.", "Short."]


def test_segment_text_first_segment_without_clause_splits_at_a_word():
    text = "word " * 30
    segments = segment_text(text, first_max_chars=20)
    assert segments[0] == "word word word word"
    assert_well_formed(segments, text, 300)


def test_segment_text_short_first_sentence_is_kept_whole():
    assert segment_text("Hi. How are you?") == ["Hi.", "How are you?"]


def test_segment_text_long_sentence_splits_at_clauses():
    clause = "satu dua tiga empat lima enam tujuh lapan sembilan"
    text = f"{clause}, {clause}; {clause}: {clause} — {clause}."
    segments = segment_text(text, max_chars=60, first_max_chars=BIG)
    assert segments == [f"{clause},", f"{clause};", f"{clause}:", f"{clause} —", f"{clause}."]


def test_segment_text_without_punctuation_splits_at_words():
    text = " ".join(f"w{i}" for i in range(200))
    segments = segment_text(text, max_chars=50, first_max_chars=BIG)
    assert len(segments) > 10
    assert_well_formed(segments, text, 50)
    assert all(not s.startswith(" ") and s.split()[0].startswith("w") for s in segments)


def test_segment_text_hard_splits_cjk_runs():
    text = "汉" * 130
    assert segment_text(text, max_chars=50, first_max_chars=BIG) == ["汉" * 50, "汉" * 50,
                                                                       "汉" * 30]


def test_segment_text_cjk_clauses_need_no_spaces():
    text = "我" * 40 + "，" + "你" * 40 + "。"
    assert segment_text(text, max_chars=50, first_max_chars=BIG) == ["我" * 40 + "，",
                                                                      "你" * 40 + "。"]


def test_segment_text_rejects_non_positive_limits():
    with pytest.raises(ValueError):
        segment_text("Hi.", max_chars=0)


def test_segment_text_of_blank_text_is_empty():
    assert segment_text(" \n\t ") == []


def test_segment_text_is_lossless_over_the_corpus():
    for row in CORPUS:
        assert_well_formed(segment_text(row["input"]), row["input"], 300)
    text = " ".join(row["input"] for row in CORPUS)
    for max_chars, first in ((300, 60), (40, 20), (15, 5)):
        assert_well_formed(segment_text(text, max_chars=max_chars, first_max_chars=first),
                           text, max_chars)


ALPHABET = list("abcdefghij ABCDEF 0123456789 ..., ;:!?…“”\"'()\n—–-汉字。！？，、।") + [
    "Dr.", "e.g.", "Jln.", "Sdn. Bhd.", "3.14", "RM12.50", "etc.", "No. ", "3.", " ", " "]


@pytest.mark.parametrize("seed", range(40))
def test_segment_text_is_lossless_on_random_input(seed):
    rng = random.Random(seed)
    text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 400)))
    max_chars = rng.choice([5, 20, 80, 300])
    segments = segment_text(text, max_chars=max_chars, first_max_chars=rng.choice([3, 10, 60]))
    assert_well_formed(segments, text, max_chars)


def feed(buffer: SentenceBuffer, pieces: list[str]) -> list[list[str]]:
    return [buffer.push(piece) for piece in pieces]


def test_sentence_buffer_handles_pieces_split_mid_word():
    buffer = SentenceBuffer()
    assert feed(buffer, ["Hel", "lo wor", "ld. Ho", "w are", " you? I'm"]) == [
        [], [], ["Hello world."], [], ["How are you?"]]
    assert buffer.pending == "I'm"
    assert buffer.flush() == ["I'm"]
    assert buffer.flush() == []


def test_sentence_buffer_holds_abbreviations_split_mid_way():
    buffer = SentenceBuffer()
    assert feed(buffer, ["Jumpa D", "r", ".", " Ali di Jln", ". Ampang", ". Esok"]) == [
        [], [], [], [], [], ["Jumpa Dr. Ali di Jln. Ampang."]]
    assert buffer.flush() == ["Esok"]


def test_sentence_buffer_holds_a_number_that_may_continue():
    buffer = SentenceBuffer()
    assert buffer.push("Jumpa pukul 3.") == []
    assert buffer.push("30 petang. ") == ["Jumpa pukul 3.30 petang."]


def test_sentence_buffer_holds_maybe_final_abbreviation_until_next_word():
    buffer = SentenceBuffer()
    assert buffer.push("Beli buah, sayur dll. ") == []
    assert buffer.push("dan") == []
    assert buffer.push(" roti. Kemudian") == ["Beli buah, sayur dll. dan roti."]


def test_sentence_buffer_waits_for_closing_quotes():
    buffer = SentenceBuffer()
    assert buffer.push("He said “Hi.") == []
    assert buffer.push("” Then") == ["He said “Hi.”"]


def test_sentence_buffer_releases_a_long_first_sentence_early():
    buffer = SentenceBuffer(first_max_chars=20)
    assert buffer.push("This first sentence, which is long") == ["This first sentence,"]
    assert buffer.pending == "which is long"


def test_sentence_buffer_releases_runaway_text_at_word_boundaries():
    buffer = SentenceBuffer(max_chars=30, first_max_chars=None)
    released = buffer.push("kata " * 20 + "sete")
    assert released and all(len(s) <= 30 for s in released)
    assert buffer.pending.endswith("sete")
    assert non_space(" ".join(released + buffer.flush())) == non_space("kata " * 20 + "sete")


@pytest.mark.parametrize("seed", range(20))
def test_sentence_buffer_matches_whole_text_splitting(seed):
    rng = random.Random(seed)
    text = " ".join(row["input"] for row in rng.sample(CORPUS, 12))
    cuts = sorted(rng.sample(range(1, len(text)), 25))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    buffer = SentenceBuffer(max_chars=BIG, first_max_chars=None)
    released = [s for piece in pieces for s in buffer.push(piece)] + buffer.flush()
    assert released == split_sentences(text)
