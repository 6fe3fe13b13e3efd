from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import OPENAI_VOICES, Settings


def test_settings_seed_defaults(monkeypatch):
    monkeypatch.chdir("/")  # no .env
    s = Settings()
    assert s.tts_api == "http://tts-engine:9093"
    assert (s.model_name, s.default_speaker, s.speakers) == (
        "TTS-model", "husein", ["husein", "idayu", "jenny"])
    assert (s.default_temperature, s.default_repetition_penalty, s.default_max_tokens) == (
        0.6, 1.15, 3072)
    assert (s.default_playback_speed, s.default_playback_overlap_speed) == (0.0, 0.2)
    assert (s.dynamic_batching, s.microsleep, s.max_batch_size) == (False, 1e-4, 16)
    assert (s.cuda_graph_batch, s.torch_compile, s.debug_audio) == ([], False, False)


def test_settings_parse_seed_env_formats(monkeypatch):
    monkeypatch.setenv("SPEAKERS", "a, b")
    monkeypatch.setenv("DEFAULT_SPEAKER", "b")
    monkeypatch.setenv("CUDA_GRAPH_BATCH", "[0.1, 0.2, 10.0]")
    monkeypatch.setenv("DYNAMIC_BATCHING", "true")
    monkeypatch.setenv("VOICE_MAP", '{"alloy": "b"}')
    s = Settings()
    assert s.speakers == ["a", "b"] and s.cuda_graph_batch == [0.1, 0.2, 10.0]
    assert s.dynamic_batching is True
    voices = s.resolved_voice_map()
    assert voices["alloy"] == "b" and set(voices) == set(OPENAI_VOICES)
    assert set(voices.values()) <= {"a", "b"}


def test_settings_reject_unknown_default_speaker():
    with pytest.raises(ValidationError):
        Settings(SPEAKERS="a,b", DEFAULT_SPEAKER="c")
