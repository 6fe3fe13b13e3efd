"""A generated tiny speech LM for demos and tests: it emits SNAC audio tokens (noise, not speech).

`ensure_demo_model(cache_dir)` returns a model directory that vLLM and transformers load like any
Qwen3 checkpoint, building it offline (about a second, plus imports) the first time. The constants
below are the contract the TTS proxy relies on: prompt format, token names and the id layout.
"""

from demo_model.build import (
    BYTE_TOKEN_COUNT,
    CODEBOOK_SIZE,
    DEMO_MODEL_NAME,
    DEMO_MODEL_VERSION,
    FIRST_SNAC_ID,
    FRAME_SIZE,
    IM_END,
    IM_END_ID,
    IM_START,
    IM_START_ID,
    PROMPT_TEMPLATE,
    SNAC_TOKEN_TEMPLATE,
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

__all__ = [
    "BYTE_TOKEN_COUNT",
    "CODEBOOK_SIZE",
    "DEMO_MODEL_NAME",
    "DEMO_MODEL_VERSION",
    "FIRST_SNAC_ID",
    "FRAME_SIZE",
    "IM_END",
    "IM_END_ID",
    "IM_START",
    "IM_START_ID",
    "PROMPT_TEMPLATE",
    "SNAC_TOKEN_TEMPLATE",
    "SPEECH_END",
    "SPEECH_END_ID",
    "SPEECH_START",
    "SPEECH_START_ID",
    "VOCAB_SIZE",
    "build_demo_model",
    "ensure_demo_model",
    "snac_token",
    "snac_token_id",
]
