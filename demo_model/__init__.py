"""Generated tiny speech LMs for demos and tests: they emit audio tokens (noise, not speech).

Two builders: `ensure_demo_model` (SNAC frames, Orpheus-style; build.py) and
`ensure_neucodec_demo_model` (NeuCodec codes in Scicom's vocabulary, stops by itself; neucodec.py).

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
from demo_model.neucodec import (
    NEUCODEC_DEMO_NAME,
    build_neucodec_demo_model,
    ensure_neucodec_demo_model,
    expected_audio_tokens,
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
    "NEUCODEC_DEMO_NAME",
    "PROMPT_TEMPLATE",
    "SNAC_TOKEN_TEMPLATE",
    "SPEECH_END",
    "SPEECH_END_ID",
    "SPEECH_START",
    "SPEECH_START_ID",
    "VOCAB_SIZE",
    "build_demo_model",
    "build_neucodec_demo_model",
    "ensure_demo_model",
    "ensure_neucodec_demo_model",
    "expected_audio_tokens",
    "snac_token",
    "snac_token_id",
]
