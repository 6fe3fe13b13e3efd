"""SNAC decoded as a stream: each frame is decoded once, and the audio equals one offline
decode of the whole sequence (to float rounding), however the frames are split.

SNAC's decoder is convolutional with "same" padding, so an output sample depends on a fixed,
finite span of input around it. Window decoding (`app.streaming`) gets that span by decoding
context frames again on both sides of every chunk; at an engine that runs at about real time
chunks stay short and the re-decoded context costs more than the chunk itself (redundancy
above 2). Here every layer keeps the little input history it still needs instead:

- a convolution of kernel k and dilation d keeps the last (k - 1) * d input samples, starts
  from its left zero padding and appends its right zero padding on `flush`;
- a transposed convolution (the upsampling layers) overlap-adds each new input's output
  into an accumulator and releases the positions no later input can reach;
- a residual unit delays its input until the block's output for the same samples is ready;
- pointwise layers (Snake, the noise blocks, 1x1 convolutions, tanh) and the quantizer's
  code embedding (frame by frame) need no state.

So the audio lags the frames by the decoder's look-ahead (`lookahead_samples`, about 2.2
frames for SNAC 24 kHz): `push` returns only samples whose inputs have all arrived, `flush`
the rest once the sequence is complete. One `SnacStream` per audio stream (batch 1), used
from the codec worker's thread only.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from snac import SNAC
from snac.layers import DecoderBlock, NoiseBlock, ResidualUnit, Snake1d
from torch import nn

from app.codec.snac import _frames_to_code_tensors

__all__ = ["SnacStream", "lookahead_samples"]


class _Node:
    """One layer as a stream: `push` new input samples, get the outputs now final."""

    def push(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def flush(self) -> torch.Tensor | None:
        """The outputs still held back, once no more input will come (None: nothing)."""
        return None

    def lookahead(self) -> int:
        """Input samples past an output sample that it depends on, at this layer's rate."""
        return 0

    def rate(self) -> int:
        """Output samples per input sample."""
        return 1


class _Pointwise(_Node):
    def __init__(self, module: nn.Module):
        self.module = module

    def push(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x) if x.shape[-1] else x


class _Conv(_Node):
    """A stride-1 Conv1d with symmetric ("same") zero padding."""

    def __init__(self, conv: nn.Conv1d):
        kernel, dilation, padding = conv.kernel_size[0], conv.dilation[0], conv.padding
        assert isinstance(padding, tuple)
        self.conv, self.pad = conv, int(padding[0])
        self.need = (kernel - 1) * dilation
        if conv.stride[0] != 1 or 2 * self.pad != self.need:
            raise ValueError(f"not a same-padded stride-1 convolution: {conv}")
        self.buf: torch.Tensor | None = None

    def _run(self, buf: torch.Tensor) -> torch.Tensor:
        if buf.shape[-1] <= self.need:
            self.buf = buf
            return buf.new_zeros(buf.shape[0], self.conv.out_channels, 0)
        conv = self.conv
        out = F.conv1d(buf, conv.weight, conv.bias, 1, 0, conv.dilation, conv.groups)
        self.buf = buf[..., buf.shape[-1] - self.need:]
        return out

    def push(self, x: torch.Tensor) -> torch.Tensor:
        if self.buf is None:  # the left zero padding
            self.buf = x.new_zeros(x.shape[0], x.shape[1], self.pad)
        return self._run(torch.cat([self.buf, x], dim=-1))

    def flush(self) -> torch.Tensor | None:
        if self.buf is None:
            return None
        zeros = self.buf.new_zeros(self.buf.shape[0], self.buf.shape[1], self.pad)
        return self._run(torch.cat([self.buf, zeros], dim=-1))

    def lookahead(self) -> int:
        return self.pad


