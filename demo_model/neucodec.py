"""Build the NeuCodec demo speech LM: a hand-wired tiny Qwen3 that speaks Scicom's vocabulary.

Same idea as the SNAC demo (build.py): nothing is trained; the weights make a "bigram machine"
whose residual stream carries the current token's embedding, and that embedding points at the
token to come next. Its prompts and tokens are Scicom-intl/Multilingual-TTS-1.7B-Base's
(`<|im_start|>{voice}: {text}<|speech_start|>`, then `<|s_0|>`..`<|s_65535|>`, one NeuCodec code
each, ended by `<|im_end|>`), plus a marker token `<|tts_demo|>` that tells the proxy it is the
demo. Unlike the SNAC demo it **stops by itself**, after about 4 tokens (80 ms) per prompt byte.

Hidden layout (64 dims)::

    0      speaking: the current token is <|speech_start|> or an audio token
    1      text: the current token is a prompt byte (the value layer 0 averages)
    2      fuel: layer 0's output, the fraction of the context so far that is text
    3      unused
    4..63  code space: fixed random unit vectors s[c], one per code

- Output row of `<|s_c|>` = POSITION_OUT·e_0 + CODE_OUT·s[c]; embedding of `<|s_c|>` =
  e_0 + CODE_IN·s[π(c)], so greedy decoding follows the permutation π, one 65,536-long cycle
  (no code repeats within 65,536 tokens). `<|speech_start|>` points at code 0.
- Layer 0 attention has zero queries and keys, so every head weighs the context uniformly; its
  values are the text dim, so it writes `fuel` = (prompt bytes) / (tokens so far) into dim 2.
- `<|im_end|>`'s output row is STOP_BIAS·e_0 − STOP_GAIN·e_2: it beats the designated code
  once fuel falls below STOP_FRACTION. With n prompt bytes (speaker, ": " and text), that is
  after ≈ n·(1/STOP_FRACTION − 1) − 2 audio tokens. Both logits are scaled alike by the final
  norm, so the crossing does not depend on the norm.
- The prompt does not choose the codes: every prompt gives the same sequence, of a length set
  by its byte count. A cloning prompt's reference audio dilutes the fuel (it stops sooner).
- Everything else (all MLPs, the second layer) is zero. Checked in float32 only.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from demo_model.build import _byte_alphabet, ensure_built

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer

logger = logging.getLogger(__name__)

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPEECH_START = "<|speech_start|>"
DEMO_MARKER = "<|tts_demo|>"
AUDIO_TOKEN_TEMPLATE = "<|s_{code}|>"
PROMPT_TEMPLATE = IM_START + "{voice}: {text}" + SPEECH_START
CODEBOOK_SIZE = 65536

BYTE_TOKEN_COUNT = 256
IM_START_ID = 256
IM_END_ID = 257
SPEECH_START_ID = 258
DEMO_MARKER_ID = 259
FIRST_AUDIO_ID = 260
VOCAB_SIZE = FIRST_AUDIO_ID + CODEBOOK_SIZE

# Bump whenever the weights or the tokenizer change, so cached copies are rebuilt.
NEUCODEC_DEMO_VERSION = 1
NEUCODEC_DEMO_NAME = f"tts-demo-qwen3-neucodec-v{NEUCODEC_DEMO_VERSION}"

# Stop once prompt bytes are under this fraction of the context: ~4 tokens per byte. Not 0.2
# itself: that would put an exact tie between <|im_end|> and the next code at 4n - 2 tokens.
STOP_FRACTION = 0.1997
_HIDDEN_SIZE = 64
_HEAD_DIM = 32  # vLLM's CPU attention rejects 16
_ATTENTION_HEADS = 4
_KV_HEADS = 2
_INTERMEDIATE_SIZE = 128
_LAYERS = 2
_MAX_POSITIONS = 8192
_RMS_EPS = 1e-6

_SPEAKING_DIM = 0
_TEXT_DIM = 1
_FUEL_DIM = 2
_CODE_DIMS = slice(4, _HIDDEN_SIZE)
_CODE_DIM_COUNT = _HIDDEN_SIZE - _CODE_DIMS.start

_POSITION_OUT = 6.0
_CODE_OUT = 2.25
_CODE_IN = 0.5
# Layer 0's value is the text dim after input RMSNorm: sqrt(hidden) = 8 on a byte, 0 elsewhere.
# o_proj scales it so that dim 2 holds the plain fraction.
_FUEL_OUT = 1.0 / _HIDDEN_SIZE**0.5
_STOP_GAIN = 40.0  # logits (before the final norm's ~7x) per unit of fuel
_STOP_BIAS = _POSITION_OUT + _CODE_OUT * _CODE_IN + _STOP_GAIN * STOP_FRACTION

_CARD = """\
# {name}: a generated demo model (it makes noise, not speech)

