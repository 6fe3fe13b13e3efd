"""deploy/k8s: every manifest against Kubernetes' own JSON schemas (kubernetes-validate ships
them, so this runs offline), and the topology the files describe hangs together."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from app.admission import Admission
from app.config import Settings
from app.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"  # the oldest we support: preStop `sleep` is GA there
MANIFESTS = sorted(p for p in K8S.glob("*.yaml")
                   if p.name not in ("kustomization.yaml", "prometheus-adapter-values.yaml"))
ALIASES = {field.alias for field in Settings.model_fields.values()}


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def resources() -> dict[tuple[str, str], dict]:
    return {(doc["kind"], doc["metadata"]["name"]): doc
            for path in MANIFESTS for doc in documents(path)}


def container(deployment: dict) -> dict:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    return only


def pod_labels(deployment: dict) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
@pytest.mark.parametrize("version", [KUBERNETES_VERSION, kubernetes_validate.latest_version()])
def test_manifest_is_valid_for_kubernetes(path, version):
    for doc in documents(path):
        kubernetes_validate.validate(doc, version, strict=True)


def test_kustomization_applies_every_manifest_but_the_example_secret():
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in MANIFESTS} - {"voice-store-secret.example.yaml"}


def test_services_select_their_pods():
    found = resources()
    for (kind, name), service in found.items():
        if kind == "Service":
            target = found["Deployment", name]
            assert service["spec"]["selector"].items() <= pod_labels(target).items(), name
            ports = {p["name"] for p in container(target)["ports"]}
            assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports, name


def test_router_discovers_the_engine_pods_and_the_api_points_at_it():
    found = resources()
    args = container(found["Deployment", "tts-router"])["args"]
    selector = args[args.index("--selector") + 1]
    key, value = selector.split("=")
    assert pod_labels(found["Deployment", "tts-engine"])[key] == value
    assert "--service-discovery-port=9093" in args
    assert found["ServiceAccount", "tts-router"]
    assert {"list", "watch"} <= set(found["Role", "tts-router-discovery"]["rules"][0]["verbs"])
    config = found["ConfigMap", "tts-api"]["data"]
    assert config["TTS_API"] == "http://tts-router:9093"
    assert config["ENGINE_HEALTH_PATH"] == "/readiness"  # the router's /health is 503 if any is down
    assert set(config) - ALIASES <= {"HF_HOME"}


def test_engines_and_api_request_gpus():
    found = resources()
    for name in ("tts-engine", "tts-api"):
        resources_ = container(found["Deployment", name])["resources"]
        assert resources_["limits"]["nvidia.com/gpu"] == "1", name


def test_api_drains_before_it_is_killed():
    found = resources()
    api = found["Deployment", "tts-api"]
    spec, main = api["spec"]["template"]["spec"], container(api)
    assert main["readinessProbe"]["httpGet"]["path"] == "/health"
    assert main["livenessProbe"]["httpGet"]["path"] != "/health"
    grace = float(found["ConfigMap", "tts-api"]["data"]["SHUTDOWN_GRACE_S"])
    pre_stop = main["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert spec["terminationGracePeriodSeconds"] >= grace + pre_stop
    [secret_ref] = [e["valueFrom"]["secretKeyRef"] for e in main["env"]
                    if e["name"] == "VOICE_STORE_URL"]
    example = found["Secret", secret_ref["name"]]
    assert example["stringData"][secret_ref["key"]].startswith("postgresql://")


def test_api_autoscales_on_a_metric_the_api_exports():
    found = resources()
    hpa = found["HorizontalPodAutoscaler", "tts-api"]
    [metric] = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    name = metric["pods"]["metric"]["name"]
    exposition = Metrics(admission=Admission(4, 8, 5.0)).render().decode()
    exported = {line.split()[2] for line in exposition.splitlines() if line.startswith('# TYPE')}
    assert name in exported
    limit = int(found["ConfigMap", "tts-api"]["data"]["MAX_CONCURRENT_STREAMS"])
    assert 0 < float(metric["pods"]["target"]["averageValue"]) < limit
    adapter = yaml.safe_load((K8S / "prometheus-adapter-values.yaml").read_text())
    exposed = {rule["name"]["as"] for rule in adapter["rules"]["custom"]}
    assert {name, "vllm_num_requests_waiting"} <= exposed
