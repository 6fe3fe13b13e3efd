from __future__ import annotations

import numpy as np

from app.codec.info import NEUCODEC, SNAC_24KHZ
from app.codec.layout import FrameAssembler, TokenLayout, codes_to_frames, frames_to_codes

LAYOUT = TokenLayout.for_codec(SNAC_24KHZ, audio_base_id=1000, stop_ids=frozenset({7, 8}))


def tokens_for(frames: list[list[int]]) -> list[int]:
    return [LAYOUT.token_id(p, code) for frame in frames for p, code in enumerate(frame)]


def test_assembler_builds_frames_across_chunk_boundaries():
    frames = [[i * 7 + p for p in range(7)] for i in range(5)]
    ids = tokens_for(frames)
    assembler = FrameAssembler(LAYOUT)
    out = []
    for cut in range(0, len(ids), 3):  # engine chunks carry several tokens
        out += assembler.push(ids[cut:cut + 3])
    assert out == frames
    assert assembler.stats.frames == 5 and assembler.stats.misplaced == 0


def test_assembler_resyncs_on_misplaced_token_and_never_decodes_it():
    good = [[1, 2, 3, 4, 5, 6, 7], [8, 9, 10, 11, 12, 13, 14]]
    ids = tokens_for(good[:1])
    ids += [LAYOUT.token_id(0, 50), LAYOUT.token_id(1, 51), LAYOUT.token_id(4, 99)]  # broken
    ids += [LAYOUT.token_id(2, 60)]  # still out of sync
    ids += tokens_for(good[1:])
    assembler = FrameAssembler(LAYOUT)
    assert assembler.push(ids) == good
    assert assembler.stats.misplaced == 2
    assert assembler.stats.dropped_partial_frames == 1


def test_assembler_restarts_at_a_misplaced_position_zero_token():
    ids = [LAYOUT.token_id(0, 1), LAYOUT.token_id(1, 1)] + tokens_for([[5] * 7])
    assembler = FrameAssembler(LAYOUT)
    assert assembler.push(ids) == [[5] * 7]
    assert assembler.stats.misplaced == 1


def test_assembler_ignores_stop_and_counts_text_tokens():
    assembler = FrameAssembler(LAYOUT)
    assert assembler.push([5, 7, LAYOUT.audio_end_id]) == []
    assert assembler.stats.non_audio == 2


def test_frames_to_codes_matches_orpheus_layout_and_round_trips():
    frames = np.arange(2 * 3 * 7).reshape(2, 3, 7)
    l0, l1, l2 = frames_to_codes(frames)
    assert l0.shape == (2, 3) and l1.shape == (2, 6) and l2.shape == (2, 12)
    assert list(l1[0, :2]) == [1, 4] and list(l2[0, :4]) == [2, 3, 5, 6]
    assert np.array_equal(codes_to_frames(l0, l1, l2), frames)


def test_token_layout_for_neucodec_makes_every_audio_token_a_frame():
    layout = TokenLayout.for_codec(NEUCODEC, audio_base_id=151_700, stop_ids=frozenset({5}))
    assert layout.audio_end_id == 151_700 + 65_536
    assembler = FrameAssembler(layout)
    assert assembler.push([151_700, 151_700 + 65_535, 5, 42]) == [[0], [65_535]]
    assert (assembler.stats.frames, assembler.stats.misplaced, assembler.stats.non_audio) == (2, 0, 1)