class _ConvTranspose(_Node):
    """ConvTranspose1d whose output is `stride` samples per input sample (SNAC's)."""

    def __init__(self, conv: nn.ConvTranspose1d):
        self.conv = conv
        self.stride, self.kernel = conv.stride[0], conv.kernel_size[0]
        padding = conv.padding
        assert isinstance(padding, tuple)
        self.crop = int(padding[0])
        if conv.dilation[0] != 1 or self.crop > self.stride:
            raise ValueError(f"unsupported transposed convolution: {conv}")
        self.acc: torch.Tensor | None = None  # unpadded output positions from acc_start
        self.acc_start = 0
        self.emitted = self.crop  # next unpadded position to emit (the first `crop` are cut)
        self.inputs = 0

    def _emit(self, upto: int) -> torch.Tensor:
        assert self.acc is not None
        begin, end = self.emitted - self.acc_start, upto - self.acc_start
        out = self.acc[..., begin:end]
        if self.conv.bias is not None:
            out = out + self.conv.bias[None, :, None]
        self.acc = self.acc[..., end:]
        self.acc_start, self.emitted = upto, upto
        return out

    def push(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        if not x.shape[-1]:
            return x.new_zeros(x.shape[0], conv.out_channels, 0)
        part = F.conv_transpose1d(x, conv.weight, None, self.stride, 0, 0, conv.groups)
        begin = self.inputs * self.stride  # unpadded position of part[..., 0]
        if self.acc is None:
            self.acc = part.new_zeros(part.shape[0], part.shape[1], 0)
            self.acc_start = 0
        end = begin + part.shape[-1]
        grow = end - (self.acc_start + self.acc.shape[-1])
        if grow > 0:
            self.acc = F.pad(self.acc, (0, grow))
        offset = begin - self.acc_start
        self.acc[..., offset:offset + part.shape[-1]] += part
        self.inputs += x.shape[-1]
        final = self.inputs * self.stride  # no later input reaches below this position
        return self._emit(max(final, self.emitted))

    def flush(self) -> torch.Tensor | None:
        if self.acc is None:
            return None
        return self._emit(self.crop + self.inputs * self.stride)  # offline length: L * stride

    def lookahead(self) -> int:
        # Output j (unpadded j + crop) waits for inputs up to floor((j + crop) / stride).
        return 1

    def rate(self) -> int:
        return self.stride


class _Residual(_Node):
    """x + block(x), the block's output being "same"-length and late by its look-ahead."""

    def __init__(self, unit: ResidualUnit):
        self.block = _Sequence(unit.block)
        if self.block.rate() != 1:
            raise ValueError("a residual block must keep the sample rate")
        self.fifo: torch.Tensor | None = None

    def _add(self, y: torch.Tensor | None) -> torch.Tensor | None:
        if y is None:
            return None
        assert self.fifo is not None
        n = y.shape[-1]
        out = self.fifo[..., :n] + y
        self.fifo = self.fifo[..., n:]
        return out

    def push(self, x: torch.Tensor) -> torch.Tensor:
        self.fifo = x if self.fifo is None else torch.cat([self.fifo, x], dim=-1)
        out = self._add(self.block.push(x))
        assert out is not None
        return out

    def flush(self) -> torch.Tensor | None:
        return self._add(self.block.flush())

    def lookahead(self) -> int:
        return self.block.lookahead()


class _Sequence(_Node):
    def __init__(self, sequential: nn.Sequential):
        self.nodes = [_node(m) for m in sequential]

    def push(self, x: torch.Tensor) -> torch.Tensor:
        for node in self.nodes:
            x = node.push(x)
        return x

    def flush(self) -> torch.Tensor | None:
        x: torch.Tensor | None = None
        for node in self.nodes:
            pushed = node.push(x) if x is not None and x.shape[-1] else None
            rest = node.flush()
            parts = [p for p in (pushed, rest) if p is not None]
            x = torch.cat(parts, dim=-1) if parts else None
        return x

    def lookahead(self) -> int:
        """Look-ahead in this sequence's input samples (rounded up at each layer)."""
        total, scale = 0.0, 1
        for node in self.nodes:
            total += node.lookahead() / scale
            scale *= node.rate()
        return int(-(-total // 1))

    def rate(self) -> int:
        rate = 1
        for node in self.nodes:
            rate *= node.rate()
        return rate


def _node(module: nn.Module) -> _Node:
    if isinstance(module, nn.Sequential):
        return _Sequence(module)
    if isinstance(module, DecoderBlock):
        return _Sequence(module.block)
    if isinstance(module, ResidualUnit):
        return _Residual(module)
    if isinstance(module, nn.ConvTranspose1d):
        return _ConvTranspose(module)
    if isinstance(module, nn.Conv1d):
        if module.kernel_size[0] == 1 and module.stride[0] == 1:
            return _Pointwise(module)
        return _Conv(module)
    if isinstance(module, (Snake1d, NoiseBlock, nn.Tanh)):
        return _Pointwise(module)
    raise ValueError(f"SNAC decoder layer {type(module).__name__} cannot be streamed")


def lookahead_samples(model: SNAC) -> int:
    """Output samples by which a stream's audio lags its frames (the decoder's look-ahead)."""
    net = _Sequence(model.decoder.model)
    return net.lookahead() * net.rate()


class SnacStream:
    """Decode one stream's frames as they arrive. Call from the codec thread only."""

    def __init__(self, model: SNAC, device: torch.device, dtype: torch.dtype):
        self._model = model
        self._net = _Sequence(model.decoder.model)
        self._device, self._dtype = device, dtype
        self.frames_in = 0
        self.samples_out = 0

    @torch.inference_mode()
    def push(self, frames: np.ndarray) -> np.ndarray:
        """(T, 7) codes -> the float32 audio now final (possibly none)."""
        if frames.shape[0] == 0:
            return np.zeros(0, np.float32)
        tensor = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.int64))[None]
        codes = [c.to(self._device) for c in _frames_to_code_tensors(tensor)]
        z = self._model.quantizer.from_codes(codes).to(self._dtype)
        audio = self._net.push(z)[0, 0]
        self.frames_in += frames.shape[0]
        self.samples_out += audio.shape[-1]
        return audio.float().cpu().numpy()

    @torch.inference_mode()
    def flush(self) -> np.ndarray:
        """The rest of the audio, once the last frame has been pushed."""
        audio = self._net.flush()
        if audio is None:
            return np.zeros(0, np.float32)
        self.samples_out += audio.shape[-1]
        return audio[0, 0].float().cpu().numpy()
