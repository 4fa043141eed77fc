"""The kustomize base and overlays: valid manifests whose cross-references hold.

Every file is validated as written, and every overlay as rendered (by `kubectl kustomize` where
kubectl exists, else by the tests' own renderer), against a pinned Kubernetes version.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip(
    "yaml", reason="PyYAML is not installed: add pyyaml to the dev dependency group"
)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
MANIFEST_FILES = sorted(
    p.relative_to(ROOT)
    for p in DEPLOY.rglob("*.yaml")
    if p.name != "kustomization.yaml" and "compose" not in p.parts
)
KUSTOMIZATIONS = sorted(p.parent.relative_to(ROOT) for p in DEPLOY.rglob("kustomization.yaml"))
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|API_KEYS?|CREDENTIALS?)", re.IGNORECASE)
URL_CREDENTIALS = re.compile(r"://[^/\s:@]*:[^/\s@]+@")
NEEDS = ("kafka", "database", "cache")

Doc = dict[str, Any]


def resolved_env(rendered: Any, container: Doc) -> dict[str, str]:
    """Return a container's environment: literal values, ConfigMap values, `<secret:key>`."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            config = rendered.get("ConfigMap", source["configMapRef"]["name"]) or {}
            env |= {prefix + k: str(v) for k, v in config.get("data", {}).items()}
        if "secretRef" in source:
            secret = rendered.get("Secret", source["secretRef"]["name"]) or {}
            env |= {prefix + k: f"<secret:{k}>" for k in secret.get("data", {})}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif "secretKeyRef" in item.get("valueFrom", {}):
            env[item["name"]] = f"<secret:{item['valueFrom']['secretKeyRef']['key']}>"
        elif "configMapKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["configMapKeyRef"]
            config = rendered.get("ConfigMap", ref["name"]) or {}
            env[item["name"]] = str(config.get("data", {}).get(ref["key"], ""))
        else:
            env[item["name"]] = "<field>"
    return env


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Return whether a label selector (matchLabels only, or a plain map) selects labels."""
    match = selector.get("matchLabels", selector if "matchExpressions" not in selector else {})
    assert "matchExpressions" not in selector, "selectors here use matchLabels only"
    return all(labels.get(k) == v for k, v in match.items())


def pod_labels(doc: Doc) -> dict[str, str]:
    """Return the labels of a workload's pods."""
    return dict(doc["spec"]["template"]["metadata"].get("labels", {}))


# --- validity ------------------------------------------------------------------------------


@pytest.mark.parametrize("relative", MANIFEST_FILES, ids=str)
def test_manifest_file_validates(relative: Path, validate_manifest: Callable[[Doc], None]) -> None:
    docs = [d for d in yaml.safe_load_all((ROOT / relative).read_text()) if d]
    assert docs, f"{relative} holds no document"
    for doc in docs:
        validate_manifest(doc)


def test_rendered_overlays_validate(
    rendered_overlays: dict[str, Any], validate_manifest: Callable[[Doc], None]
) -> None:
    for rendered in rendered_overlays.values():
        for doc in rendered.docs:
            validate_manifest(doc)


@pytest.mark.parametrize("relative", KUSTOMIZATIONS, ids=str)
def test_kustomization_resources_exist(relative: Path) -> None:
    kustomization = yaml.safe_load((ROOT / relative / "kustomization.yaml").read_text())
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    for resource in kustomization.get("resources", []):
        assert (ROOT / relative / resource).exists(), f"{relative}: missing {resource}"
    listed = {(ROOT / relative / r).resolve() for r in kustomization.get("resources", [])}
    for path in (ROOT / relative).rglob("*.yaml"):
        if path.name == "kustomization.yaml" or any(p in listed for p in (path, *path.parents)):
            continue
        if (path.parent / "kustomization.yaml").exists() and path.parent != ROOT / relative:
            continue
        pytest.fail(f"{path.relative_to(ROOT)} is in no kustomization's resources")


def test_overlays_render_without_kubectl(fallback_rendered: dict[str, Any]) -> None:
    for rendered in fallback_rendered.values():
        kinds = {doc["kind"] for doc in rendered.docs}
        assert {"Deployment", "Secret", "KafkaTopic", "ScaledObject", "Job"} <= kinds


