"""Build the demo speech LM: a hand-wired tiny Qwen3 that emits position-valid SNAC frames.

Nothing is trained. The weights turn the network into a "bigram machine": the residual stream
carries the current token's embedding, and that embedding *points at* the token that should come
next (its frame position and a chosen code), which the output layer then scores highest.

Hidden layout (64 dims)::

    0..6    next token sits at frame position p (one dim per position); also the attention
            key of audio tokens
    7       next token is <|im_end|>
    8       next token is <|speech_start|>; on text, also its attention key
    9       end of frame: the current token is a position-6 audio token
    10      the current token is <|speech_start|>, its attention query
    11..13  prompt hash, written at <|speech_start|> only
    14..63  code space: fixed random unit vectors s[p, c], one per audio token; text bytes put
            a random unit vector in the first 32 of these dims

- Output row of audio token (p, c) = POSITION_OUT·e_p + CODE_OUT·s[p, c].
- Embedding of audio token (p, c) = POSITION_IN·e_{p+1} + CODE_IN·s[p+1, π_p(c)] (mod 7), so the
  next position wins by a wide margin and, among its codes, π_p(c) wins greedily. The permutations
  π_0..π_6 are chosen so that one trip round the frame is a single 4096-long cycle: greedy
  decoding never repeats a code within 4096 frames (random vectors alone fall into short cycles).
- The prompt picks the first code, and so (greedy) the whole sequence. Only <|speech_start|> has
  a query in the first layer. Each of the four heads looks along one RoPE pair (1 or 0.56 rad per
  token) at phase 0° or 90°, so it weighs the token d places back by exp(cos(θ·d − φ)): four
  sinusoids of the distance. Head h writes M_h times its weighted mean of the values (the byte
  vectors of text, and the code vectors of any reference audio in a voice-cloning prompt) into
  the hash dims, with random 3×32 matrices M_h that sum to zero: the text's common mean (its
  letter frequencies) cancels, which keeps long texts from all hashing to one direction, and on
  every other token (query zero, so every head averages alike) the output cancels to rounding.
  Position-0 output rows also hold a random 3-d unit vector in the hash dims, so the first code
  is the one nearest the hash's direction: ~4096 cells on a sphere.
- Why this and not something sharper: the hash is linear in the text, so nearly identical
  prompts can share a first code (about 1 in 12 single-character edits of a sentence; 85 of
  the 100 "Sentence number {0..99} of ..." are distinct; unrelated prompts collide like random
  draws from 4096). A nonlinear amplifier would separate them but would amplify float32 noise too,
  and the winner's lead over the runner-up (median 0.03 logits, 1st percentile ~2e-4) is what
  keeps greedy output identical across batching, prefix caching, vLLM and transformers.
- Everything else (all MLPs, the second layer's attention) is zero.
- <|speech_end|> scores high only on end-of-frame tokens, a few logits below the designated next
  code, so greedy never stops but sampling sometimes does, at a frame boundary; it then points at
  <|im_end|>, the eos token, so vLLM finishes with finish_reason "stop".

Only float32 has been checked.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer

logger = logging.getLogger(__name__)

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPEECH_START = "<|speech_start|>"
SPEECH_END = "<|speech_end|>"
SNAC_TOKEN_TEMPLATE = "<|snac_{position}_{code}|>"
PROMPT_TEMPLATE = IM_START + "{voice}: {text}" + IM_END + SPEECH_START

FRAME_SIZE = 7
CODEBOOK_SIZE = 4096

# Token ids as this builder lays them out: the 256 byte-level tokens first, then the specials.
BYTE_TOKEN_COUNT = 256
IM_START_ID = 256
IM_END_ID = 257
SPEECH_START_ID = 258
SPEECH_END_ID = 259
FIRST_SNAC_ID = 260
VOCAB_SIZE = FIRST_SNAC_ID + FRAME_SIZE * CODEBOOK_SIZE

# Bump whenever the weights or the tokenizer change, so cached copies are rebuilt.
DEMO_MODEL_VERSION = 2
DEMO_MODEL_NAME = f"tts-demo-qwen3-snac-v{DEMO_MODEL_VERSION}"

_HIDDEN_SIZE = 64
_HEAD_DIM = 32  # vLLM's CPU attention rejects 16
_ATTENTION_HEADS = 4
_KV_HEADS = 2
_INTERMEDIATE_SIZE = 128
_LAYERS = 2
_MAX_POSITIONS = 8192
_RMS_EPS = 1e-6

_NEXT_IM_END_DIM = 7
_NEXT_SPEECH_START_DIM = 8
_FRAME_END_DIM = 9
_IS_SPEECH_START_DIM = 10
_PROMPT_DIM_COUNT = 3
_PROMPT_DIMS = slice(11, 11 + _PROMPT_DIM_COUNT)
_CODE_DIMS = slice(11 + _PROMPT_DIM_COUNT, _HIDDEN_SIZE)
_CODE_DIM_COUNT = _HIDDEN_SIZE - _CODE_DIMS.start
# Text bytes reuse part of the code space (no audio token is ever among a prompt's text).
_BYTE_DIMS = slice(_CODE_DIMS.start, _CODE_DIMS.start + _HEAD_DIM)

_POSITION_IN = 1.0
_CODE_IN = 0.5
_POSITION_OUT = 6.0
_CODE_OUT = 2.25
_FRAME_END_IN = 0.5
# How far <|speech_end|> sits below the designated next code, in logits at temperature 1.
_SPEECH_END_MARGIN = 5.0
_CONTROL_IN = 1.0
_CONTROL_OUT = 5.0
# Text also points weakly at <|speech_start|>: a prompt that stops after the text still gets speech.
_TEXT_NEXT_SPEECH_START = 0.3
# Amplitude of the prompt heads' attention scores (via the q_norm weight): larger lets a few
# distances dominate, smaller flattens the weights (and the hash) towards the plain mean.
_PROMPT_SCORE_SCALE = 1.0
# Large, so the hash dominates <|speech_start|>'s final norm whatever the prompt's length: that
# keeps the first code's lead (in logits) from shrinking on long prompts.
_PROMPT_MIX = 100.0
_PROMPT_OUT = 10.0

_DEMO_CARD = """\
# {name}: a generated demo model (it makes noise, not speech)

