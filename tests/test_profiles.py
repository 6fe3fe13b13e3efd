from __future__ import annotations

from app.profiles import DEMO, ORPHEUS, resolve_profile


class DictTokenizer:
    def __init__(self, vocab: dict[str, int]):
        self.vocab = vocab

    async def tokenize(self, text: str) -> list[int]:
        return [self.vocab[text]] if text in self.vocab else [1, 2, 3]


def test_orpheus_prompt_is_canopylabs_wrapping():
    prompt = ORPHEUS.build_prompt("tara", "Hi <custom_token_5> there")
    assert prompt == ("<custom_token_3><|begin_of_text|>tara: Hi  there<|eot_id|>"
                      "<custom_token_4><custom_token_5><custom_token_1>")


def test_audio_tokens_text_uses_each_profiles_naming():
    frame = [[0, 1, 2, 3, 4, 5, 4095]]
    assert ORPHEUS.audio_tokens_text(frame).startswith("<custom_token_10><custom_token_4107>")
    assert ORPHEUS.audio_tokens_text(frame).endswith(f"<custom_token_{10 + 6 * 4096 + 4095}>")
    assert DEMO.audio_tokens_text(frame).startswith("<|snac_0_0|><|snac_1_1|>")


def test_clone_prompt_puts_reference_before_the_open_turn():
    prompt = DEMO.build_clone_prompt("ref words", [[1] * 7], "new words")
    assert prompt.startswith("<|im_start|>ref words<|im_end|><|speech_start|><|snac_0_1|>")
    assert prompt.endswith("<|speech_end|><|im_start|>new words<|im_end|><|speech_start|>")


async def test_resolve_profile_auto_finds_ids_from_the_tokenizer():
    base = 500
    vocab = {"<|snac_0_0|>": base, "<|snac_6_4095|>": base + 7 * 4096 - 1,
             "<|speech_end|>": 9, "<|im_end|>": 8}
    resolved = await resolve_profile(DictTokenizer(vocab), "auto")
    assert resolved.profile is DEMO
    assert resolved.layout.audio_base_id == base and resolved.layout.stop_ids == {8, 9}


async def test_resolve_profile_rejects_non_contiguous_audio_tokens():
    import pytest

    from app.errors import EngineUnavailable

    vocab = {"<custom_token_10>": 100, "<custom_token_28681>": 99999, "<custom_token_2>": 5}
    with pytest.raises(EngineUnavailable):
        await resolve_profile(DictTokenizer(vocab), "orpheus")
