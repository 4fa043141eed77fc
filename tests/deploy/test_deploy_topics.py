"""Topics are declared once: every registered topic exists in Strimzi and compose, as declared,
and autoscaling stays within what the partitions allow."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from clientela.shared.contracts import topics as registry
from clientela.shared.contracts.topics import ALL_TOPICS, TopicSpec

pytest.importorskip(
    "yaml", reason="PyYAML is not installed: add pyyaml to the dev dependency group"
)
ROOT = Path(__file__).resolve().parents[2]
BY_NAME = {spec.name: spec for spec in ALL_TOPICS}


def _config(rendered: Any, key: str) -> str:
    config = rendered.get("ConfigMap", "clientela-config")
    assert config is not None, "ConfigMap clientela-config is missing"
    return str(config.get("data", {}).get(key, ""))


def test_every_topic_has_a_kafka_topic(rendered_overlays: dict[str, Any]) -> None:
    for rendered in rendered_overlays.values():
        prefix = _config(rendered, "CLIENTELA_KAFKA_TOPIC_PREFIX")
        declared = {
            doc["spec"].get("topicName", doc["metadata"]["name"]): doc
            for doc in rendered.of_kind("KafkaTopic")
        }
        expected = {prefix + spec.name for spec in ALL_TOPICS}
        assert set(declared) == expected, f"{rendered.overlay}: KafkaTopics differ from registry"
        for spec in ALL_TOPICS:
            topic = declared[prefix + spec.name]["spec"]
            assert topic["partitions"] == spec.partitions, spec.name
            assert topic["config"]["cleanup.policy"] == spec.cleanup_policy.value, spec.name


def test_kafka_topic_names_are_unique_and_valid(rendered_overlays: dict[str, Any]) -> None:
    for rendered in rendered_overlays.values():
        names = [doc["metadata"]["name"] for doc in rendered.of_kind("KafkaTopic")]
        assert len(names) == len(set(names))
        for name in names:
            assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name


def test_topics_fit_the_kafka_cluster(rendered_overlays: dict[str, Any]) -> None:
    """Replicas fit the brokers, and acks=all writes can meet min.insync.replicas."""
    for rendered in rendered_overlays.values():
        (kafka,) = rendered.of_kind("Kafka")
        cluster = kafka["metadata"]["name"]
        brokers = sum(
            pool["spec"]["replicas"]
            for pool in rendered.of_kind("KafkaNodePool")
            if pool["metadata"]["labels"]["strimzi.io/cluster"] == cluster
            and "broker" in pool["spec"]["roles"]
        )
        cluster_isr = int(kafka["spec"]["kafka"]["config"].get("min.insync.replicas", 1))
        for doc in rendered.of_kind("KafkaTopic"):
            name = f"{rendered.overlay}/{doc['metadata']['name']}"
            assert doc["metadata"]["labels"]["strimzi.io/cluster"] == cluster, name
            replicas = doc["spec"]["replicas"]
            isr = int(doc["spec"].get("config", {}).get("min.insync.replicas", cluster_isr))
            assert replicas <= brokers, f"{name}: {replicas} replicas on {brokers} brokers"
            assert isr <= replicas, f"{name}: min.insync.replicas {isr} > replicas {replicas}"
        for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor"):
            assert int(kafka["spec"]["kafka"]["config"][key]) <= brokers, key


def test_compose_topic_job_creates_every_topic(compose: Any) -> None:
    job = compose.services["topics"]
    (mount,) = job["volumes"]
    script = ROOT / mount.split(":")[0]
    created = {
        m.group(1): (int(m.group(2)), m.group(3))
        for m in re.finditer(r"^create (\S+) (\d+) (\w+)$", script.read_text(), re.MULTILINE)
    }
    assert created == {s.name: (s.partitions, s.cleanup_policy.value) for s in ALL_TOPICS}
    assert job["entrypoint"][-1] == mount.split(":")[1]


def test_every_consumer_scales_on_its_lag(
    generate_topics: ModuleType, services: dict[str, Any]
) -> None:
    """The declared consumers are real: each service's code names the topics it consumes."""
    consumed: dict[str, tuple[TopicSpec, ...]] = generate_topics.CONSUMED_TOPICS
    constants = {spec.name: n for n, spec in vars(registry).items() if isinstance(spec, TopicSpec)}
    for service in services.values():
        source = service.source_text()
        subscribes = "subscribe_batch(" in source or "subscriber(" in source
        assert (service.name in consumed) == subscribes, f"{service.name}: consumer or not?"
        for spec in consumed.get(service.name, ()):
            assert re.search(rf"\b{constants[spec.name]}\b", source), (
                f"{service.name} does not reference {constants[spec.name]}: "
                "update CONSUMED_BY in clientela.shared.contracts.topics"
            )


def test_scaled_objects_are_capped_by_partitions(
    rendered_overlays: dict[str, Any], services: dict[str, Any]
) -> None:
    for rendered in rendered_overlays.values():
        prefix = _config(rendered, "CLIENTELA_KAFKA_TOPIC_PREFIX")
        namespace = rendered.get("Namespace", "clientela")
        assert namespace is not None
        (kafka,) = rendered.of_kind("Kafka")
        bootstrap = (
            f"{kafka['metadata']['name']}-kafka-bootstrap.{namespace['metadata']['name']}.svc"
        )
        partitions = {
            doc["spec"].get("topicName", doc["metadata"]["name"]): doc["spec"]["partitions"]
            for doc in rendered.of_kind("KafkaTopic")
        }
        for scaled in rendered.of_kind("ScaledObject"):
            spec = scaled["spec"]
            name = f"{rendered.overlay}/{scaled['metadata']['name']}"
            target = rendered.get("Deployment", spec["scaleTargetRef"]["name"])
            assert target is not None, f"{name}: no Deployment {spec['scaleTargetRef']['name']}"
            assert "replicas" not in target["spec"], f"{name}: KEDA owns the replica count"
            service = target["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
            kafka_triggers = [t["metadata"] for t in spec["triggers"] if t["type"] == "kafka"]
            assert kafka_triggers, f"{name}: no Kafka lag trigger"
            for trigger in kafka_triggers:
                assert trigger["topic"] in partitions, f"{name}: unknown topic {trigger['topic']}"
                assert trigger["topic"].removeprefix(prefix) in BY_NAME
                assert trigger["consumerGroup"] == services[service].group_id, name
                assert trigger["bootstrapServers"].split(":")[0] == bootstrap, name
                assert trigger.get("allowIdleConsumers", "false") == "false", name
            # Each trigger is capped at its topic's partitions: beyond the largest, idle pods.
            cap = max(partitions[t["topic"]] for t in kafka_triggers)
            assert 1 <= spec.get("minReplicaCount", 0) <= spec["maxReplicaCount"] <= cap, name
