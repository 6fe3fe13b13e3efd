"""The NeuCodec demo LM: Scicom's vocabulary, valid codes, and stopping by itself (transformers).

The real vLLM engine serving it is exercised by tests/test_integration_neucodec.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from app.profiles import SCICOM_DEMO, resolve_profile
from demo_model.__main__ import main
from demo_model.neucodec import (
    CODEBOOK_SIZE,
    DEMO_MARKER,
    DEMO_MARKER_ID,
    FIRST_AUDIO_ID,
    IM_END,
    IM_END_ID,
    NEUCODEC_DEMO_NAME,
    PROMPT_TEMPLATE,
    SPEECH_START_ID,
    VOCAB_SIZE,
    audio_token,
    ensure_neucodec_demo_model,
    expected_audio_tokens,
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_neucodec_demo_model(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path) -> Any:
    return transformers.AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def model(model_dir: Path) -> Any:
    return transformers.AutoModelForCausalLM.from_pretrained(model_dir,
                                                             dtype=torch.float32).eval()


def generate(model: Any, tokenizer: Any, text: str, *, temperature: float = 0.0,
             voice: str = "husein", limit: int = 1500) -> list[int]:
    """Token ids after the prompt, up to and including <|im_end|> (a plain KV-cache loop:
    several times faster than `generate` on this 65 k vocabulary)."""
    ids = tokenizer(PROMPT_TEMPLATE.format(voice=voice, text=text),
                    add_special_tokens=False)["input_ids"]
    out: list[int] = []
    with torch.inference_mode():
        step = model(torch.tensor([ids]), use_cache=True)
        while len(out) < limit:
            logits = step.logits[0, -1]
            if temperature:
                token = int(torch.multinomial(torch.softmax(logits / temperature, -1), 1))
            else:
                token = int(logits.argmax())
            out.append(token)
            if token == IM_END_ID:
                break
            step = model(torch.tensor([[token]]), past_key_values=step.past_key_values,
                         use_cache=True)
    return out


def test_tokenizer_has_scicoms_tokens_at_contiguous_ids(tokenizer: Any) -> None:
    encode = tokenizer.convert_tokens_to_ids
    assert encode([audio_token(0), audio_token(CODEBOOK_SIZE - 1)]) == [FIRST_AUDIO_ID,
                                                                         VOCAB_SIZE - 1]
    assert encode([DEMO_MARKER, "<|speech_start|>"]) == [DEMO_MARKER_ID, SPEECH_START_ID]
    assert tokenizer.eos_token == IM_END


async def test_the_proxy_resolves_it_as_the_scicom_demo(tokenizer: Any) -> None:
    class Tokenizer:
        async def tokenize(self, text: str) -> list[int]:
            return tokenizer(text, add_special_tokens=False)["input_ids"]

    resolved = await resolve_profile(Tokenizer(), "auto")
    assert resolved.profile is SCICOM_DEMO
    assert resolved.layout.audio_base_id == FIRST_AUDIO_ID
    assert resolved.layout.stop_ids == {IM_END_ID}


@pytest.mark.parametrize("text", ["Hi.", "Selamat pagi! Hello there."])
def test_greedy_stops_by_itself_after_four_tokens_per_prompt_byte(
        model: Any, tokenizer: Any, text: str) -> None:
    out = generate(model, tokenizer, text)
    assert out[-1] == IM_END_ID
    audio = out[:-1]
    assert all(FIRST_AUDIO_ID <= i < VOCAB_SIZE for i in audio)
    assert len(audio) == expected_audio_tokens(len(f"husein: {text}".encode()))
    assert len(set(audio)) == len(audio)  # one long cycle: no code repeats


def test_sampling_emits_only_codes_then_stops_near_the_same_length(
        model: Any, tokenizer: Any) -> None:
    torch.manual_seed(0)
    text = "Sampling keeps to codes."
    out = generate(model, tokenizer, text, temperature=1.0)
    assert out[-1] == IM_END_ID and all(FIRST_AUDIO_ID <= i < VOCAB_SIZE for i in out[:-1])
    assert abs(len(out) - 1 - expected_audio_tokens(len(f"husein: {text}".encode()))) <= 5


def test_config_marks_a_generated_demo_model(model_dir: Path) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    assert config["tts_demo"] is True and config["vocab_size"] == VOCAB_SIZE
    assert config["eos_token_id"] == IM_END_ID
    size = sum(p.stat().st_size for p in model_dir.iterdir())
    assert size < 64 * 1024 * 1024


def test_main_builds_the_neucodec_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       model_dir: Path) -> None:
    assert main(["--codec", "neucodec", "--out", str(model_dir.parent)]) == 0
    assert capsys.readouterr().out.strip() == str((model_dir.parent / NEUCODEC_DEMO_NAME)
                                                  .resolve())
