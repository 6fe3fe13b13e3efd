"""Deployment files: .env_example, the compose files and the Dockerfile agree with Settings.

Docker itself is not needed: the compose files are read as YAML, their `${VAR:-default}`
interpolations resolved here, and `docker-compose config` runs only where it is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from app.config import Settings

ROOT = Path(__file__).resolve().parent.parent
ENV_EXAMPLE = ROOT / ".env_example"
ALIASES = [field.alias for field in Settings.model_fields.values()]
# Settings that cannot be written blank: they stay commented out in .env_example and unpassed.
UNSET_BY_DEFAULT = {f.alias for f in Settings.model_fields.values() if f.default is None}

# File -> service -> container ports it publishes.
COMPOSE_FILES: dict[str, dict[str, set[int]]] = {
    "vllm.yaml": {"tts-engine": {9093}},
    "docker-compose.yaml": {"tts-engine": {9093}, "tts-api": {9091}},
    "docker-compose-cpu.yaml": {"tts-engine": {9093}, "tts-api": {9091}},
    "stress-test.yaml": {"stress-test": set()},
    "docker-compose-scale.yaml": {
        "tts-engine-1": set(), "tts-engine-2": set(), "tts-router": set(), "postgres": set(),
        "tts-api-1": {9091}, "tts-api-2": {9091},
    },
}
# (file, API service) -> what it sets on purpose instead of Settings' default.
SCALE_OUT_API = {"TTS_API": "http://tts-router:9093", "ENGINE_HEALTH_PATH": "/readiness",
                 "VOICE_STORE_URL": "postgresql://tts:${POSTGRES_PASSWORD:-tts}@postgres:5432/tts",
                 "DATA_DIR": "/data"}
API_PINNED = {
    # The exported ONNX codec is cached on the api-cache volume, so a new container reuses it.
    ("docker-compose.yaml", "tts-api"): {"DATA_DIR": "/data", "CODEC_CACHE_DIR": "/cache/codec"},
    ("docker-compose-cpu.yaml", "tts-api"): {"DATA_DIR": "/data", "CODEC_DEVICE": "cpu",
                                             "CODEC_CACHE_DIR": "/cache/codec"},
    ("docker-compose-scale.yaml", "tts-api-1"): SCALE_OUT_API,
    ("docker-compose-scale.yaml", "tts-api-2"): SCALE_OUT_API,
}
# `$${...}` is an escaped, literal `${...}` for the container's shell, not an interpolation.
INTERPOLATION = re.compile(r"(?<!\$)\$\{(\w+)(?::-([^}]*))?\}")


def read_env_example() -> tuple[dict[str, str], set[str]]:
    """(active NAME -> value, names present only as `# NAME=...`)."""
    active: dict[str, str] = {}
    commented: set[str] = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        if match := re.fullmatch(r"(\w+)=(.*)", line):
            active[match[1]] = match[2]
        elif match := re.fullmatch(r"#\s*(\w+)=.*", line):
            commented.add(match[1])
    return active, commented - set(active)


def load_compose(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def resolve_service(name: str, service: str) -> dict:
    """The service with `extends` applied (one level, top-level keys), as compose merges it."""
    spec = dict(load_compose(name)["services"][service])
    base = spec.pop("extends", None)
    if base is None:
        return spec
    return {**resolve_service(base.get("file", name), base["service"]), **spec}


def with_defaults(value: str) -> str:
    """Interpolate as compose does with every variable unset."""
    return INTERPOLATION.sub(lambda m: m[2] or "", value)


def container_ports(spec: dict) -> set[int]:
    return {int(str(port).rsplit(":", 1)[-1].split("/")[0]) for port in spec.get("ports", [])}


def yaml_strings(node: object) -> list[str]:
    """Every string value (and key) in a parsed YAML document; comments are not values."""
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in yaml_strings(key) + yaml_strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in yaml_strings(item)]
    return [node] if isinstance(node, str) else []


def clear_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for alias in ALIASES:
        monkeypatch.delenv(alias, raising=False)


def comparable(settings: Settings) -> dict:
    """Settings as data, with SENTRY_DSN's seed default " " and a blank value both "disabled"."""
    return {**settings.model_dump(), "sentry_dsn": settings.sentry_dsn.strip()}


