"""Fixtures of the deployment tests: the services' settings and apps, manifests, compose.

Nothing here connects anywhere: apps are built without starting them, manifests are read
from disk, overlays are rendered with `kubectl kustomize` where kubectl exists and otherwise
by `render_overlay` below (the subset of kustomize the overlays use; a test checks that both
agree when kubectl is present).
"""

from __future__ import annotations

import base64
import copy
import importlib
import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings
from starlette.routing import Match

from clientela.shared.settings import ServiceSettings

try:
    import yaml
except ModuleNotFoundError:  # the test modules that need it skip themselves (YAML_SKIP)
    yaml = None

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("dev", "prod")
# The Kubernetes version every manifest is validated against (kubernetes-validate schemas).
KUBERNETES_VERSION = "1.32.0"

Doc = dict[str, Any]


# --- services -----------------------------------------------------------------------------


def discover_services() -> list[str]:
    """Return the workspace's services (one directory with a pyproject.toml each)."""
    return sorted(p.parent.name for p in ROOT.glob("services/*/pyproject.toml"))


SERVICES = discover_services()
_apps: dict[str, FastAPI] = {}


@dataclass(frozen=True)
class Service:
    """What the tests know about one service, read from its code."""

    name: str
    settings: type[ServiceSettings]
    env_prefix: str
    env_vars: frozenset[str]
    http_port: int
    group_id: str | None
    scripts: dict[str, str]
    wiring_source: str

    @property
    def needs_database(self) -> bool:
        """Whether the service builds a database engine."""
        return "create_engine(" in self.wiring_source

    @property
    def needs_cache(self) -> bool:
        """Whether the service builds a cache client."""
        return "make_cache(" in self.wiring_source

    def app(self) -> FastAPI:
        """Build (once) the service's FastAPI app, without starting it."""
        if self.name not in _apps:
            wiring = importlib.import_module(f"clientela.{self.name}.wiring")
            _apps[self.name] = wiring.create_app(self.settings())
        return _apps[self.name]

    def serves(self, path: str, method: str = "GET") -> bool:
        """Return whether a request for `path` reaches a route of the app (router matching)."""
        app = self.app()
        scope = {
            "type": "http",
            "path": path,
            "method": method,
            "root_path": "",
            "headers": [],
            "query_string": b"",
            "app": app,
        }
        return any(route.matches(scope)[0] == Match.FULL for route in app.router.routes)

    def source_text(self) -> str:
        """Return every Python source of the service, concatenated."""
        src = ROOT / "services" / self.name / "src"
        return "\n".join(p.read_text(encoding="utf-8") for p in sorted(src.rglob("*.py")))


