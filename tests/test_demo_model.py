"""The generated demo speech LM: tokenizer contract, frame validity under transformers, caching.

vLLM serving the same directory is checked by hand (it needs a separate install and ~40 s to
start); transformers greedy and vLLM greedy agreed on all 700 tokens when last checked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from demo_model import (
    CODEBOOK_SIZE,
    DEMO_MODEL_NAME,
    FIRST_SNAC_ID,
    FRAME_SIZE,
    IM_END,
    IM_END_ID,
    IM_START,
    IM_START_ID,
    PROMPT_TEMPLATE,
    SPEECH_END,
    SPEECH_END_ID,
    SPEECH_START,
    SPEECH_START_ID,
    VOCAB_SIZE,
    build_demo_model,
    ensure_demo_model,
    snac_token,
    snac_token_id,
)
from demo_model.__main__ import main

GENERATED_TOKENS = 700
HELLO = PROMPT_TEMPLATE.format(voice="husein", text="Hello there.")


@dataclass(frozen=True)
class FrameReport:
    frames: int
    valid_frames: int
    distinct_codes: list[int]  # per frame position, over the first 100 frames
    tail: list[int]  # whatever follows the audio tokens

    @property
    def valid_fraction(self) -> float:
        return self.valid_frames / self.frames


def report_frames(token_ids: list[int]) -> FrameReport:
    audio_end = next((i for i, t in enumerate(token_ids) if t < FIRST_SNAC_ID), len(token_ids))
    offsets = [t - FIRST_SNAC_ID for t in token_ids[:audio_end]]
    frames = [
        offsets[i : i + FRAME_SIZE] for i in range(0, len(offsets) - FRAME_SIZE + 1, FRAME_SIZE)
    ]
    valid = sum(
        all(offset // CODEBOOK_SIZE == position for position, offset in enumerate(frame))
        for frame in frames
    )
    distinct = [
        len({frame[position] % CODEBOOK_SIZE for frame in frames[:100]})
        for position in range(FRAME_SIZE)
    ]
    return FrameReport(len(frames), valid, distinct, token_ids[audio_end:])


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo-cache")


@pytest.fixture(scope="module")
def model_dir(cache_dir: Path) -> Path:
    return ensure_demo_model(cache_dir)


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path) -> Any:
    return transformers.AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def model(model_dir: Path) -> Iterator[Any]:
    # One thread: the model is tiny, and on a busy 2-core machine a second thread that waits
    # for a core stalls every op (700-token runs went from ~1 s to ~40 s).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield transformers.AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=torch.float32
        ).eval()
    finally:
        torch.set_num_threads(threads)


def generate(
    model: Any,
    tokenizer: Any,
    prompt: str,
    temperature: float,
    max_new_tokens: int = GENERATED_TOKENS,
) -> list[int]:
    inputs = tokenizer(prompt, return_tensors="pt")
    if temperature == 0:
        sampling: dict[str, Any] = {"do_sample": False}
    else:
        # Plain temperature sampling, as vLLM does it, not transformers' default top-k 50.
        sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
    # (1, prompt + new)
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, **sampling)
    return output[0, inputs.input_ids.shape[1] :].tolist()


def test_tokenizer_special_tokens_are_single_ids(tokenizer: Any) -> None:
    for name, token_id in [
        (IM_START, IM_START_ID),
        (IM_END, IM_END_ID),
        (SPEECH_START, SPEECH_START_ID),
        (SPEECH_END, SPEECH_END_ID),
        (snac_token(0, 0), FIRST_SNAC_ID),
        (snac_token(3, 1234), snac_token_id(3, 1234)),
        (snac_token(6, 4095), VOCAB_SIZE - 1),
    ]:
        assert tokenizer.encode(name, add_special_tokens=False) == [token_id]


def test_tokenizer_audio_token_ids_are_contiguous(tokenizer: Any) -> None:
    names = [snac_token(p, c) for p in range(FRAME_SIZE) for c in range(CODEBOOK_SIZE)]
    assert tokenizer.convert_tokens_to_ids(names) == list(range(FIRST_SNAC_ID, VOCAB_SIZE))
    assert len(tokenizer) == VOCAB_SIZE


def test_tokenizer_prompt_is_bytes_between_specials_without_bos(tokenizer: Any) -> None:
    ids = tokenizer(HELLO).input_ids
    assert ids == [IM_START_ID, *b"husein: Hello there.", IM_END_ID, SPEECH_START_ID]
    assert tokenizer.bos_token is None
    assert tokenizer.eos_token == IM_END


def test_tokenizer_round_trips_any_text(tokenizer: Any) -> None:
    text = "Héllo, wörld ✓ — 你好\n\ttabs"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert ids == list(text.encode())
    assert tokenizer.decode(ids) == text


def test_config_marks_a_generated_demo_model(model_dir: Path) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    assert config["tts_demo"] is True
    assert (model_dir / "DEMO_MODEL.md").read_text().startswith(f"# {DEMO_MODEL_NAME}")
    assert config["architectures"] == ["Qwen3ForCausalLM"]
    assert (config["hidden_size"], config["num_hidden_layers"], config["head_dim"]) == (64, 2, 32)
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (4, 2)
    assert config["tie_word_embeddings"] is False
    assert config["max_position_embeddings"] == 8192
    assert config["vocab_size"] == VOCAB_SIZE
    assert config["eos_token_id"] == IM_END_ID
    generation_config = json.loads((model_dir / "generation_config.json").read_text())
    assert generation_config["eos_token_id"] == IM_END_ID
    assert (model_dir / "model.safetensors").is_file()


@pytest.fixture(scope="module")
def hello_greedy(model: Any, tokenizer: Any) -> list[int]:
    return generate(model, tokenizer, HELLO, temperature=0)


def test_greedy_frames_valid_varied_and_deterministic(
    model: Any, tokenizer: Any, hello_greedy: list[int]
) -> None:
    report = report_frames(hello_greedy)
    assert report.frames == GENERATED_TOKENS // FRAME_SIZE
    assert report.valid_fraction >= 0.99
    assert min(report.distinct_codes) >= 90  # greedy walks one long cycle, not a short loop
    assert generate(model, tokenizer, HELLO, temperature=0) == hello_greedy


@pytest.mark.parametrize("temperature", [0.6, 0.8, 1.0])
def test_sampling_frames_valid(model: Any, tokenizer: Any, temperature: float) -> None:
    torch.manual_seed(1)
    generated = generate(model, tokenizer, HELLO, temperature=temperature)
    report = report_frames(generated)
    assert report.valid_fraction >= 0.99
    assert min(report.distinct_codes) >= report.frames // 2
    # The only way out of the audio is <|speech_end|> then eos, right after a whole frame.
    assert report.tail in ([], [SPEECH_END_ID, IM_END_ID])
    assert len(generated) == GENERATED_TOKENS or report.tail


@pytest.mark.parametrize(
    ("voice", "text"),
    [
        ("husein", "Goodbye."),
        ("alice", "Hello there."),
        ("husein", "Hello there!"),
        ("husein", "hello there."),
    ],
)
def test_greedy_codes_depend_on_prompt(
    model: Any, tokenizer: Any, hello_greedy: list[int], voice: str, text: str
) -> None:
    tokens = 10 * FRAME_SIZE
    other = generate(model, tokenizer, PROMPT_TEMPLATE.format(voice=voice, text=text), 0, tokens)
    assert report_frames(other).valid_fraction == 1.0
    assert other != hello_greedy[:tokens]


def test_first_code_differs_across_unrelated_prompts(model: Any, tokenizer: Any) -> None:
    prompts = [
        PROMPT_TEMPLATE.format(voice=voice, text=text)
        for voice in ("husein", "alice", "bob")
        for text in (
            "The quick brown fox jumps over the lazy dog.",
            "Call me Ishmael.",
            "Please confirm your appointment for Tuesday at three.",
            "Hi!",
        )
    ]
    first_codes = []
    with torch.inference_mode():
        for prompt in prompts:
            ids = tokenizer(prompt, return_tensors="pt").input_ids  # (1, T)
            first_codes.append(model(ids).logits[0, -1].argmax().item())
    assert len(set(first_codes)) == len(prompts)
    assert all(
        snac_token_id(0, 0) <= code <= snac_token_id(0, CODEBOOK_SIZE - 1) for code in first_codes
    )


def test_speech_end_possible_only_at_frame_boundaries(model: Any, tokenizer: Any) -> None:
    prompt = tokenizer(HELLO).input_ids
    generated = generate(model, tokenizer, HELLO, temperature=0, max_new_tokens=10 * FRAME_SIZE)
    sequence = torch.tensor([prompt + generated])  # (1, T)
    with torch.inference_mode():
        # (N, V): the prediction of each generated token
        logits = model(sequence).logits[0, len(prompt) - 1 : -1]
    probabilities = logits.softmax(dim=-1)  # temperature 1
    for index, row in enumerate(probabilities):
        position = index % FRAME_SIZE
        audio = row[snac_token_id(position, 0) : snac_token_id(position, CODEBOOK_SIZE - 1) + 1]
        if position == 0 and index > 0:
            assert 1e-6 < row[SPEECH_END_ID] < 1e-2  # sampling can end here, rarely
        else:
            assert row[SPEECH_END_ID] < 1e-9
        assert audio.sum() > 1 - 1e-2

    after_end = torch.tensor([prompt + generated[:FRAME_SIZE] + [SPEECH_END_ID]])
    with torch.inference_mode():
        assert model(after_end).logits[0, -1].argmax().item() == IM_END_ID


def test_ensure_demo_model_reuses_the_cached_build(cache_dir: Path, model_dir: Path) -> None:
    weights = model_dir / "model.safetensors"
    built_at = weights.stat().st_mtime_ns
    assert ensure_demo_model(cache_dir) == model_dir == cache_dir / DEMO_MODEL_NAME
    assert weights.stat().st_mtime_ns == built_at
    assert [path.name for path in cache_dir.iterdir()] == [DEMO_MODEL_NAME]  # no staging leftovers


def test_build_demo_model_is_reproducible_per_seed(tmp_path: Path, model_dir: Path) -> None:
    rebuilt = build_demo_model(tmp_path / "again", seed=0)
    assert (rebuilt / "model.safetensors").read_bytes() == (
        model_dir / "model.safetensors"
    ).read_bytes()
    assert (rebuilt / "tokenizer.json").read_bytes() == (model_dir / "tokenizer.json").read_bytes()


def test_main_prints_the_model_path(
    cache_dir: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--out", str(cache_dir)]) == 0
    assert capsys.readouterr().out == f"{model_dir.resolve()}\n"
