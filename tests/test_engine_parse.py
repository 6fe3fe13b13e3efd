from __future__ import annotations

import pytest

from app.engine import parse_token_ids
from app.errors import EngineUnavailable


def test_parse_token_ids_from_return_token_ids():
    assert parse_token_ids({"token_ids": [5, 6, 7], "text": "x"}, "token_ids") == [5, 6, 7]
    assert parse_token_ids({"token_ids": None}, "token_ids") == []


def test_parse_token_ids_from_logprob_tokens_with_several_per_chunk():
    choice = {"logprobs": {"tokens": ["token_id:10", "token_id:128266"]}}
    assert parse_token_ids(choice, "logprobs") == [10, 128266]


def test_parse_token_ids_rejects_text_tokens():
    with pytest.raises(EngineUnavailable):
        parse_token_ids({"logprobs": {"tokens": ["hello"]}}, "logprobs")