def _nested_settings(field: FieldInfo) -> type[BaseSettings] | None:
    for candidate in (field.annotation, *typing.get_args(field.annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseSettings):
            return candidate
    return None


def settings_env_vars(cls: type[BaseSettings]) -> set[str]:
    """Return every environment variable a settings class reads, nested components included."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for name, field in cls.model_fields.items():
        nested = _nested_settings(field)
        if nested is not None:
            # A nested component is built by its default factory from its own env prefix.
            names |= settings_env_vars(nested)
            continue
        alias = field.validation_alias or field.alias
        if isinstance(alias, str):
            names.add(alias.upper())
        elif alias is not None and hasattr(alias, "choices"):
            names |= {c.upper() for c in alias.choices if isinstance(c, str)}
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def load_service(name: str) -> Service:
    """Read one service's settings class, scripts and wiring."""
    module = importlib.import_module(f"clientela.{name}.config")
    classes = [
        v
        for v in vars(module).values()
        if isinstance(v, type)
        and issubclass(v, ServiceSettings)
        and v.__module__ == module.__name__
    ]
    assert len(classes) == 1, f"{module.__name__} should declare one settings class: {classes}"
    cls = classes[0]
    group = cls.model_fields["group_id"].default if "group_id" in cls.model_fields else None
    pyproject = tomllib.loads((ROOT / "services" / name / "pyproject.toml").read_text())
    wiring = ROOT / "services" / name / "src" / "clientela" / name / "wiring.py"
    return Service(
        name=name,
        settings=cls,
        env_prefix=str(cls.model_config.get("env_prefix", "")),
        env_vars=frozenset(settings_env_vars(cls)),
        http_port=int(cls.model_fields["http_port"].default),
        group_id=group if isinstance(group, str) else None,
        scripts=dict(pyproject.get("project", {}).get("scripts", {})),
        wiring_source=wiring.read_text(encoding="utf-8"),
    )


@pytest.fixture(scope="session")
def services() -> dict[str, Service]:
    """Every service, by name."""
    return {name: load_service(name) for name in SERVICES}


@pytest.fixture(scope="session")
def all_env_vars(services: dict[str, Service]) -> frozenset[str]:
    """Every environment variable some service reads."""
    return frozenset().union(*(s.env_vars for s in services.values()))


# --- the deploy generators ------------------------------------------------------------------


def load_script(path: Path) -> ModuleType:
    """Import a script of deploy/ by path (deploy/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"deploy_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Dataclasses of the script look their module up while it executes.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def generate_topics() -> ModuleType:
    """deploy/generate_topics.py as a module."""
    return load_script(DEPLOY / "generate_topics.py")


@pytest.fixture(scope="session")
def generate_env_example() -> ModuleType:
    """deploy/generate_env_example.py as a module."""
    return load_script(DEPLOY / "generate_env_example.py")


# --- manifests ------------------------------------------------------------------------------


def load_yaml_docs(path: Path) -> list[Doc]:
    """Return the non-empty YAML documents of a file."""
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def manifest_files() -> list[Path]:
    """Every Kubernetes manifest under deploy/ (kustomization files excluded)."""
    return sorted(
        p
        for p in DEPLOY.rglob("*.yaml")
        if p.name != "kustomization.yaml" and "compose" not in p.parts
    )


def fill_secrets(directory: Path) -> None:
    """Write each overlay's secrets.env from its example, with throwaway values."""
    for example in directory.glob("overlays/*/secrets.env.example"):
        lines = []
        for line in example.read_text(encoding="utf-8").splitlines():
            if line and not line.startswith("#") and line.endswith("="):
                line += "test-value-" + line[:-1]
            lines.append(line)
        (example.parent / "secrets.env").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="session")
