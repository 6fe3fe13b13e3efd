"""Where the weights come from: a local directory, the hub, or the generated demo fallbacks.

Hub access is decided once per run, before anything is looked up: HF_HUB_OFFLINE=1 skips the
hub; otherwise one short probe of HF_ENDPOINT decides, and a failed probe makes the whole run
offline. Offline, the hub cache is still used (no network), and the engine and the API are
started with HF_HUB_OFFLINE=1 so that neither spends its start-up on retries.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

from stack.config import StackSettings

logger = logging.getLogger(__name__)

# (endpoint, timeout_s) -> None when the hub answers, else why not.
HubProbe = Callable[[str, float], str | None]

DEMO_WARNING = """
****************************************************************************
*  {what} could not be loaded ({why}).
*  Falling back to GENERATED weights: the service will make NOISE, not
*  speech. /health reports "demo": true and responses carry X-TTS-Demo.
****************************************************************************"""


def probe_hub(endpoint: str, timeout_s: float) -> str | None:
    """One HEAD request to `endpoint`: None if any HTTP server below 5xx answers in time."""
    request = urllib.request.Request(endpoint.rstrip("/") + "/", method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s):
            return None
    except urllib.error.HTTPError as exc:  # an answer, so the hub is reachable unless it is down
        return None if exc.code < HTTPStatus.INTERNAL_SERVER_ERROR else f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:  # DNS, refused, timeout, TLS
        return str(getattr(exc, "reason", exc))


@dataclass(frozen=True)
class Hub:
    """How this run reaches the Hugging Face hub; decided once, used by every lookup and child."""

    offline: bool
    endpoint: str
    token: str | None = None
    offline_reason: str = ""

    @classmethod
    def decide(cls, settings: StackSettings, probe: HubProbe = probe_hub) -> Hub:
        token = settings.hf_token or None
        if settings.hf_hub_offline:
            return cls(True, settings.hf_endpoint, token, "HF_HUB_OFFLINE is set")
        why = probe(settings.hf_endpoint, settings.hub_probe_timeout_s)
        if why is None:
            return cls(False, settings.hf_endpoint, token)
        return cls(True, settings.hf_endpoint, token, f"{settings.hf_endpoint} unreachable: {why}")

    def environment(self) -> dict[str, str]:
        """Variables for the engine and the API, so they reach the hub (or not) as we do."""
        env = {"HF_ENDPOINT": self.endpoint}
        if self.offline:
            env["HF_HUB_OFFLINE"] = "1"
        if self.token:
            env["HF_TOKEN"] = self.token
        return env

    def missing(self, repo_id: str, filename: str) -> str | None:
        """None if `filename` of `repo_id` is cached or (online) downloadable, else why not."""
        try:
            from huggingface_hub import hf_hub_download

            hf_hub_download(repo_id, filename, local_files_only=self.offline, etag_timeout=5,
                            token=self.token, endpoint=self.endpoint)
            return None
        except Exception as exc:  # noqa: BLE001 - offline, unknown repo, auth: all "not here"
            return type(exc).__name__


def codec_of(model: str, codec: str) -> str:
    """The codec `model` writes: CODEC when set, else guessed from the name (Orpheus family:
    snac; the seed's Scicom model and anything else: neucodec) — used to pick the demo fallback
    of the same codec when the model cannot be had. With the weights, the served tokenizer
    decides (profiles are detected from it)."""
    if codec != "auto":
        return codec
    return "snac" if "orpheus" in model.lower() or "snac" in model.lower() else "neucodec"


def resolve_lm(model: str, cache_dir: Path, hub: Hub, codec: str = "neucodec"
               ) -> tuple[str, bool]:
    """(model path or id for vLLM, is_demo); the demo fallback writes `codec`'s tokens."""
    if model and (Path(model).is_dir() or hub.missing(model, "config.json") is None):
        return model, False
    if not model:
        why = "no model given"
    elif hub.offline:
        why = f"not a local dir nor in the hub cache; offline: {hub.offline_reason}"
    else:
        why = "not a local dir and the hub failed"
    logger.warning(DEMO_WARNING.format(what=f"TTS_MODEL {model!r}", why=why))
    from demo_model import ensure_demo_model, ensure_neucodec_demo_model

    ensure = ensure_neucodec_demo_model if codec == "neucodec" else ensure_demo_model
    return str(ensure(cache_dir / "models")), True


def resolve_codec_weights(name: str, source: str, hub: Hub,
                          files: tuple[str, ...] = ("pytorch_model.bin",)) -> str:
    """A codec's weights (`name`: SNAC_MODEL or NEUCODEC_MODEL) as given when they can be
    loaded (a local directory, or any of `files` cached or downloadable), else "random"."""
    if source == "random" or Path(source).is_dir():
        return source
    why = ""
    for filename in files:
        missing = hub.missing(source, filename)
        if missing is None:
            return source
        why = missing
    if hub.offline:
        why = f"{why}; offline: {hub.offline_reason}"
    logger.warning(DEMO_WARNING.format(what=f"{name} {source!r}", why=why))
    return "random"


def resolve_snac(source: str, hub: Hub) -> str:
    """SNAC_MODEL as given when it can be loaded, else "random" (seeded weights)."""
    return resolve_codec_weights("SNAC_MODEL", source, hub)


def resolve_neucodec(source: str, hub: Hub) -> str:
    """NEUCODEC_MODEL as given when it can be loaded, else "random" (seeded weights)."""
    return resolve_codec_weights("NEUCODEC_MODEL", source, hub,
                                 ("pytorch_model.bin", "model.safetensors"))
