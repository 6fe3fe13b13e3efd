"""`load_codec(settings)`: the one place that picks and builds the codec named by CODEC.

torch is imported here only inside the function, so importing the app never loads it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.codec.worker import Codec
    from app.config import Settings

logger = logging.getLogger(__name__)


def load_codec(settings: Settings) -> Codec:
    """Build the codec CODEC names (SNAC_MODEL / NEUCODEC_MODEL say which weights). Blocking.

    CODEC=auto must have been resolved to the served model's codec first (the lifespan does
    that from the profile, `profiles.choose_codec`). CODEC_BACKEND=onnxruntime applies to
    SNAC on CPU (`app.codec.onnx_backend`); NeuCodec always decodes with torch.
    """
    import torch

    if settings.codec == "auto":
        raise ValueError("CODEC=auto must be resolved from the model profile before loading")
    if settings.codec_threads:
        torch.set_num_threads(settings.codec_threads)
    if settings.codec == "neucodec":
        from app.codec.neucodec import NeuCodec

        if settings.codec_backend != "torch":
            logger.warning("CODEC_BACKEND=%s is SNAC-only: NeuCodec decodes with torch",
                           settings.codec_backend)
        if not settings.neucodec_encoder:
            return NeuCodec.load(settings.neucodec_model, device=settings.codec_device,
                                 dtype=settings.codec_dtype)
        from app.codec.neucodec_encoder import EncodingNeuCodec

        return EncodingNeuCodec.load_with_encoder(
            settings.neucodec_model, semantic_source=settings.neucodec_semantic_model,
            device=settings.codec_device, dtype=settings.codec_dtype)
    from app.codec.snac import SnacCodec

    codec = SnacCodec.load(settings.snac_model, device=settings.codec_device,
                           dtype=settings.codec_dtype)
    if settings.codec_backend == "onnxruntime":
        from app.codec.onnx_backend import with_onnxruntime

        codec = with_onnxruntime(codec, cache_dir=Path(settings.codec_cache_dir).expanduser(),
                                 threads=settings.codec_threads)
    logger.info("SNAC decodes with %s", codec.backend)
    return codec