def _normalised(docs: list[Doc]) -> dict[tuple[str, str, str], Doc]:
    text = re.sub(
        r"\bclientela-secrets-[a-z0-9]{10}\b", "clientela-secrets", yaml.safe_dump_all(docs)
    )
    return {
        (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d
        for d in yaml.safe_load_all(text)
        if d
    }


def test_fallback_renderer_agrees_with_kubectl(
    kubectl_rendered: dict[str, Any], fallback_rendered: dict[str, Any]
) -> None:
    for overlay, rendered in kubectl_rendered.items():
        expected = _normalised(rendered.docs)
        actual = _normalised(fallback_rendered[overlay].docs)
        assert sorted(actual) == sorted(expected), overlay
        for key, doc in expected.items():
            assert actual[key] == doc, f"{overlay}: {key} differs from kubectl kustomize"


# --- cross-references ----------------------------------------------------------------------


def test_env_vars_are_ones_the_service_reads(
    rendered_overlays: dict[str, Any], services: dict[str, Any]
) -> None:
    for rendered in rendered_overlays.values():
        for service, doc, container in rendered.clientela_containers():
            unknown = set(resolved_env(rendered, container)) - services[service].env_vars
            where = f"{rendered.overlay}/{doc['metadata']['name']}"
            assert not unknown, f"{where} sets variables {service} never reads: {sorted(unknown)}"


def test_services_get_their_production_settings(
    rendered_overlays: dict[str, Any], services: dict[str, Any]
) -> None:
    for rendered in rendered_overlays.values():
        deployed = {service for service, _, _ in rendered.clientela_containers("service")}
        assert deployed == set(services), f"{rendered.overlay}: every service is deployed"
        for service, doc, container in rendered.clientela_containers():
            env = resolved_env(rendered, container)
            svc = services[service]
            where = f"{rendered.overlay}/{doc['metadata']['name']}"
            assert env.get("CLIENTELA_ENVIRONMENT") == "production", where
            assert env.get("CLIENTELA_API_KEYS", "").startswith("<secret:"), where
            assert env.get("CLIENTELA_KAFKA_ENABLE_IDEMPOTENCE") == "true", where
            assert env.get("CLIENTELA_KAFKA_CREATE_TOPICS") == "false", where
            assert env.get("CLIENTELA_KAFKA_BOOTSTRAP_SERVERS", "").endswith(":9092"), where
            if svc.needs_database:
                assert env.get("CLIENTELA_DATABASE_URL", "").startswith("<secret:"), where
            serves = pod_labels(doc).get("app.kubernetes.io/component") == "service"
            if svc.needs_cache and serves:  # a migration job never touches the cache
                assert env.get("CLIENTELA_CACHE_URL", "").startswith("<secret:"), where
            if serves:
                assert env.get(f"{svc.env_prefix}HTTP_HOST") == "0.0.0.0", where
                assert env.get(f"{svc.env_prefix}HTTP_PORT") == str(svc.http_port), where


def test_referenced_configmaps_and_secrets_exist(rendered_overlays: dict[str, Any]) -> None:
    for rendered in rendered_overlays.values():
        for doc in rendered.workloads():
            where = f"{rendered.overlay}/{doc['kind']}/{doc['metadata']['name']}"
            refs: list[tuple[str, str, str | None]] = []
            for container in rendered.containers(doc):
                for source in container.get("envFrom", []):
                    if "configMapRef" in source:
                        refs.append(("ConfigMap", source["configMapRef"]["name"], None))
                    if "secretRef" in source:
                        refs.append(("Secret", source["secretRef"]["name"], None))
                for item in container.get("env", []):
                    value_from = item.get("valueFrom", {})
                    if "secretKeyRef" in value_from:
                        ref = value_from["secretKeyRef"]
                        refs.append(("Secret", ref["name"], ref["key"]))
                    if "configMapKeyRef" in value_from:
                        ref = value_from["configMapKeyRef"]
                        refs.append(("ConfigMap", ref["name"], ref["key"]))
            for spec in rendered.pod_specs(doc):
                for volume in spec.get("volumes", []):
                    if "configMap" in volume:
                        refs.append(("ConfigMap", volume["configMap"]["name"], None))
                    if "secret" in volume:
                        refs.append(("Secret", volume["secret"]["secretName"], None))
            for kind, name, key in refs:
                target = rendered.get(kind, name)
                assert target is not None, f"{where} refers to a missing {kind} {name}"
                if key is not None:
                    keys = set(target.get("data", {})) | set(target.get("stringData", {}))
                    assert key in keys, f"{where} refers to a missing key {key} of {kind} {name}"


def test_probes_point_at_real_endpoints(
    rendered_overlays: dict[str, Any], services: dict[str, Any]
) -> None:
    expected = {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    for rendered in rendered_overlays.values():
        for service, doc, container in rendered.clientela_containers("service"):
            where = f"{rendered.overlay}/{doc['metadata']['name']}"
            ports = {p.get("name"): p["containerPort"] for p in container["ports"]}
            for probe, path in expected.items():
                get = container[probe]["httpGet"]
                assert get["path"] == path, f"{where} {probe}"
                assert services[service].serves(get["path"]), f"{service} has no {get['path']}"
                port = ports.get(get["port"], get["port"])
                assert port == services[service].http_port, f"{where} {probe} port"


def test_services_and_ports_match_the_settings(
    rendered_overlays: dict[str, Any], services: dict[str, Any]
) -> None:
    for rendered in rendered_overlays.values():
        deployments = rendered.of_kind("Deployment")
        for service, doc, container in rendered.clientela_containers("service"):
            (port,) = container["ports"]
            assert port["containerPort"] == services[service].http_port
            matching = [
                s
                for s in rendered.of_kind("Service")
                if selects(s["spec"]["selector"], pod_labels(doc))
            ]
            assert len(matching) == 1, f"{rendered.overlay}: one Service for {service}"
            (svc_port,) = matching[0]["spec"]["ports"]
            assert svc_port["targetPort"] in (port["name"], port["containerPort"])
        for svc in rendered.of_kind("Service"):
            selected = [
                d
                for d in deployments + rendered.of_kind("StatefulSet")
                if selects(svc["spec"]["selector"], pod_labels(d))
            ]
            assert len(selected) == 1, f"{rendered.overlay}: Service {svc['metadata']['name']}"


def test_every_service_has_a_disruption_budget(rendered_overlays: dict[str, Any]) -> None:
    for rendered in rendered_overlays.values():
        budgets = rendered.of_kind("PodDisruptionBudget")
        for _, doc, _ in rendered.clientela_containers("service"):
            matching = [b for b in budgets if selects(b["spec"]["selector"], pod_labels(doc))]
            assert len(matching) == 1, f"{rendered.overlay}/{doc['metadata']['name']}: one PDB"
            spec = matching[0]["spec"]
            # minAvailable equal to the replica count would block every node drain.
            assert spec.get("maxUnavailable", 0) >= 1 or "minAvailable" not in spec


def _egress_ports(policy: Doc) -> set[int]:
    return {
        port["port"] for rule in policy["spec"].get("egress", []) for port in rule.get("ports", [])
    }


def test_network_policies_grant_what_each_pod_uses(
    rendered_overlays: dict[str, Any], services: dict[str, Any]
) -> None:
    ports = {"kafka": 9092, "database": 5432, "cache": 6379}
    for rendered in rendered_overlays.values():
        policies = rendered.of_kind("NetworkPolicy")
        deny = [
            p
            for p in policies
            if set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress")
            and not p["spec"].get("egress")
        ]
        assert deny, f"{rendered.overlay}: no default-deny policy"
        for doc in rendered.workloads():
            labels = pod_labels(doc)
            where = f"{rendered.overlay}/{doc['metadata']['name']}"
            if labels.get("app.kubernetes.io/part-of") == "clientela":
                assert any(selects(p["spec"]["podSelector"], labels) for p in deny), where
            service = labels.get("app.kubernetes.io/name")
            if service not in services or labels.get("app.kubernetes.io/part-of") != "clientela":
                continue
            svc = services[service]
            migrations = labels.get("app.kubernetes.io/component") == "migrations"
            needs = (
                {"database"}
                if migrations
                else {"kafka"}
                | ({"database"} if svc.needs_database else set())
                | ({"cache"} if svc.needs_cache else set())
            )
            granted = {n for n in NEEDS if labels.get(f"clientela.io/{n}-client") == "true"}
            assert granted == needs, f"{where}: grants {sorted(granted)}, uses {sorted(needs)}"
            allowed = {
                port
                for policy in policies
                if selects(policy["spec"]["podSelector"], labels)
                for port in _egress_ports(policy)
            }
            assert {ports[n] for n in needs} | {53} == allowed, f"{where}: egress {allowed}"


def test_http_ports_accept_callers(rendered_overlays: dict[str, Any]) -> None:
    for rendered in rendered_overlays.values():
        for _, doc, _ in rendered.clientela_containers("service"):
            ingress = [
                rule
                for policy in rendered.of_kind("NetworkPolicy")
                if selects(policy["spec"]["podSelector"], pod_labels(doc))
                for rule in policy["spec"].get("ingress", [])
            ]
            assert any(p["port"] == "http" for rule in ingress for p in rule["ports"])


def test_pods_are_hardened_and_bounded(rendered_overlays: dict[str, Any]) -> None:
    for rendered in rendered_overlays.values():
        for doc in rendered.workloads():
            where = f"{rendered.overlay}/{doc['metadata']['name']}"
            (spec,) = rendered.pod_specs(doc)
            assert spec["securityContext"]["runAsNonRoot"] is True, where
            assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
            assert spec.get("automountServiceAccountToken") is False, where
            for container in rendered.containers(doc):
                context = container["securityContext"]
                assert context["allowPrivilegeEscalation"] is False, where
                assert context["capabilities"]["drop"] == ["ALL"], where
                for bound in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(container["resources"][bound]), where
        for _, _doc, container in rendered.clientela_containers():
            assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_images_are_pinned(rendered_overlays: dict[str, Any]) -> None:
    for rendered in rendered_overlays.values():
        for doc in rendered.workloads():
            for container in rendered.containers(doc):
                image = container["image"]
                assert re.fullmatch(r"[^:@\s]+(:[\w.-]+)(@sha256:[0-9a-f]{64})?", image), image
                assert not image.endswith(":latest"), image


def test_migration_jobs_run_each_database_service_migrate(
    rendered_overlays: dict[str, Any], services: dict[str, Any]
) -> None:
    for rendered in rendered_overlays.values():
        jobs = {
            service: (doc, container)
            for service, doc, container in rendered.clientela_containers("migrations")
        }
        expected = {name for name, svc in services.items() if svc.needs_database}
        assert set(jobs) == expected, f"{rendered.overlay}: migration jobs"
        deployed = {s: c for s, _, c in rendered.clientela_containers("service")}
        for service, (doc, container) in jobs.items():
            assert doc["kind"] == "Job"
            assert container.get("args") == ["migrate"]
            assert container["image"] == deployed[service]["image"], "same release as the service"
            env = resolved_env(rendered, container)
            service_env = resolved_env(rendered, deployed[service])
            assert env["CLIENTELA_DATABASE_URL"] == service_env["CLIENTELA_DATABASE_URL"]
            assert env.get("CLIENTELA_DATABASE_SCHEMA_PREFIX") == service_env.get(
                "CLIENTELA_DATABASE_SCHEMA_PREFIX"
            )


def test_services_are_scraped_on_their_http_port(
    rendered_overlays: dict[str, Any], services: dict[str, Any]
) -> None:
    for rendered in rendered_overlays.values():
        for service, doc, _ in rendered.clientela_containers("service"):
            annotations = doc["spec"]["template"]["metadata"].get("annotations", {})
            assert annotations.get("prometheus.io/scrape") == "true"
            assert annotations.get("prometheus.io/port") == str(services[service].http_port)
            assert annotations.get("prometheus.io/path") == "/metrics"


# --- secrets -------------------------------------------------------------------------------


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def test_no_secret_in_plain_values(manifest_docs: list[tuple[Path, Doc]]) -> None:
    for path, doc in manifest_docs:
        where = f"{path.relative_to(ROOT)} {doc['kind']}/{doc['metadata']['name']}"
        assert doc["kind"] != "Secret", f"{where}: secrets come from the overlay's secrets.env"
        if doc["kind"] == "ConfigMap":
            for key in doc.get("data", {}):
                assert not SECRET_NAME.search(key), f"{where}: {key} belongs in a Secret"
        for text in _strings(doc):
            assert not URL_CREDENTIALS.search(text), f"{where}: credentials in a URL"
        for spec in ({"containers": [c]} for c in _all_containers(doc)):
            for item in spec["containers"][0].get("env", []):
                if "value" in item:
                    assert not SECRET_NAME.search(item["name"]), f"{where}: {item['name']}"


def _all_containers(doc: Doc) -> list[Doc]:
    template = doc.get("spec", {}).get("template", {}).get("spec", {})
    return list(template.get("containers", [])) + list(template.get("initContainers", []))


def test_secret_templates_hold_no_values() -> None:
    examples = sorted(DEPLOY.glob("overlays/*/secrets.env.example"))
    assert examples
    for example in examples:
        for line in example.read_text().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.partition("=")
                assert value == "", f"{example.relative_to(ROOT)}: {key} has a value"
        kustomization = yaml.safe_load((example.parent / "kustomization.yaml").read_text())
        envs = [e for g in kustomization["secretGenerator"] for e in g.get("envs", [])]
        assert envs == ["secrets.env"]
    ignored = (DEPLOY / ".gitignore").read_text().splitlines()
    assert "overlays/*/secrets.env" in ignored, "secrets.env must never be committed"