Written by `python -m demo_model` (package `demo_model/`, seed {seed}). It is a hand-wired
~3.8 M-parameter Qwen3 with no training; it lets the TTS proxy and vLLM run end to end without
downloading a real speech LLM. Decoded with SNAC, its output is noise.

- Prompt: `<|im_start|>{{voice}}: {{text}}<|im_end|><|speech_start|>` (no BOS).
- Output: SNAC audio tokens in frames of {frame}, `<|snac_{{p}}_{{c}}|>` for frame position p in
  0..6 and code c in 0..4095, at id {first} + p*4096 + c. Sampling may end a frame with
  `<|speech_end|>` followed by `<|im_end|>` (eos); greedy decoding never ends on its own.
- The prompt (voice and text) picks the first code; greedy decoding then walks one 4096-frame
  cycle, so different prompts give different streams, though nearly identical prompts
  sometimes share one.
- Text is byte-level: ids 0..255 are bytes, then `<|im_start|>`={im_start}, `<|im_end|>`={im_end},
  `<|speech_start|>`={speech_start}, `<|speech_end|>`={speech_end}.
- Checked in float32 only.
"""


def snac_token(position: int, code: int) -> str:
    """Name of the audio token for `code` at frame `position`."""
    return SNAC_TOKEN_TEMPLATE.format(position=position, code=code)


def snac_token_id(position: int, code: int) -> int:
    if not (0 <= position < FRAME_SIZE and 0 <= code < CODEBOOK_SIZE):
        raise ValueError(f"no audio token at position {position}, code {code}")
    return FIRST_SNAC_ID + position * CODEBOOK_SIZE + code


def build_demo_model(out_dir: Path, seed: int = 0) -> Path:
    """Write a complete model directory (config, safetensors weights, tokenizer) to `out_dir`.

    The same seed gives the same weights. Returns `out_dir`.
    """
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
    config.tts_demo = True  # saved to config.json: marks a generated demo model, not a real TTS
    with torch.device("cpu"):
        model = Qwen3ForCausalLM(config)
    model.load_state_dict(_wire_weights(seed), strict=True)
    model.generation_config = GenerationConfig(
        bos_token_id=None, eos_token_id=IM_END_ID, pad_token_id=IM_END_ID
    )
    model.save_pretrained(out_dir)
    _write_tokenizer(out_dir)
    (out_dir / "DEMO_MODEL.md").write_text(
        _DEMO_CARD.format(
            name=DEMO_MODEL_NAME,
            seed=seed,
            frame=FRAME_SIZE,
            first=FIRST_SNAC_ID,
            im_start=IM_START_ID,
            im_end=IM_END_ID,
            speech_start=SPEECH_START_ID,
            speech_end=SPEECH_END_ID,
        )
    )
    # save_pretrained leaves the weights owner-only; the engine may run as another user.
    for path in out_dir.iterdir():
        path.chmod(0o644)
    return out_dir


def ensure_demo_model(cache_dir: Path) -> Path:
    """Return `cache_dir/<versioned name>`, building the model there first if it is missing."""
    return ensure_built(cache_dir, DEMO_MODEL_NAME, build_demo_model)


def ensure_built(cache_dir: Path, name: str, build: Callable[[Path], Path]) -> Path:
    """Return `cache_dir/name`, running `build` into it first if it is missing.

    The model is built in a private temporary directory inside `cache_dir` and renamed into place
    in one step, so an interrupted or concurrent build never leaves a half-written model behind.
    """
    final_dir = cache_dir / name
    if final_dir.is_dir():
        return final_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging_dir = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=cache_dir))
    try:
        logger.info("building demo model %s in %s", name, cache_dir)
        build(staging_dir)
        staging_dir.chmod(0o755)  # mkdtemp makes it owner-only
        try:
            os.rename(staging_dir, final_dir)
        except OSError:
            if not final_dir.is_dir():
                raise
            # A concurrent build finished first; its copy is identical to ours.
            logger.info("demo model %s was built concurrently; using that copy", final_dir)
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)
    return final_dir


def _wire_weights(seed: int) -> dict[str, torch.Tensor]:
    """The complete Qwen3ForCausalLM state dict, wired as described in the module docstring."""
    import torch

    generator = torch.Generator().manual_seed(seed)

    def unit_vectors(*shape: int, dims: int) -> torch.Tensor:
        vectors = torch.randn(*shape, dims, generator=generator)
        return vectors / vectors.norm(dim=-1, keepdim=True)

    code_vectors = unit_vectors(FRAME_SIZE, CODEBOOK_SIZE, dims=_CODE_DIM_COUNT)  # (7, 4096, 50)
    first_code_vectors = unit_vectors(CODEBOOK_SIZE, dims=_PROMPT_DIM_COUNT)  # (4096, 3)
    byte_vectors = unit_vectors(BYTE_TOKEN_COUNT, dims=_HEAD_DIM)  # (256, 32)
    next_code = _frame_cycle_permutations(generator)  # (7, 4096): π_p(c)

    embed = torch.zeros(VOCAB_SIZE, _HIDDEN_SIZE)
    lm_head = torch.zeros(VOCAB_SIZE, _HIDDEN_SIZE)

    # No token predicts text. The specials carry no byte vector: every prompt has them.
    embed[:BYTE_TOKEN_COUNT, _BYTE_DIMS] = byte_vectors
    embed[: IM_START_ID + 1, _NEXT_SPEECH_START_DIM] = _TEXT_NEXT_SPEECH_START

    embed[IM_END_ID, _NEXT_SPEECH_START_DIM] = _CONTROL_IN
    lm_head[SPEECH_START_ID, _NEXT_SPEECH_START_DIM] = _CONTROL_OUT

    embed[SPEECH_START_ID, 0] = _POSITION_IN
    embed[SPEECH_START_ID, _IS_SPEECH_START_DIM] = _CONTROL_IN

    embed[SPEECH_END_ID, _NEXT_IM_END_DIM] = _CONTROL_IN
    lm_head[IM_END_ID, _NEXT_IM_END_DIM] = _CONTROL_OUT

    # After an end-of-frame token the final norm scales the residual by sqrt(hidden)/|h|; place
    # <|speech_end|> _SPEECH_END_MARGIN logits below the designated next code at that scale.
    frame_end_norm = (_POSITION_IN**2 + _CODE_IN**2 + _FRAME_END_IN**2) ** 0.5
    frame_end_scale = _HIDDEN_SIZE**0.5 / frame_end_norm
    target_score = _POSITION_OUT * _POSITION_IN + _CODE_OUT * _CODE_IN
    lm_head[SPEECH_END_ID, _FRAME_END_DIM] = (
        target_score - _SPEECH_END_MARGIN / frame_end_scale
    ) / _FRAME_END_IN

    codes = torch.arange(CODEBOOK_SIZE)
    for position in range(FRAME_SIZE):
        rows = slice(
            FIRST_SNAC_ID + position * CODEBOOK_SIZE,
            FIRST_SNAC_ID + (position + 1) * CODEBOOK_SIZE,
        )
        lm_head[rows, position] = _POSITION_OUT
        lm_head[rows, _CODE_DIMS] = _CODE_OUT * code_vectors[position]
        if position == 0:
            lm_head[rows, _PROMPT_DIMS] = _PROMPT_OUT * first_code_vectors
        following = (position + 1) % FRAME_SIZE
        embed[rows, following] = _POSITION_IN
        embed[rows, _CODE_DIMS] = _CODE_IN * code_vectors[following, next_code[position, codes]]
        if position == FRAME_SIZE - 1:
            embed[rows, _FRAME_END_DIM] = _FRAME_END_IN

    # Kv head j keys every prompt token alike on RoPE pair j (dims j and j + 16, turning at
    # 1 and 0.56 rad per token); its two query heads (grouped-query attention) look along that
    # pair at phases 0 and 90°. Query head (j, φ) then weighs the token d places back by
    # exp(SCALE·cos(θ_j·d − φ)), so no stretch of the text is weighed alike by all four heads.
    q_size = _ATTENTION_HEADS * _HEAD_DIM
    kv_size = _KV_HEADS * _HEAD_DIM
    half = _HEAD_DIM // 2
    # (kv head, phase, head dim, hidden)
    q_proj = torch.zeros(_KV_HEADS, 2, _HEAD_DIM, _HIDDEN_SIZE)
    k_proj = torch.zeros(_KV_HEADS, _HEAD_DIM, _HIDDEN_SIZE)
    for kv_head in range(_KV_HEADS):
        # Text (and the specials around it) through dim 8, audio tokens (a voice-cloning
        # prompt's reference audio) through their position dims.
        k_proj[kv_head, kv_head, _NEXT_SPEECH_START_DIM] = 1.0
        k_proj[kv_head, kv_head, :FRAME_SIZE] = 1.0
        q_proj[kv_head, 0, kv_head, _IS_SPEECH_START_DIM] = 1.0
        q_proj[kv_head, 1, half + kv_head, _IS_SPEECH_START_DIM] = 1.0
    q_proj = q_proj.reshape(q_size, _HIDDEN_SIZE)
    k_proj = k_proj.reshape(kv_size, _HIDDEN_SIZE)
    # q_norm and k_norm scale a one-hot q and k to sqrt(head_dim) times their weights, whatever
    # the embedding magnitudes; RoPE divides the dot product by sqrt(head_dim) again.
    q_norm = torch.full((_HEAD_DIM,), _PROMPT_SCORE_SCALE / _HEAD_DIM**0.5)
    v_proj = torch.zeros(kv_size, _HIDDEN_SIZE)
    for kv_head in range(_KV_HEADS):
        v_proj[kv_head * _HEAD_DIM : (kv_head + 1) * _HEAD_DIM, _BYTE_DIMS] = torch.eye(_HEAD_DIM)
    # Head h writes M_h times its weighted mean; the M_h sum to zero, so a text's common mean
    # (every head's weights sum to 1) cancels, and so does everything on tokens whose query is
    # zero (every head then averages uniformly), up to rounding.
    mixes = torch.randn(_ATTENTION_HEADS, _PROMPT_DIM_COUNT, _HEAD_DIM, generator=generator)
    mixes = _PROMPT_MIX * (mixes - mixes.mean(dim=0))  # (4, 3, 32)
    o_proj = torch.zeros(_HIDDEN_SIZE, q_size)
    for head in range(_ATTENTION_HEADS):
        o_proj[_PROMPT_DIMS, head * _HEAD_DIM : (head + 1) * _HEAD_DIM] = mixes[head]

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
            prefix + "self_attn.q_proj.weight": q_proj if first else zeros(q_size, _HIDDEN_SIZE),
            prefix + "self_attn.k_proj.weight": k_proj if first else zeros(kv_size, _HIDDEN_SIZE),
            prefix + "self_attn.q_norm.weight": q_norm if first else torch.ones(_HEAD_DIM),
            prefix + "self_attn.k_norm.weight": torch.ones(_HEAD_DIM),
            prefix + "self_attn.v_proj.weight": v_proj if first else zeros(kv_size, _HIDDEN_SIZE),
            prefix + "self_attn.o_proj.weight": o_proj if first else zeros(_HIDDEN_SIZE, q_size),
            prefix + "mlp.gate_proj.weight": zeros(_INTERMEDIATE_SIZE, _HIDDEN_SIZE),
            prefix + "mlp.up_proj.weight": zeros(_INTERMEDIATE_SIZE, _HIDDEN_SIZE),
            prefix + "mlp.down_proj.weight": zeros(_HIDDEN_SIZE, _INTERMEDIATE_SIZE),
        }
    return state


def _frame_cycle_permutations(generator: torch.Generator) -> torch.Tensor:
    """π_0..π_6 (rows) whose composition round one frame is a single cycle over all codes.

    π_p(c) is the code designated to follow code c at position p. π_0..π_5 are random; π_6 is
    chosen so that π_6 ∘ … ∘ π_0 equals a random 4096-cycle.
    """
    import torch

    permutations = [
        torch.randperm(CODEBOOK_SIZE, generator=generator) for _ in range(FRAME_SIZE - 1)
    ]
    through_frame = torch.arange(CODEBOOK_SIZE)  # π_5 ∘ … ∘ π_0
    for permutation in permutations:
        through_frame = permutation[through_frame]
    order = torch.randperm(CODEBOOK_SIZE, generator=generator)
    cycle = torch.empty_like(order)
    cycle[order] = order.roll(-1)  # order[i] → order[i + 1]: one cycle through every code
    last = torch.empty_like(order)
    last[through_frame] = cycle
    return torch.stack([*permutations, last])


def _byte_alphabet() -> list[str]:
    """GPT-2's byte-to-unicode map (what ByteLevel pre-tokenizes to), indexed by byte value."""
    printable = {
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    }
    alphabet: list[str] = []
    shifted = 0
    for byte in range(BYTE_TOKEN_COUNT):
        if byte in printable:
            alphabet.append(chr(byte))
        else:
            alphabet.append(chr(BYTE_TOKEN_COUNT + shifted))
            shifted += 1
    return alphabet


