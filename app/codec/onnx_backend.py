"""CODEC_BACKEND=onnxruntime: SNAC's decoder exported to ONNX and run by onnxruntime on CPU.

Contract: `with_onnxruntime(codec, ...)` returns a codec whose `decode_frames` takes the same
(B, T, 7) int codes and returns the same (B, T * 2048) float32 audio as the torch codec, on the
same codec worker thread and batches. Encoding (voice cloning) stays in torch on the same
weights. It returns the torch codec itself, with a warning, when the codec is not float32 on
CPU (CUDA keeps torch, its graphs and torch.compile) or when the ONNX decoder cannot be built
or fails the check below; `codec.backend` says which one decodes.

Export: the loaded model (weight norm already folded) is traced with dynamic batch and time
axes by torch's dynamo exporter. Snake's `sin(a x) ** 2` is written `s * s` for the export:
onnxruntime's Pow is slower than Mul and the result is the same (SNR unchanged, ~5 % less
CPU). The .onnx file is cached in CODEC_CACHE_DIR under a hash of the decoder's weights, the
export version and the exporter's versions; a cache that cannot be written costs a fresh
export at the next start, a cached file that fails to load or to check is exported again.

Check: at every start the session decodes a fixed random input (`CHECK_SHAPE`) against torch
with the NoiseBlocks off; below `MIN_SNR_DB` (90 dB) the ONNX decoder is not used. Only a
checked graph is written to the cache. Measured on random weights: about 125 dB.

Noise: SNAC's NoiseBlocks add `randn(B, 1, T) * linear(x)` in production. The graph keeps
them (onnxruntime's RandomNormalLike, a fresh draw per call) scaled by a `noise_scale` input:
1 in production, so the output matches torch's statistically (same distribution, not the
same draws), and 0 under `set_noise(False)`, which makes it deterministic for the check and
for tests. One graph serves both.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]
import torch
from snac import SNAC
from snac.layers import NoiseBlock, Snake1d

from app.codec.info import CodecInfo
from app.codec.snac import SnacCodec, _frames_to_code_tensors

logger = logging.getLogger(__name__)

EXPORT_VERSION = 1  # part of the cache key: bump when the exported graph changes
MIN_SNR_DB = 90.0  # ONNX vs torch on the check input, noise off
CHECK_SHAPE = (2, 6)  # batch, frames: more than one row, so the batch axis is checked too
CHECK_SEED = 0
_EXAMPLE_SHAPE = (2, 4)  # the export's example input; neither axis 1 (export would pin it)
# The exporter's loggers: ~100 INFO lines of graph rewrites per export, and warnings about
# torchvision ops we do not use. A failed export raises, and that is logged.
_EXPORTER_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")
__all__ = ["MIN_SNR_DB", "OnnxSnacCodec", "with_onnxruntime"]


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """10 log10(signal energy / error energy); inf when equal."""
    error = float(np.sum((reference.astype(np.float64) - test) ** 2))
    signal = float(np.sum(reference.astype(np.float64) ** 2))
    return float("inf") if error == 0 else 10.0 * np.log10(signal / error)


class _DecodeGraph(torch.nn.Module):
    """What is exported: (B, T, 7) int64 frames and a () noise scale -> (B, T * 2048) audio."""

    def __init__(self, model: SNAC):
        super().__init__()
        self.model = model
        self.noise_scale: torch.Tensor | None = None
        for module in model.modules():
            if isinstance(module, NoiseBlock):
                module.forward = self._scaled_noise(module)
            elif isinstance(module, Snake1d):
                module.forward = _snake(module)

    def forward(self, frames: torch.Tensor, noise_scale: torch.Tensor) -> torch.Tensor:
        self.noise_scale = noise_scale  # read by the NoiseBlocks below, within this trace
        audio = self.model.decode(_frames_to_code_tensors(frames))  # (B, 1, T * 2048)
        return audio[:, 0, :]

    def _scaled_noise(self, block: NoiseBlock) -> Callable[[torch.Tensor], torch.Tensor]:
        def forward(x: torch.Tensor) -> torch.Tensor:  # (B, C, T), as NoiseBlock.forward
            assert self.noise_scale is not None, "set by forward before the decoder runs"
            noise = torch.randn_like(x[:, :1, :]) * self.noise_scale  # (B, 1, T)
            return x + noise * block.linear(x)

        return forward


def _snake(module: Snake1d) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(x: torch.Tensor) -> torch.Tensor:  # (B, C, T), as snac.layers.snake
        s = torch.sin(module.alpha * x)
        return x + (module.alpha + 1e-9).reciprocal() * (s * s)

    return forward


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _EXPORTER_LOGGERS]
    levels = [each.level for each in loggers]
    with warnings.catch_warnings():
        # The exporter's own deprecation chatter from inside torch: nothing to act on here.
        warnings.simplefilter("ignore")
        for each in loggers:
            each.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for each, level in zip(loggers, levels):
                each.setLevel(level)


def _session(graph: bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # one graph, run by one caller: the codec thread
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


class OnnxSnacCodec(SnacCodec):
    """A SnacCodec whose decoder runs in onnxruntime; encoding stays in torch.

    Built only through `from_graph`, which compares it with torch (`snr_db`) before it is used.
    """

    backend = "onnxruntime"

    def __init__(self, model: SNAC, info: CodecInfo, session: ort.InferenceSession, *,
                 graph_path: Path, cache_hit: bool, export_s: float):
        super().__init__(model, info)
        self._session = session
        self.graph_path = graph_path
        self.cache_hit = cache_hit  # the graph came from the cache (no export this start)
        self.export_s = export_s  # 0 on a cache hit
        self.snr_db = float("nan")  # vs torch on the check input; set by from_graph

    @staticmethod
    def cache_key(codec: SnacCodec) -> str:
        """A hash of what the exported graph depends on: decoder weights, exporter versions."""
        import onnxscript

        digest = hashlib.sha256(
            f"snac-decoder v{EXPORT_VERSION} torch {torch.__version__} "
            f"onnxscript {onnxscript.__version__}".encode())
        for name, tensor in codec._model.state_dict().items():
            if name.startswith(("quantizer.", "decoder.")):
                array = np.ascontiguousarray(tensor.detach().cpu().numpy())
                digest.update(f"{name} {array.dtype} {array.shape}".encode())
                digest.update(array.data)
        return digest.hexdigest()[:20]

    @staticmethod
    def export(codec: SnacCodec) -> bytes:
        """The decoder as an ONNX model (inputs frames, noise_scale; output audio). Slow."""
        graph = _DecodeGraph(copy.deepcopy(codec._model).eval())
        batch, steps = torch.export.Dim("batch", min=1), torch.export.Dim("frames", min=1)
        example = (torch.zeros((*_EXAMPLE_SHAPE, codec.info.layout.codes_per_frame),
                               dtype=torch.int64), torch.tensor(1.0))
        with _quiet_exporter():
            program = torch.onnx.export(
                graph, example, dynamo=True, verbose=False,
                input_names=["frames", "noise_scale"], output_names=["audio"],
                dynamic_shapes={"frames": {0: batch, 1: steps}, "noise_scale": None})
        assert program is not None  # dynamo=True always returns the program
        return program.model_proto.SerializeToString()

    @classmethod
    def from_graph(cls, codec: SnacCodec, graph: bytes, *, threads: int, graph_path: Path,
                   cache_hit: bool, export_s: float) -> OnnxSnacCodec:
        """Load `graph` in a CPU session beside `codec`'s weights and measure it against torch."""
        onnx = cls(codec._model, codec.info, _session(graph, threads), graph_path=graph_path,
                   cache_hit=cache_hit, export_s=export_s)
        onnx.set_noise(codec.noise)
        onnx.snr_db = onnx.compare_with_torch()
        return onnx

    def compare_with_torch(self) -> float:
        """SNR in dB of this decoder against torch's on the check input, noise off."""
        layout = self.info.layout
        frames = np.random.default_rng(CHECK_SEED).integers(
            0, layout.codebook_size, (*CHECK_SHAPE, layout.codes_per_frame))
        noise = self.noise
        self.set_noise(False)
        try:
            reference = super().decode_frames(frames)
            return snr_db(reference, self.decode_frames(frames))
        finally:
            self.set_noise(noise)

    def decode_frames(self, frames: np.ndarray) -> np.ndarray:
        """(B, T, 7) int codes -> (B, T * samples_per_frame) float32 audio."""
        if frames.shape[-1] != self.info.layout.codes_per_frame:
            raise ValueError(f"frames must have {self.info.layout.codes_per_frame} codes, "
                             f"got {frames.shape[-1]}")
        feed = {"frames": np.ascontiguousarray(frames, dtype=np.int64),
                "noise_scale": np.array(1.0 if self.noise else 0.0, dtype=np.float32)}
        (audio,) = self._session.run(["audio"], feed)
        return audio

    def prepare_accelerated(
        self, *, bucket_seconds: Sequence[float], max_batch: int, compile_model: bool
    ) -> None:
        """CUDA graphs and torch.compile are torch's: nothing to prepare for onnxruntime."""
        if bucket_seconds or compile_model:
            logger.warning("CUDA_GRAPH_BATCH / TORCH_COMPILE are ignored with "
                           "CODEC_BACKEND=onnxruntime")


