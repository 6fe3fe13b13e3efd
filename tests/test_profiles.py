from __future__ import annotations

import pytest

from app.codec.info import NEUCODEC, SNAC_24KHZ
from app.errors import EngineUnavailable
from app.profiles import (
    DEMO,
    ORPHEUS,
    PROFILES,
    SCICOM,
    SCICOM_DEMO,
    ResolvedProfile,
    check_codec,
    choose_codec,
    resolve_profile,
)


class DictTokenizer:
    """Single ids for the words in `vocab` and for a profile's whole audio range at `base`."""

    def __init__(self, vocab: dict[str, int], audio: tuple[object, int] | None = None):
        self.vocab = dict(vocab)
        if audio is not None:
            profile, base = audio
            layout = profile.codec_layout
            for i in range(layout.codes_per_frame * layout.codebook_size):
                self.vocab[profile.audio_token(*divmod(i, layout.codebook_size))] = base + i

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
    vocab = {"<|speech_end|>": 9, "<|im_end|>": 8}
    resolved = await resolve_profile(DictTokenizer(vocab, (DEMO, base)), "auto")
    assert resolved.profile is DEMO
    assert resolved.layout.audio_base_id == base and resolved.layout.stop_ids == {8, 9}


async def test_resolve_profile_rejects_non_contiguous_audio_tokens():
    vocab = {"<custom_token_10>": 100, "<custom_token_28681>": 99999, "<custom_token_2>": 5}
    with pytest.raises(EngineUnavailable):
        await resolve_profile(DictTokenizer(vocab), "orpheus")


async def test_resolve_profile_rejects_a_gap_inside_the_audio_range():
    tokenizer = DictTokenizer({"<|im_end|>": 3}, (SCICOM, 151_670))
    tokenizer.vocab["<|s_32768|>"] += 1  # first and last in place, the middle shifted
    with pytest.raises(EngineUnavailable):
        await resolve_profile(tokenizer, "scicom")


def test_scicom_prompts_follow_the_model_card():
    assert SCICOM.build_prompt("husein", "Hi <|s_5|>there") == (
        "<|im_start|>husein: Hi there<|speech_start|>")
    assert SCICOM.build_clone_prompt("ref words", [[7], [65_535]], "new words") == (
        "<|im_start|>ref words<|speech_start|><|s_7|><|s_65535|><|im_end|>"
        "<|im_start|>new words<|speech_start|>")
    assert (SCICOM.first_audio_token, SCICOM.last_audio_token) == ("<|s_0|>", "<|s_65535|>")
    assert SCICOM.codec_layout == NEUCODEC and SCICOM.stop_tokens == ("<|im_end|>",)
    assert SCICOM.max_frames_per_input_char is not None and not SCICOM.is_demo


async def test_resolve_profile_auto_tells_the_scicom_demo_from_the_real_model():
    real = DictTokenizer({"<|im_end|>": 151_645}, (SCICOM, 151_670))
    resolved = await resolve_profile(real, "auto")
    assert resolved.profile is SCICOM
    assert (resolved.layout.audio_base_id, resolved.layout.tokens_per_frame,
            resolved.layout.codebook_size, resolved.layout.stop_ids) == (
        151_670, 1, 65_536, {151_645})
    demo = DictTokenizer({"<|im_end|>": 257, "<|tts_demo|>": 259}, (SCICOM, 260))
    assert (await resolve_profile(demo, "auto")).profile is SCICOM_DEMO


def test_profile_registry_is_the_settings_list_of_profiles():
    from app.config import Settings

    assert list(PROFILES) == ["orpheus", "demo", "scicom-demo", "scicom"]
    for name in PROFILES:
        assert Settings(MODEL_PROFILE=name).model_profile == name
    with pytest.raises(ValueError):
        Settings(MODEL_PROFILE="neucodec-ish")


def test_choose_codec_follows_the_profile_or_refuses_a_mismatch():
    assert choose_codec("auto", SCICOM) == "neucodec"
    assert choose_codec("auto", ORPHEUS) == "snac"
    assert choose_codec("neucodec", SCICOM) == "neucodec"
    with pytest.raises(ValueError, match="CODEC=snac"):
        choose_codec("snac", SCICOM)


def test_check_codec_refuses_a_codec_whose_frames_differ():
    from app.codec.layout import TokenLayout

    resolved = ResolvedProfile(SCICOM, TokenLayout.for_codec(NEUCODEC, 10, frozenset({1})))
    check_codec(resolved, NEUCODEC)
    with pytest.raises(ValueError):
        check_codec(resolved, SNAC_24KHZ)
