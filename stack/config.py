"""Launcher settings: what only `python -m stack` needs (the engine, the hub), from env and `.env`.

Everything the API also uses (HOST, PORT, MODEL_NAME, SNAC_MODEL, ...) is read through
`app.config.Settings` instead, so the launcher and the API it starts can never disagree. Both
classes read `.env` from the working directory (the repository root under `make run`), and a
variable in the environment wins over `.env`, as pydantic-settings does for the API.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_HF_ENDPOINT = "https://huggingface.co"
# The seed's model (003): Qwen3-1.7B writing NeuCodec codes. Orpheus (SNAC) is one setting away:
# TTS_MODEL=canopylabs/orpheus-3b-0.1-ft.
DEFAULT_TTS_MODEL = "Scicom-intl/Multilingual-TTS-1.7B-Base"


class StackSettings(BaseSettings):
    """Engine and hub settings of the launcher. Units are in the field names or descriptions."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    tts_model: str = Field(
        "", alias="TTS_MODEL",
        description="Speech LM the engine serves: HF id or local directory. When it cannot be "
        "had, the generated demo model of the same codec is served instead. Unset: STT_MODEL "
        "(the seed's spelling), else DEFAULT_TTS_MODEL.",
    )
    stt_model: str = Field(
        "", alias="STT_MODEL", description="The seed's name for TTS_MODEL; TTS_MODEL wins.",
    )
    engine_port: int = Field(9093, alias="ENGINE_PORT", ge=1, le=65535,
                             description="Loopback port of the vLLM engine.")
    engine_device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", alias="ENGINE_DEVICE",
        description="Where vLLM runs; auto = cuda when `nvidia-smi -L` finds a GPU, else cpu.",
    )
    engine_dtype: str | None = Field(
        None, alias="ENGINE_DTYPE",
        description="vLLM --dtype; unset = float32 on CPU, auto on CUDA.",
    )
    max_model_len: int = Field(8192, alias="MAX_MODEL_LEN", ge=1,
                               description="Longest sequence the engine accepts, in tokens.")
    gpu_mem_util: float = Field(
        0.7, alias="GPU_MEM_UTIL", gt=0.0, le=1.0,
        description="Fraction of GPU memory vLLM may take (CUDA only).",
    )
    engine_cpus: str = Field(
        "auto", alias="ENGINE_CPUS",
        description="CPUs the engine may use, e.g. 0-5; auto = on a CPU engine all but the "
        "API's quarter of the cores (stack.cpus), else unpinned; all = unpinned.",
    )
    api_cpus: str = Field(
        "auto", alias="API_CPUS",
        description="CPUs the API (event loop and codec) may use, e.g. 6-7; auto = on a CPU "
        "engine the last quarter of the cores (at least one), else unpinned; all = unpinned.",
    )
    engines: int = Field(
        1, alias="ENGINES", ge=1, le=16,
        description="vLLM engines to start (make run-scale: 2). Engine i listens on "
        "ENGINE_PORT + i; with more than one, vllm-router fronts them on ROUTER_PORT and the "
        "API points there. On CUDA engine i gets GPU i (CUDA_VISIBLE_DEVICES).",
    )
    api_replicas: int = Field(
        1, alias="API_REPLICAS", ge=1, le=16,
        description="API processes to start (make run-scale: 2), replica i on PORT + i. With "
        "more than one and VOICE_STORE_URL unset, custom voices go to a PostgreSQL server "
        "started here (data in .cache/postgres) when its binaries exist, else to the SQLite "
        "file in DATA_DIR that all replicas share.",
    )
    router_port: int = Field(9090, alias="ROUTER_PORT", ge=1, le=65535,
                             description="Loopback port of vllm-router (ENGINES > 1).")
    router_metrics_port: int = Field(29000, alias="ROUTER_METRICS_PORT", ge=1, le=65535,
                                     description="Loopback port of the router's /metrics.")
    postgres_port: int = Field(
        5433, alias="POSTGRES_PORT", ge=1, le=65535,
        description="Loopback port of the PostgreSQL server make run-scale starts.")
    hf_hub_offline: bool = Field(
        False, alias="HF_HUB_OFFLINE",
        description="Never contact the hub: use local directories, the hub cache, or the "
        "generated fallbacks.",
    )
    hf_endpoint: str = Field(DEFAULT_HF_ENDPOINT, alias="HF_ENDPOINT",
                             description="Hugging Face hub (or mirror) base URL.")
    hf_token: str = Field("", alias="HF_TOKEN",
                          description="Token for gated or private weights; blank for none.")
    hub_probe_timeout_s: float = Field(
        3.0, alias="HUB_PROBE_TIMEOUT_S", gt=0.0, le=60.0,
        description="How long the one start-up probe of HF_ENDPOINT may take before the run "
        "goes offline.",
    )

    @field_validator("engine_dtype", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("hf_hub_offline", mode="before")
    @classmethod
    def _blank_is_false(cls, value: object) -> object:
        # huggingface_hub treats an empty HF_HUB_OFFLINE as unset; so do we.
        return False if isinstance(value, str) and not value.strip() else value

    def model(self) -> str:
        """The speech LM to serve: TTS_MODEL, else the seed's STT_MODEL, else the default."""
        return self.tts_model.strip() or self.stt_model.strip() or DEFAULT_TTS_MODEL

    def device(self) -> Literal["cpu", "cuda"]:
        """ENGINE_DEVICE with auto resolved, the way the Makefile picks the vLLM build."""
        if self.engine_device != "auto":
            return self.engine_device
        return "cuda" if gpu_present() else "cpu"

    def dtype(self, device: str) -> str:
        return self.engine_dtype or ("float32" if device == "cpu" else "auto")


def gpu_present() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        probe = subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0