def with_onnxruntime(codec: SnacCodec, *, cache_dir: Path, threads: int = 0,
                     min_snr_db: float = MIN_SNR_DB) -> SnacCodec:
    """`codec` decoding in onnxruntime when that works and matches torch; else `codec` itself.

    Blocking: an export takes tens of seconds on a small CPU, a cache hit well under one.
    `threads` is onnxruntime's intra-op thread count; 0 = its default (the physical cores).
    """
    if codec.info.device != "cpu" or codec.info.dtype != "float32":
        logger.warning("CODEC_BACKEND=onnxruntime runs float32 on CPU only; the codec is "
                       "%s/%s: decoding with torch", codec.info.device, codec.info.dtype)
        return codec
    try:
        path = cache_dir / f"snac-decoder-{OnnxSnacCodec.cache_key(codec)}.onnx"
        onnx = _from_cache(codec, path, threads, min_snr_db)
        if onnx is None:
            started = time.perf_counter()
            graph = OnnxSnacCodec.export(codec)
            onnx = OnnxSnacCodec.from_graph(codec, graph, threads=threads, graph_path=path,
                                            cache_hit=False,
                                            export_s=time.perf_counter() - started)
            if onnx.snr_db >= min_snr_db:
                _write_cache(path, graph)
    except Exception as exc:  # noqa: BLE001 (exporter and onnxruntime errors have many types)
        logger.warning("CODEC_BACKEND=onnxruntime: cannot build the ONNX decoder (%s: %s); "
                       "decoding with torch", type(exc).__name__, exc)
        return codec
    if onnx.snr_db < min_snr_db:
        logger.warning("CODEC_BACKEND=onnxruntime: the ONNX decoder matches torch to only "
                       "%.1f dB (< %.0f dB required); decoding with torch", onnx.snr_db,
                       min_snr_db)
        return codec
    logger.info("codec backend onnxruntime: %s (%s), %.1f dB vs torch, intra-op threads %s",
                path, "cached" if onnx.cache_hit else f"exported in {onnx.export_s:.1f} s",
                onnx.snr_db, threads or "default")
    return onnx


def _from_cache(codec: SnacCodec, path: Path, threads: int, min_snr_db: float
                ) -> OnnxSnacCodec | None:
    """The cached graph when it loads and passes the check; None means: export afresh."""
    if not path.is_file():
        return None
    try:
        onnx = OnnxSnacCodec.from_graph(codec, path.read_bytes(), threads=threads,
                                        graph_path=path, cache_hit=True, export_s=0.0)
    except Exception as exc:  # noqa: BLE001 (onnxruntime's own types, none a base class)
        logger.warning("cached ONNX decoder %s does not load (%s: %s): exporting again",
                       path, type(exc).__name__, exc)
        return None
    if onnx.snr_db < min_snr_db:
        logger.warning("cached ONNX decoder %s matches torch to only %.1f dB: exporting again",
                       path, onnx.snr_db)
        return None
    return onnx


def _write_cache(path: Path, graph: bytes) -> None:
    """Atomically (replicas may share the directory); a failure costs an export next start."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(graph)
        os.replace(partial, path)
    except OSError as exc:
        logger.warning("cannot cache the ONNX decoder in %s (%s): the next start exports it "
                       "again; set CODEC_CACHE_DIR to a writable directory", path.parent, exc)
        partial.unlink(missing_ok=True)