def test_env_example_names_every_setting():
    active, commented = read_env_example()
    missing = [alias for alias in ALIASES if alias not in active and alias not in commented]
    assert not missing, f".env_example lacks {missing}"
    assert commented <= UNSET_BY_DEFAULT, "only settings whose default is unset may be commented"


def test_env_example_loads_as_settings_defaults(monkeypatch):
    clear_settings_env(monkeypatch)
    defaults = Settings(_env_file=None)
    loaded = Settings(_env_file=ENV_EXAMPLE)
    assert comparable(loaded) == comparable(defaults)
    assert (loaded.tts_api, loaded.model_name, loaded.speakers) == (
        "http://tts-engine:9093", "TTS-model", ["husein", "idayu", "jenny"])


@pytest.mark.parametrize("name,service", sorted(API_PINNED))
def test_compose_api_passes_settings_defaults(name, service, monkeypatch):
    environment = resolve_service(name, service)["environment"]
    unpassed = set(ALIASES) - set(environment) - UNSET_BY_DEFAULT
    assert not unpassed, f"{name}: tts-api does not pass {sorted(unpassed)}"

    clear_settings_env(monkeypatch)
    defaults = Settings(_env_file=None)
    for key, value in environment.items():
        monkeypatch.setenv(key, with_defaults(str(value)))
    composed, expected = comparable(Settings(_env_file=None)), comparable(defaults)
    pinned = API_PINNED[name, service]
    for field_name, field in Settings.model_fields.items():
        if field.alias not in pinned:
            assert composed[field_name] == expected[field_name], field.alias
    assert {alias: environment[alias] for alias in pinned} == pinned
    assert environment["TTS_API"] == pinned.get("TTS_API", "http://tts-engine:9093")
    assert (composed["host"], composed["port"]) == ("0.0.0.0", 9091)


@pytest.mark.parametrize("name", sorted(COMPOSE_FILES))
def test_compose_defaults_match_env_example(name):
    active, _ = read_env_example()
    matches = (m for text in yaml_strings(load_compose(name)) for m in INTERPOLATION.finditer(text))
    for match in matches:
        variable, default = match[1], match[2] or ""
        assert variable in active, f"{name} reads ${variable}, which .env_example does not list"
        assert active[variable] == default, f"{name}: {variable} defaults to {default!r}"


@pytest.mark.parametrize("name", sorted(COMPOSE_FILES))
def test_compose_file_has_expected_services(name):
    assert set(load_compose(name)["services"]) == set(COMPOSE_FILES[name])
    for service, ports in COMPOSE_FILES[name].items():
        assert container_ports(resolve_service(name, service)) == ports, service


def test_compose_engine_serves_the_api_model():
    for name in ("vllm.yaml", "docker-compose-cpu.yaml"):
        command = with_defaults(resolve_service(name, "tts-engine")["command"]).split()
        assert command[command.index("--served-model-name") + 1] == "TTS-model"
        assert command[command.index("--port") + 1] == "9093"
    stress = with_defaults(load_compose("stress-test.yaml")["services"]["stress-test"]["command"])
    assert "--url http://tts-api:9091" in stress


def compose_commands() -> list[list[str]]:
    commands = []
    if shutil.which("docker-compose"):
        commands.append(["docker-compose"])
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30,
                               check=False)
        if probe.returncode == 0:
            commands.append(["docker", "compose"])
    return commands


@pytest.mark.parametrize("name", sorted(COMPOSE_FILES))
def test_compose_file_valid_for_docker_compose(name):
    commands = compose_commands()
    if not commands:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed")
    for command in commands:
        # .env_example as the env file: it must parse for compose too, and a developer's .env
        # must not decide the outcome.
        result = subprocess.run(
            [*command, "--env-file", str(ENV_EXAMPLE), "-f", name, "config", "-q"],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )
        assert result.returncode == 0, f"{' '.join(command)} config {name}:\n{result.stderr}"


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.vllm-cpu"])
def test_dockerfile_copies_existing_paths(name):
    sources = [
        source
        for line in (ROOT / name).read_text().splitlines()
        if line.startswith("COPY ")
        for source in line.split()[1:-1]
        if not source.startswith("--")
    ]
    missing = [source for source in sources if not (ROOT / source).exists()]
    assert not missing, f"{name} copies paths absent from the build context: {missing}"
    if name == "Dockerfile":
        assert {"app/", "stress_test/"} <= set(sources)
