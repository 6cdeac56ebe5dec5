"""Offline checks of k8s/serving: the InferenceService runs `medseg serve` on the port its probes and KServe use,
its storage URI is a `dvc+` registry reference that the ClusterStorageContainer claims, and the fetch runs
`medseg fetch_model` restricted, limited, with the DVC remote's credentials by reference."""

from __future__ import annotations

import re
from typing import Any

from test_k8s import IMAGE_PLACEHOLDER, IMAGE_REPO, K8S, documents, kustomization, kustomize, validate

SERVING = K8S / "serving"
URI = re.compile(r"dvc\+(?P<repo>https://\S+?)#(?P<artifact>[a-z0-9][a-z0-9-]*)@(?P<version>[a-z0-9-]+|v\d+\.\d+\.\d+)")


def _objects() -> dict[str, dict[str, Any]]:
    found = {doc["kind"]: doc for path in sorted(SERVING.glob("*.yaml")) if path.name != "kustomization.yaml"
             for doc in documents(path)}
    assert set(found) == {"InferenceService", "ClusterStorageContainer"}
    return found


def _predictor() -> tuple[dict[str, Any], dict[str, Any]]:
    predictor = _objects()["InferenceService"]["spec"]["predictor"]
    (container,) = predictor["containers"]
    return predictor, container


def test_kustomization_lists_and_renders_both() -> None:
    assert kustomization(SERVING)["resources"] == ["inferenceservice.yaml", "medseg-storage-container.yaml"]
    rendered = kustomize(str(SERVING))
    assert {doc["kind"] for doc in rendered} == {"InferenceService", "ClusterStorageContainer"}
    for doc in rendered:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "medseg"
        validate(doc, "rendered k8s/serving")
    (storage,) = [doc for doc in rendered if doc["kind"] == "ClusterStorageContainer"]
    assert "namespace" not in storage["metadata"]


def test_predictor_runs_medseg_serve_on_the_probed_port() -> None:
    from medseg.cli import build_parser

    predictor, container = _predictor()
    assert container["name"] == "kserve-container" and container["image"] == f"{IMAGE_REPO}:{IMAGE_PLACEHOLDER}"
    assert container["command"] == ["medseg", "serve"]
    args = build_parser().parse_args(["serve", *container["args"]])  # SystemExit on a wrong argument
    assert args.model == "/mnt/models" and args.host == "0.0.0.0"  # all pod interfaces, not loopback
    (port,) = container["ports"]
    assert port["containerPort"] == int(args.port) == 8080
    probes = {name: container[name]["httpGet"] for name in ("readinessProbe", "livenessProbe", "startupProbe")}
    assert probes["readinessProbe"]["path"] == "/v2/health/ready"
    assert {probe["path"] for probe in probes.values()} <= {"/v2/health/ready", "/v2/health/live"}
    assert {probe["port"] for probe in probes.values()} == {8080}
    assert predictor["automountServiceAccountToken"] is False and predictor["minReplicas"] >= 1


def test_storage_uri_is_a_registry_version_the_storage_container_claims() -> None:
    _, container = _predictor()
    env = {entry["name"]: entry.get("value") for entry in container["env"]}
    match = URI.fullmatch(env["STORAGE_URI"])
    assert match and match["repo"].startswith("https://github.com/"), env["STORAGE_URI"]
    storage = _objects()["ClusterStorageContainer"]["spec"]
    assert [entry["prefix"] for entry in storage["supportedUriFormats"]] == ["dvc+"]
    assert env["STORAGE_URI"].startswith(storage["supportedUriFormats"][0]["prefix"])


def test_fetch_runs_medseg_fetch_model_restricted_with_credentials_by_reference() -> None:
    predictor, _ = _predictor()
    fetch = _objects()["ClusterStorageContainer"]["spec"]["container"]
    assert fetch["image"] == f"{IMAGE_REPO}:{IMAGE_PLACEHOLDER}"
    assert fetch["command"] == ["medseg", "fetch_model"] and "args" not in fetch  # KServe passes URI and /mnt/models
    assert fetch["envFrom"] == [{"secretRef": {"name": "medseg-s3"}}]
    assert not any(entry["name"].startswith("AWS_") for entry in fetch["env"])
    assert {"cpu", "memory"} <= fetch["resources"]["limits"].keys()
    context = fetch["securityContext"]
    assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"]
    assert context["capabilities"]["drop"] == ["ALL"] and context["runAsNonRoot"]
    volumes = {volume["name"] for volume in predictor["volumes"]}
    assert {mount["name"] for mount in fetch["volumeMounts"]} <= volumes, "the fetch mounts a volume the pod lacks"


def test_storage_uri_is_one_fetch_model_parses_naming_a_declarable_artifact() -> None:
    from medseg.artifacts.declare import artifact_name
    from medseg.artifacts.fetch import parse_uri
    from medseg.cli import build_parser

    _, container = _predictor()
    uri = next(entry["value"] for entry in container["env"] if entry["name"] == "STORAGE_URI")
    assert build_parser().parse_args(["fetch_model", uri, "/mnt/models"]).command == "fetch_model"
    parsed = parse_uri(uri)
    # the name medseg artifacts gives the run (<dataset>-<init>-<profile>-<mode>-<strategy>), fetched by stage
    assert parsed.name == artifact_name("mri_prostate", "sam", "full", "automated", "vit_b_endec_lora")
    assert parsed.stage == "prod" and parsed.version is None