Written by `python -m demo_model --codec neucodec` (package `demo_model/`, seed {seed}). A
hand-wired 8.5 M-parameter Qwen3 (nearly all of it embedding and output rows) with no training,
in the vocabulary of Scicom-intl/Multilingual-TTS-1.7B-Base; decoded with NeuCodec, its output is
noise.

- Prompt: `<|im_start|>{{voice}}: {{text}}<|speech_start|>` (no BOS).
- Output: `<|s_{{c}}|>` for NeuCodec code c in 0..65535 at id {first} + c, then `<|im_end|>`
  (eos) after about {per_byte:.0f} tokens per prompt byte.
- The codes follow one fixed 65,536-long cycle; prompts differ only in how long they speak.
- Text is byte-level: ids 0..255 are bytes, then `<|im_start|>`={im_start}, `<|im_end|>`={im_end},
  `<|speech_start|>`={speech_start}, `<|tts_demo|>`={marker}.
- Checked in float32 only.
"""


def audio_token(code: int) -> str:
    return AUDIO_TOKEN_TEMPLATE.format(code=code)


def expected_audio_tokens(prompt_bytes: int) -> int:
    """Audio tokens greedy decoding emits before <|im_end|>, for a prompt of that many bytes
    (speaker, ": " and text): the first count g with n / (n + 2 + g) < STOP_FRACTION."""
    return math.floor(prompt_bytes * (1 / STOP_FRACTION - 1) - 2) + 1


def build_neucodec_demo_model(out_dir: Path, seed: int = 0) -> Path:
    """Write a complete model directory (config, safetensors weights, tokenizer) to `out_dir`."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    out_dir.mkdir(parents=True, exist_ok=True)
    config = Qwen3Config(
        vocab_size=VOCAB_SIZE,
        hidden_size=_HIDDEN_SIZE,
        intermediate_size=_INTERMEDIATE_SIZE,
        num_hidden_layers=_LAYERS,
        num_attention_heads=_ATTENTION_HEADS,
        num_key_value_heads=_KV_HEADS,
        head_dim=_HEAD_DIM,
        max_position_embeddings=_MAX_POSITIONS,
        rms_norm_eps=_RMS_EPS,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=IM_END_ID,
        pad_token_id=IM_END_ID,
        dtype="float32",
    )
    config.tts_demo = True  # saved to config.json: marks a generated demo model
    with torch.device("cpu"):
        model = Qwen3ForCausalLM(config)
    model.load_state_dict(_wire_weights(seed), strict=True)
    model.generation_config = GenerationConfig(
        bos_token_id=None, eos_token_id=IM_END_ID, pad_token_id=IM_END_ID
    )
    model.save_pretrained(out_dir)
    _write_tokenizer(out_dir)
    (out_dir / "DEMO_MODEL.md").write_text(_CARD.format(
        name=NEUCODEC_DEMO_NAME, seed=seed, first=FIRST_AUDIO_ID,
        per_byte=1 / STOP_FRACTION - 1, im_start=IM_START_ID, im_end=IM_END_ID,
        speech_start=SPEECH_START_ID, marker=DEMO_MARKER_ID))
    for path in out_dir.iterdir():  # save_pretrained leaves files owner-only
        path.chmod(0o644)
    return out_dir


def ensure_neucodec_demo_model(cache_dir: Path) -> Path:
    """Return `cache_dir/<versioned name>`, building the model there first if it is missing."""
    return ensure_built(cache_dir, NEUCODEC_DEMO_NAME, build_neucodec_demo_model)


