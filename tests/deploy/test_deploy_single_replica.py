"""Scoring runs as exactly one replica in every deployment, never two at once.

The scorer holds the whole scored population in memory: two scorers would each rank from part
of it and publish the same event id with different content (docs/adr/0012-scoring-models.md,
"Running two replicas"). Until scoring is partitioned by profile_id, no autoscaler may scale it
above one, no overlay may raise its minimum, and no rollout may overlap the old and new pod.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "yaml", reason="PyYAML is not installed: add pyyaml to the dev dependency group"
)

ROOT = Path(__file__).resolve().parents[2]
# Services whose every instance must be the only one (ADR 12 for scoring).
SINGLE_REPLICA = ("scoring",)
# KEDA's maxReplicaCount when a ScaledObject leaves it out.
KEDA_DEFAULT_MAX = 100
# What the prod overlay keeps of every autoscaled service (a node drain never stops one).
PROD_MIN_REPLICAS = 2

Doc = dict[str, Any]


def _deployment(rendered: Any, service: str) -> Doc:
    found = {
        doc["metadata"]["name"]: doc
        for name, doc, _ in rendered.clientela_containers("service")
        if name == service
    }
    assert len(found) == 1, f"{rendered.overlay}: one Deployment of {service}, found {found}"
    (doc,) = found.values()
    assert doc["kind"] == "Deployment", f"{rendered.overlay}/{service}: {doc['kind']}"
    return doc


def _autoscalers_of(rendered: Any, deployment: Doc) -> list[tuple[Doc, int, int]]:
    """Return (autoscaler, min, max) of every ScaledObject and HPA that targets a Deployment."""
    name = deployment["metadata"]["name"]
    found = []
    for doc in rendered.of_kind("ScaledObject"):
        ref = doc["spec"]["scaleTargetRef"]
        if ref.get("kind", "Deployment") == "Deployment" and ref["name"] == name:
            spec = doc["spec"]
            found.append(
                (
                    doc,
                    int(spec.get("minReplicaCount", 0)),
                    int(spec.get("maxReplicaCount", KEDA_DEFAULT_MAX)),
                )
            )
    for doc in rendered.of_kind("HorizontalPodAutoscaler"):
        ref = doc["spec"]["scaleTargetRef"]
        if ref["kind"] == "Deployment" and ref["name"] == name:
            spec = doc["spec"]
            found.append((doc, int(spec.get("minReplicas", 1)), int(spec["maxReplicas"])))
    return found


@pytest.mark.parametrize("service", SINGLE_REPLICA)
def test_single_replica_service_is_never_autoscaled_above_one(
    rendered_overlays: dict[str, Any], service: str
) -> None:
    for rendered in rendered_overlays.values():
        deployment = _deployment(rendered, service)
        for doc, low, high in _autoscalers_of(rendered, deployment):
            where = f"{rendered.overlay}/{doc['kind']}/{doc['metadata']['name']}"
            assert high <= 1, f"{where} scales {service} up to {high} replicas"
            assert low <= 1, f"{where} keeps at least {low} replicas of {service}"


@pytest.mark.parametrize("service", SINGLE_REPLICA)
def test_single_replica_deployment_is_one_pod_recreated(
    rendered_overlays: dict[str, Any], service: str
) -> None:
    """replicas: 1 in every overlay, and Recreate: the old pod stops before the new one starts."""
    for rendered in rendered_overlays.values():
        spec = _deployment(rendered, service)["spec"]
        where = f"{rendered.overlay}/{service}"
        assert spec.get("replicas") == 1, f"{where}: replicas {spec.get('replicas')}, not 1"
        strategy = spec.get("strategy", {})
        assert strategy.get("type") == "Recreate", (
            f"{where}: strategy {strategy}; a rolling update runs two pods at once"
        )
        assert "rollingUpdate" not in strategy, where


@pytest.mark.parametrize("service", SINGLE_REPLICA)
def test_single_replica_disruption_budget_lets_a_drain_through(
    rendered_overlays: dict[str, Any], service: str
) -> None:
    """minAvailable 1 of one pod would block every drain until someone adds a second pod."""
    for rendered in rendered_overlays.values():
        labels = _deployment(rendered, service)["spec"]["template"]["metadata"]["labels"]
        for budget in rendered.of_kind("PodDisruptionBudget"):
            selector = budget["spec"]["selector"].get("matchLabels", {})
            if all(labels.get(k) == v for k, v in selector.items()):
                where = f"{rendered.overlay}/{budget['metadata']['name']}"
                assert "minAvailable" not in budget["spec"], where
                assert budget["spec"].get("maxUnavailable") == 1, where


def test_prod_keeps_the_other_services_autoscaled(
    rendered_overlays: dict[str, Any], services: dict[str, Any], generate_topics: Any
) -> None:
    """Only the single-replica services leave autoscaling; prod still keeps two of the rest."""
    consumers = set(generate_topics.CONSUMED_TOPICS) & set(services)
    for rendered in rendered_overlays.values():
        for service in sorted(consumers - set(SINGLE_REPLICA)):
            deployment = _deployment(rendered, service)
            autoscalers = _autoscalers_of(rendered, deployment)
            where = f"{rendered.overlay}/{service}"
            assert len(autoscalers) == 1, f"{where}: one autoscaler, found {len(autoscalers)}"
            ((doc, low, high),) = autoscalers
            assert doc["kind"] == "ScaledObject", where
            assert "replicas" not in deployment["spec"], f"{where}: KEDA owns the replica count"
            if rendered.overlay == "prod":
                assert low >= PROD_MIN_REPLICAS, f"{where}: prod keeps {low} replica(s)"
                assert high > 1, where


@pytest.mark.parametrize("service", SINGLE_REPLICA)
def test_compose_runs_one_container(compose: Any, service: str) -> None:
    definition = compose.services[service]
    assert str(definition["image"]).startswith(f"clientela/{service}:")
    assert int(definition.get("scale", 1)) == 1
    assert int(definition.get("deploy", {}).get("replicas", 1)) == 1


@pytest.mark.parametrize("service", SINGLE_REPLICA)
def test_docs_never_scale_a_single_replica_service(service: str) -> None:
    """Runbooks do not point at an autoscaler the service does not have (except to delete the
    one an older install still has), nor scale the service up."""
    autoscaler = re.compile(rf"(scaledobject|hpa)[ /]clientela-{service}\b", re.IGNORECASE)
    scale_up = re.compile(rf"scale\s.*clientela-{service}\b.*--replicas[= ]*([0-9]+)")
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    for path in [*docs, *sorted((ROOT / "deploy").rglob("README*"))]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            where = f"{path.relative_to(ROOT)}:{number}"
            if "delete" not in line:
                assert not autoscaler.search(line), f"{where}: {service} has no autoscaler"
            match = scale_up.search(line)
            assert match is None or int(match.group(1)) <= 1, f"{where}: scales {service} up"