def deploy_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of deploy/ whose overlays have a secrets.env, so they can be rendered."""
    target = tmp_path_factory.mktemp("deploy") / "deploy"
    shutil.copytree(DEPLOY, target, ignore=shutil.ignore_patterns("secrets.env", "__pycache__"))
    fill_secrets(target)
    return target


KUBECTL = shutil.which("kubectl")


def kubectl_kustomize(directory: Path) -> list[Doc]:
    """Render a kustomization with `kubectl kustomize`."""
    assert KUBECTL
    result = subprocess.run(
        [KUBECTL, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def apply_json6902(doc: Doc, operations: list[dict[str, Any]]) -> None:
    """Apply the JSON patch operations the overlays use (add, replace, remove)."""
    for op in operations:
        *parents, last = _pointer(op["path"])
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if op["op"] == "add":
                node.insert(index, copy.deepcopy(op["value"]))
            elif op["op"] == "replace":
                node[index] = copy.deepcopy(op["value"])
            elif op["op"] == "remove":
                del node[index]
            else:
                raise AssertionError(f"unsupported patch op {op['op']}")
        elif op["op"] == "replace":
            assert last in node, f"replace of missing {op['path']} in {doc['kind']}"
            node[last] = copy.deepcopy(op["value"])
        elif op["op"] == "add":
            node[last] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            del node[last]
        else:
            raise AssertionError(f"unsupported patch op {op['op']}")


def _targets(doc: Doc, target: dict[str, str]) -> bool:
    if "kind" in target and doc.get("kind") != target["kind"]:
        return False
    return "name" not in target or doc["metadata"]["name"] == target["name"]


def pod_specs(doc: Doc) -> list[Doc]:
    """Return the pod spec of a workload (Deployment, StatefulSet, Job), if any."""
    spec = doc.get("spec", {})
    template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template")
    return [template["spec"]] if template and "spec" in template else []


def containers(doc: Doc) -> list[Doc]:
    """Return every container (init containers included) of a workload."""
    return [
        c for spec in pod_specs(doc) for c in spec.get("initContainers", []) + spec["containers"]
    ]


def render_overlay(directory: Path) -> list[Doc]:
    """Render a kustomization the way kustomize does, for the features deploy/ uses.

    resources (files and directories), namespace, secretGenerator (envs; no name hash, so
    references need no rewriting), JSON 6902 patches with a kind/name target, and images.
    """
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    known = {
        "apiVersion",
        "kind",
        "namespace",
        "resources",
        "secretGenerator",
        "patches",
        "images",
    }
    unknown = set(kustomization) - known
    assert not unknown, f"{directory}: render_overlay does not support {sorted(unknown)}"
    docs: list[Doc] = []
    for resource in kustomization.get("resources", []):
        path = (directory / resource).resolve()
        docs += render_overlay(path) if path.is_dir() else load_yaml_docs(path)
    for generator in kustomization.get("secretGenerator", []):
        data: dict[str, str] = {}
        for env_file in generator.get("envs", []):
            for line in (directory / env_file).read_text(encoding="utf-8").splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    key, _, value = line.partition("=")
                    data[key.strip()] = base64.b64encode(value.encode()).decode()
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": generator["name"]},
                "type": "Opaque",
                "data": data,
            }
        )
    namespace = kustomization.get("namespace")
    if namespace:
        for doc in docs:
            if doc["kind"] == "Namespace":
                doc["metadata"]["name"] = namespace
            else:
                doc["metadata"]["namespace"] = namespace
    for patch in kustomization.get("patches", []):
        operations = yaml.safe_load(patch["patch"])
        assert isinstance(operations, list), "only JSON 6902 patches are supported"
        matched = [d for d in docs if _targets(d, patch["target"])]
        assert matched, f"{directory}: patch target {patch['target']} matches nothing"
        for doc in matched:
            apply_json6902(doc, operations)
    for image in kustomization.get("images", []):
        for doc in docs:
            for container in containers(doc):
                name, _, tag = container["image"].partition(":")
                if name == image["name"]:
                    new_name = image.get("newName", name)
                    new_tag = image.get("newTag", tag)
                    container["image"] = f"{new_name}:{new_tag}" if new_tag else new_name
    return docs


@dataclass
class Rendered:
    """The documents of one rendered overlay, with lookups."""

    overlay: str
    docs: list[Doc]
    renderer: str

    def of_kind(self, kind: str) -> list[Doc]:
        """Return the documents of a kind."""
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> Doc | None:
        """Return the document of a kind and name, if any."""
        return next((d for d in self.of_kind(kind) if d["metadata"]["name"] == name), None)

    def workloads(self) -> list[Doc]:
        """Return every document with a pod template."""
        return [d for d in self.docs if pod_specs(d)]

    def clientela_containers(self, component: str | None = None) -> list[tuple[str, Doc, Doc]]:
        """Return (service, workload, container) of every Clientela service container.

        A Clientela workload is labelled app.kubernetes.io/part-of=clientela and named after
        its service (app.kubernetes.io/name); `component` narrows to `service` or `migrations`.
        """
        found = []
        for doc in self.workloads():
            labels = doc["spec"]["template"]["metadata"].get("labels", {})
            service = labels.get("app.kubernetes.io/name")
            if labels.get("app.kubernetes.io/part-of") != "clientela" or service not in SERVICES:
                continue
            if component and labels.get("app.kubernetes.io/component") != component:
                continue
            found += [(service, doc, c) for c in containers(doc)]
        return found

    pod_specs = staticmethod(pod_specs)
    containers = staticmethod(containers)


def _render(overlay: str, deploy_copy: Path) -> Rendered:
    directory = deploy_copy / "overlays" / overlay
    if KUBECTL:
        return Rendered(overlay, kubectl_kustomize(directory), "kubectl kustomize")
    return Rendered(overlay, render_overlay(directory), "tests/deploy render_overlay")


@pytest.fixture(scope="session")
def rendered_overlays(deploy_copy: Path) -> dict[str, Rendered]:
    """Every overlay rendered by `kubectl kustomize`, or by render_overlay without kubectl."""
    return {overlay: _render(overlay, deploy_copy) for overlay in OVERLAYS}


@pytest.fixture(scope="session")
def fallback_rendered(deploy_copy: Path) -> dict[str, Rendered]:
    """Every overlay rendered by render_overlay (the kubectl-free path)."""
    return {
        overlay: Rendered(overlay, render_overlay(deploy_copy / "overlays" / overlay), "fallback")
        for overlay in OVERLAYS
    }


@pytest.fixture(scope="session")
def kubectl_rendered(deploy_copy: Path) -> dict[str, Rendered]:
    """Every overlay rendered by `kubectl kustomize` (skips where kubectl is missing)."""
    if not KUBECTL:
        pytest.skip("kubectl is not installed: overlays are rendered by render_overlay instead")
    return {
        overlay: Rendered(overlay, kubectl_kustomize(deploy_copy / "overlays" / overlay), "kubectl")
        for overlay in OVERLAYS
    }


@pytest.fixture(scope="session")
def manifest_docs() -> list[tuple[Path, Doc]]:
    """Every document of every manifest file under deploy/, as written."""
    return [(path, doc) for path in manifest_files() for doc in load_yaml_docs(path)]


# --- validation -----------------------------------------------------------------------------

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_INT = {"type": "integer", "minimum": 0}

# Operators' custom resources have no schema in kubernetes-validate: these cover the fields
# deploy/ uses (unknown fields are refused, so a typo fails here rather than in the cluster).
CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("kafka.strimzi.io/v1", "KafkaTopic"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {},
            "kind": {},
            "metadata": {
                "type": "object",
                "required": ["name", "labels"],
                "properties": {"labels": {"required": ["strimzi.io/cluster"]}},
            },
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["partitions", "replicas"],
                "properties": {
                    "topicName": {"type": "string", "minLength": 1},
                    "partitions": {"type": "integer", "minimum": 1},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                    "config": {"type": "object"},
                },
            },
        },
    },
    ("kafka.strimzi.io/v1", "KafkaNodePool"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": {
                "type": "object",
                "required": ["name", "labels"],
                "properties": {"labels": {"required": ["strimzi.io/cluster"]}},
            },
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["replicas", "roles", "storage"],
                "properties": {
                    "replicas": _INT,
                    "roles": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"enum": ["controller", "broker"]},
                    },
                    "storage": {
                        "type": "object",
                        "required": ["type"],
                        "properties": {
                            "type": {"enum": ["ephemeral", "persistent-claim", "jbod"]},
                            "volumes": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["id", "type"],
                                    "properties": {
                                        "id": _INT,
                                        "type": {"enum": ["ephemeral", "persistent-claim"]},
                                        "size": {"type": "string", "pattern": "^[0-9]+[KMGT]i$"},
                                        "class": {"type": "string"},
                                        "deleteClaim": {"type": "boolean"},
                                        "kraftMetadata": {"enum": ["shared"]},
                                    },
                                },
                            },
                        },
                    },
                    "resources": {"type": "object"},
                    "jvmOptions": {"type": "object"},
                    "template": {"type": "object"},
                },
            },
        },
    },
    ("kafka.strimzi.io/v1", "Kafka"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["kafka"],
                "properties": {
                    "kafka": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["listeners"],
                        "properties": {
                            "version": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
                            "metadataVersion": {"type": "string"},
                            "listeners": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["name", "port", "type", "tls"],
                                    "properties": {
                                        "name": {"type": "string", "pattern": "^[a-z0-9]{1,11}$"},
                                        "port": {"type": "integer", "minimum": 9092},
                                        "type": {
                                            "enum": [
                                                "internal",
                                                "route",
                                                "loadbalancer",
                                                "nodeport",
                                                "ingress",
                                                "cluster-ip",
                                            ]
                                        },
                                        "tls": {"type": "boolean"},
                                        "authentication": {"type": "object"},
                                        "configuration": {"type": "object"},
                                        "networkPolicyPeers": {"type": "array"},
                                    },
                                },
                            },
                            "config": {"type": "object"},
                            "authorization": {"type": "object"},
                            "metricsConfig": {"type": "object"},
                            "rack": {"type": "object"},
                            "template": {"type": "object"},
                        },
                    },
                    "entityOperator": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "topicOperator": {"type": "object"},
                            "userOperator": {"type": "object"},
                            "template": {"type": "object"},
                        },
                    },
                    "cruiseControl": {"type": "object"},
                    "kafkaExporter": {"type": "object"},
                },
            },
        },
    },
    ("keda.sh/v1alpha1", "ScaledObject"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["scaleTargetRef", "triggers"],
                "properties": {
                    "scaleTargetRef": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "kind": {"type": "string"},
                            "apiVersion": {"type": "string"},
                            "envSourceContainerName": {"type": "string"},
                        },
                    },
                    "pollingInterval": _INT,
                    "cooldownPeriod": _INT,
                    "initialCooldownPeriod": _INT,
                    "idleReplicaCount": _INT,
                    "minReplicaCount": _INT,
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "fallback": {"type": "object"},
                    "advanced": {"type": "object"},
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["type", "metadata"],
                            "properties": {
                                "type": {"type": "string"},
                                "name": {"type": "string"},
                                "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                                "useCachedMetrics": {"type": "boolean"},
                                "authenticationRef": {"type": "object"},
                                # KEDA reads every trigger parameter as a string.
                                "metadata": _STRING_MAP,
                            },
                        },
                    },
                },
            },
        },
    },
}


@pytest.fixture(scope="session")
def validate_manifest() -> Callable[[Doc], None]:
    """Return a validator: kubernetes-validate (strict) for built-in kinds, CRD_SCHEMAS else.

    Skips the tests that use it when kubernetes-validate is not installed.
    """
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate is not installed: add it to the dev dependency group",
    )
    jsonschema = pytest.importorskip("jsonschema")
    from kubernetes_validate.utils import SchemaNotFoundError

    def validate(doc: Doc) -> None:
        crd = CRD_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
        if crd is not None:
            jsonschema.Draft202012Validator(crd).validate(doc)
            return
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except SchemaNotFoundError as exc:
            raise AssertionError(
                f"no schema for {doc['apiVersion']} {doc['kind']}: add one to CRD_SCHEMAS"
            ) from exc

    return validate


# --- compose --------------------------------------------------------------------------------

INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


@dataclass
class Compose:
    """docker-compose.yml: its text and its parsed form (anchors and merge keys resolved)."""

    text: str
    data: Doc

    @property
    def services(self) -> dict[str, Doc]:
        """The compose services, by name."""
        return dict(self.data["services"])

    def variables(self) -> dict[str, tuple[str, str]]:
        """Return {name: (operator, argument)} of every interpolated variable."""
        found: dict[str, tuple[str, str]] = {}
        for m in INTERPOLATION.finditer(self.text):
            if m.group(1) not in found or (m.group(2) or "").endswith("?"):
                found[m.group(1)] = (m.group(2) or "", m.group(3) or "")
        return found

    @staticmethod
    def interpolated(value: str) -> str:
        """Return a value with every `${NAME...}` replaced by `<NAME>`."""
        return INTERPOLATION.sub(lambda m: f"<{m.group(1)}>", value)

    def clientela_containers(self) -> list[tuple[str, str, Doc]]:
        """Return (service, compose name, definition) of every container of a Clientela image."""
        found = []
        for name, definition in self.services.items():
            image = str(definition.get("image", ""))
            match = re.fullmatch(r"clientela/([a-z]+):.*", image)
            if match and match.group(1) in SERVICES:
                found.append((match.group(1), name, definition))
        return found


@pytest.fixture(scope="session")
def compose() -> Compose:
    """docker-compose.yml."""
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    return Compose(text, yaml.safe_load(text))