def _wire_weights(seed: int) -> dict[str, torch.Tensor]:
    """The complete Qwen3ForCausalLM state dict, wired as the module docstring says."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    code_vectors = torch.randn(CODEBOOK_SIZE, _CODE_DIM_COUNT, generator=generator)
    code_vectors /= code_vectors.norm(dim=-1, keepdim=True)  # (65536, 60)
    order = torch.randperm(CODEBOOK_SIZE, generator=generator)
    following = torch.empty_like(order)
    following[order] = order.roll(-1)  # π: order[i] -> order[i + 1], one cycle through all

    embed = torch.zeros(VOCAB_SIZE, _HIDDEN_SIZE)
    lm_head = torch.zeros(VOCAB_SIZE, _HIDDEN_SIZE)
    embed[:BYTE_TOKEN_COUNT, _TEXT_DIM] = 1.0
    embed[SPEECH_START_ID, _SPEAKING_DIM] = 1.0
    embed[SPEECH_START_ID, _CODE_DIMS] = _CODE_IN * code_vectors[0]
    audio = slice(FIRST_AUDIO_ID, VOCAB_SIZE)
    embed[audio, _SPEAKING_DIM] = 1.0
    embed[audio, _CODE_DIMS] = _CODE_IN * code_vectors[following]
    lm_head[audio, _SPEAKING_DIM] = _POSITION_OUT
    lm_head[audio, _CODE_DIMS] = _CODE_OUT * code_vectors
    lm_head[IM_END_ID, _SPEAKING_DIM] = _STOP_BIAS
    lm_head[IM_END_ID, _FUEL_DIM] = -_STOP_GAIN

    q_size = _ATTENTION_HEADS * _HEAD_DIM
    kv_size = _KV_HEADS * _HEAD_DIM
    v_proj = torch.zeros(kv_size, _HIDDEN_SIZE)
    v_proj[0, _TEXT_DIM] = 1.0  # kv head 0, its first dim; query heads 0 and 1 read it
    o_proj = torch.zeros(_HIDDEN_SIZE, q_size)
    o_proj[_FUEL_DIM, 0] = _FUEL_OUT  # query head 0's first dim

    def zeros(*shape: int) -> torch.Tensor:
        return torch.zeros(*shape)

    state: dict[str, torch.Tensor] = {
        "model.embed_tokens.weight": embed,
        "model.norm.weight": torch.ones(_HIDDEN_SIZE),
        "lm_head.weight": lm_head,
    }
    for layer in range(_LAYERS):
        first = layer == 0
        prefix = f"model.layers.{layer}."
        state |= {
            prefix + "input_layernorm.weight": torch.ones(_HIDDEN_SIZE),
            prefix + "post_attention_layernorm.weight": torch.ones(_HIDDEN_SIZE),
            prefix + "self_attn.q_proj.weight": zeros(q_size, _HIDDEN_SIZE),
            prefix + "self_attn.k_proj.weight": zeros(kv_size, _HIDDEN_SIZE),
            prefix + "self_attn.q_norm.weight": torch.ones(_HEAD_DIM),
            prefix + "self_attn.k_norm.weight": torch.ones(_HEAD_DIM),
            prefix + "self_attn.v_proj.weight": v_proj if first else zeros(kv_size, _HIDDEN_SIZE),
            prefix + "self_attn.o_proj.weight": o_proj if first else zeros(_HIDDEN_SIZE, q_size),
            prefix + "mlp.gate_proj.weight": zeros(_INTERMEDIATE_SIZE, _HIDDEN_SIZE),
            prefix + "mlp.up_proj.weight": zeros(_INTERMEDIATE_SIZE, _HIDDEN_SIZE),
            prefix + "mlp.down_proj.weight": zeros(_HIDDEN_SIZE, _INTERMEDIATE_SIZE),
        }
    return state


def _build_tokenizer() -> Tokenizer:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    vocab = {char: byte for byte, char in enumerate(_byte_alphabet())}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    # As in Scicom's tokenizer, <|speech_start|> and the audio tokens are ordinary added tokens.
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                  for t in (IM_START, IM_END)])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in
                          (SPEECH_START, DEMO_MARKER,
                           *(audio_token(c) for c in range(CODEBOOK_SIZE)))])
    if (tokenizer.token_to_id(SPEECH_START) != SPEECH_START_ID
            or tokenizer.token_to_id(audio_token(CODEBOOK_SIZE - 1)) != VOCAB_SIZE - 1):
        raise RuntimeError("tokenizers assigned the added tokens unexpected ids")
    return tokenizer


def _write_tokenizer(out_dir: Path) -> None:
    _build_tokenizer().save(str(out_dir / "tokenizer.json"))
    # By hand: transformers' save_pretrained would copy all 65 k added tokens in here too.
    tokenizer_config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": IM_END,
        "pad_token": IM_END,
        "unk_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": _MAX_POSITIONS,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    (out_dir / "special_tokens_map.json").write_text(
        json.dumps({"eos_token": IM_END, "pad_token": IM_END}, indent=2) + "\n")