def _special_tokens() -> list[str]:
    """Every added token, in id order from IM_START_ID."""
    audio = [snac_token(p, c) for p in range(FRAME_SIZE) for c in range(CODEBOOK_SIZE)]
    return [IM_START, IM_END, SPEECH_START, SPEECH_END, *audio]


def _build_tokenizer() -> Tokenizer:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    vocab = {char: byte for byte, char in enumerate(_byte_alphabet())}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(
        [AddedToken(name, special=True, normalized=False) for name in _special_tokens()]
    )
    last = snac_token(FRAME_SIZE - 1, CODEBOOK_SIZE - 1)
    if (
        tokenizer.token_to_id(IM_START) != IM_START_ID
        or tokenizer.token_to_id(last) != VOCAB_SIZE - 1
    ):
        raise RuntimeError("tokenizers assigned the added tokens unexpected ids")
    return tokenizer


def _write_tokenizer(out_dir: Path) -> None:
    _build_tokenizer().save(str(out_dir / "tokenizer.json"))
    # Written by hand rather than by transformers' save_pretrained, which would copy all 28 k
    # added tokens into this file as well; the added tokens live in tokenizer.json.
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
    special_tokens_map = {"eos_token": IM_END, "pad_token": IM_END}
    (out_dir / "special_tokens_map.json").write_text(
        json.dumps(special_tokens_map, indent=2) + "\n"
    )
