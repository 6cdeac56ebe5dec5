"""Offline checks of the Kubernetes manifests: schemas (Kubernetes 1.30, strict), kustomize rendering, RBAC,
secrets, pod security, and the PyTorchJob's commands against the real CLI."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
BASE = K8S / "base"
TRAINING = K8S / "training"
JOB_FILE = TRAINING / "finetune-pytorchjob.yaml"
KUSTOMIZATION = "kustomization.yaml"
SECRET_TEMPLATE = "s3-secret.template.yaml"
K8S_VERSION = "1.30.0"
PLACEHOLDER = "REPLACE_ME"
IMAGE_REPO = "ghcr.io/medseg/medseg"
IMAGE_PLACEHOLDER = "REPLACE_WITH_GIT_SHA"
TRAINING_OPERATOR = "kubeflow.org/v1"  # custom resources: no schema in Kubernetes itself
JOB_SCRIPT = "medseg-finetune-job"  # docker/finetune-job.sh as the image installs it
# Everything the Role may grant: (API group, resource) -> verbs.
ALLOWED_RBAC = {
    ("kubeflow.org", "pytorchjobs"): {"create", "get", "list", "watch", "delete"},
    ("", "configmaps"): {"create", "get", "list", "delete"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "pods/log"): {"get"},
    ("", "events"): {"get", "list", "watch"},
}


def documents(path: Path) -> list[dict[str, Any]]:
    """The Kubernetes objects of a file (documents with a kind)."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if isinstance(doc, dict) and "kind" in doc]


def manifest_files() -> list[Path]:
    """Every YAML file under k8s/ that holds Kubernetes objects (kustomize's own files left out)."""
    files = sorted([*K8S.rglob("*.yaml"), *K8S.rglob("*.yml")])
    return [path for path in files if path.name != KUSTOMIZATION and documents(path)]


def all_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in manifest_files():
        for doc in documents(path):
            yield path, doc


def kustomization(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / KUSTOMIZATION).read_text())


def the_job() -> dict[str, Any]:
    return documents(JOB_FILE)[0]


def pod_specs(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every pod spec nested in an object."""
    if isinstance(doc.get("containers"), list):
        yield doc
    for value in doc.values():
        if isinstance(value, dict):
            yield from pod_specs(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    yield from pod_specs(item)


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion."""
    return re.sub(r"\$\((\w+)\)", lambda match: env.get(match.group(1), match.group(0)), value)


def container_env(container: dict[str, Any], job_name: str = "job-1", replica: str = "master") -> dict[str, str]:
    """The container's environment as the kubelet builds it, with the downward-API labels filled in."""
    labels = {"training.kubeflow.org/job-name": job_name, "training.kubeflow.org/replica-type": replica}
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = expand(entry["value"], env)
        else:
            path = entry["valueFrom"]["fieldRef"]["fieldPath"]
            label = re.fullmatch(r"metadata\.labels\['([^']+)'\]", path)
            assert label, f"unexpected fieldRef {path}"
            env[entry["name"]] = labels[label.group(1)]
    return env


# --- schemas and kustomize -------------------------------------------------------------------------


def test_manifests_exist() -> None:
    kinds = {doc["kind"] for _, doc in all_documents()}
    expected = {"Namespace", "PersistentVolumeClaim", "ServiceAccount", "Role", "Secret", "PyTorchJob"}
    assert expected <= kinds, f"missing kinds: {sorted(expected - kinds)}"


def schema_checked(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The document itself, or for a PyTorchJob each replica's pod template as a core ``PodTemplate`` (KServe's
    kinds: their pod parts, ``tests/deploy/kserve_schema.py``)."""
    if doc.get("apiVersion", "").startswith("serving.kserve.io/"):
        from kserve_schema import kserve_pod_templates

        return kserve_pod_templates(doc)
    if doc.get("apiVersion") != TRAINING_OPERATOR:
        return [doc]
    assert doc["kind"] == "PyTorchJob", f"unexpected custom resource {doc['kind']}"
    return [{"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"{doc['metadata']['name']}-{role}"},
             "template": spec["template"]} for role, spec in doc["spec"]["pytorchReplicaSpecs"].items()]


def validate(doc: dict[str, Any], where: str) -> None:
    for checked in schema_checked(doc):
        try:
            kubernetes_validate.validate(checked, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where} {checked.get('kind')}/{checked.get('metadata', {}).get('name')}: {exc.message}")


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_validates_against_schema(path: Path) -> None:
    for doc in documents(path):
        validate(doc, path.name)


def test_base_kustomization_resources() -> None:
    config = kustomization(BASE)
    resources: list[str] = config["resources"]
    missing = [name for name in resources if not (BASE / name).is_file()]
    assert not missing, f"kustomization lists missing files: {missing}"
    assert SECRET_TEMPLATE not in resources, "the secret template must not be applied"
    assert (BASE / SECRET_TEMPLATE).is_file()
    unlisted = {path.name for path in BASE.glob("*.yaml") if path.name != KUSTOMIZATION} - set(resources)
    assert unlisted == {SECRET_TEMPLATE}, f"manifests not in kustomization: {unlisted}"


@pytest.mark.parametrize("folder", [BASE, TRAINING], ids=["base", "training"])
def test_kustomization_namespace_and_labels(folder: Path) -> None:
    config = kustomization(folder)
    assert config["namespace"] == "medseg"
    assert any(entry.get("pairs", {}).get("app.kubernetes.io/part-of") == "medseg" for entry in config["labels"])


def test_training_kustomization_generates_params_from_the_repository() -> None:
    config = kustomization(TRAINING)
    assert config["resources"] == [JOB_FILE.name]
    (generator,) = config["configMapGenerator"]
    assert generator["name"] == "medseg-params" and generator["options"]["immutable"] is True
    (source,) = generator["files"]
    key, _, path = source.partition("=")
    assert key == "params.yaml" and (TRAINING / path).resolve() == ROOT / "params.yaml"
    for name in config["configurations"]:
        references = yaml.safe_load((TRAINING / name).read_text())["nameReference"]
        paths = {spec["path"] for ref in references for spec in ref["fieldSpecs"]}
        roles = the_job()["spec"]["pytorchReplicaSpecs"]
        assert paths == {f"spec/pytorchReplicaSpecs/{role}/template/spec/volumes/configMap/name" for role in roles}


def kustomize(*args: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with built-in kustomize) not on PATH")
    result = subprocess.run([kubectl, "kustomize", *args], capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_kustomize_renders_base() -> None:
    rendered = kustomize(str(BASE))
    assert {doc["kind"] for doc in rendered} == {"Namespace", "PersistentVolumeClaim", "ServiceAccount", "Role"}
    for doc in rendered:
        metadata = doc["metadata"]
        assert metadata["labels"]["app.kubernetes.io/part-of"] == "medseg"
        if doc["kind"] != "Namespace":
            assert metadata["namespace"] == "medseg"


def test_kustomize_renders_training_job_with_params_configmap() -> None:
    rendered = kustomize("--load-restrictor", "LoadRestrictionsNone", str(TRAINING))
    (config_map,) = [doc for doc in rendered if doc["kind"] == "ConfigMap"]
    (job,) = [doc for doc in rendered if doc["kind"] == "PyTorchJob"]
    assert config_map["data"]["params.yaml"] == (ROOT / "params.yaml").read_text()
    assert config_map["metadata"]["name"].startswith("medseg-params-") and config_map["immutable"] is True
    for pod in pod_specs(job):
        names = {volume["configMap"]["name"] for volume in pod["volumes"] if "configMap" in volume}
        assert names == {config_map["metadata"]["name"]}, "the job does not mount the generated ConfigMap"
    for doc in rendered:
        validate(doc, "rendered k8s/training")


def test_make_finetune_job_sets_image_and_name() -> None:
    if shutil.which("kubectl") is None or shutil.which("make") is None:
        pytest.skip("needs make and kubectl")
    result = subprocess.run(["make", "-s", "finetune-job", "IMAGE_TAG=0123abc", "JOB_NAME=prostate-lora-1",
                             "IMAGE_REPO=registry.example.org/team/medseg"],
                            cwd=ROOT, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    (job,) = [doc for doc in rendered if doc["kind"] == "PyTorchJob"]
    assert job["metadata"]["name"] == "prostate-lora-1"
    images = {container["image"] for pod in pod_specs(job) for container in containers(pod)}
    assert images == {"registry.example.org/team/medseg:0123abc"}
    assert not list(ROOT.glob(".finetune-job.*")), "make finetune-job left its overlay behind"


# --- images ----------------------------------------------------------------------------------------


def test_images_are_tagged_never_latest() -> None:
    for path, doc in all_documents():
        for pod in pod_specs(doc):
            for container in containers(pod):
                image = container["image"]
                name, _, tag = image.rpartition(":")
                assert name and "/" not in tag, f"{path.name}: image {image} has no tag (means :latest)"
                assert tag != "latest", f"{path.name}: image {image}"
                assert image == f"{IMAGE_REPO}:{IMAGE_PLACEHOLDER}", f"{path.name}: {image}"
    readme = (K8S / "README.md").read_text()
    assert IMAGE_PLACEHOLDER in readme and "make finetune-job" in readme


# --- RBAC, identities, secrets, volumes ------------------------------------------------------------------


def test_rbac_grants_only_what_job_submitters_need() -> None:
    roles = [(path, doc) for path, doc in all_documents() if doc["kind"] in {"Role", "ClusterRole"}]
    assert [doc["kind"] for _, doc in roles] == ["Role"], "one namespaced Role, no ClusterRole"
    _, role = roles[0]
    assert role["metadata"]["name"] == "medseg-job-submitter"
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert not rule.get("resourceNames") and not rule.get("nonResourceURLs")
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    for (group, resource), verbs in granted.items():
        assert "*" not in group + resource + "".join(verbs), "wildcards are not allowed"
        allowed = ALLOWED_RBAC.get((group, resource), set())
        assert verbs <= allowed, f"{group or 'core'}/{resource}: {sorted(verbs - allowed)} beyond {sorted(allowed)}"
    assert granted[("kubeflow.org", "pytorchjobs")] == ALLOWED_RBAC[("kubeflow.org", "pytorchjobs")]
    bindings = [doc for _, doc in all_documents() if doc["kind"] in {"RoleBinding", "ClusterRoleBinding"}]
    assert not bindings, "the Role is bound per user or CI identity (k8s/README.md), not in the manifests"


def test_training_pods_use_no_kubernetes_api() -> None:
    accounts = {doc["metadata"]["name"]: doc for _, doc in all_documents() if doc["kind"] == "ServiceAccount"}
    assert set(accounts) == {"medseg-training"}
    assert accounts["medseg-training"]["automountServiceAccountToken"] is False
    for pod in pod_specs(the_job()):
        assert pod["serviceAccountName"] == "medseg-training"
        assert pod["automountServiceAccountToken"] is False


def test_secrets_hold_only_placeholders() -> None:
    secrets = [(path, doc) for path, doc in all_documents() if doc["kind"] == "Secret"]
    assert [path.name for path, _ in secrets] == [SECRET_TEMPLATE]
    for path, doc in secrets:
        values = {**doc.get("data", {}), **doc.get("stringData", {})}
        real = sorted(key for key, value in values.items() if value != PLACEHOLDER)
        assert not real, f"{path.name}: non-placeholder values for {real}"
    template = documents(BASE / SECRET_TEMPLATE)[0]
    assert set(template["stringData"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"}


def test_credentials_reach_pods_by_reference_only() -> None:
    for pod in pod_specs(the_job()):
        for container in containers(pod):
            assert {"secretRef": {"name": "medseg-s3"}} in container["envFrom"], container["name"]
            for entry in container.get("env", []):
                assert not entry["name"].startswith("AWS_"), f"{container['name']}: {entry['name']} set inline"
    text = "\n".join(path.read_text() for path in K8S.rglob("*.yaml"))
    assert not re.search(r"AKIA[0-9A-Z]{16}", text), "something like an AWS access key id is committed"


def test_every_claim_is_mounted_and_shared() -> None:
    claims = {doc["metadata"]["name"]: doc["spec"] for _, doc in all_documents()
              if doc["kind"] == "PersistentVolumeClaim"}
    assert set(claims) == {"medseg-workspace"}
    assert claims["medseg-workspace"]["accessModes"] == ["ReadWriteMany"]  # master and workers share it
    mounted = {volume["persistentVolumeClaim"]["claimName"] for pod in pod_specs(the_job())
               for volume in pod["volumes"] if "persistentVolumeClaim" in volume}
    assert mounted == set(claims), "a claim that nothing mounts"


def test_workloads_are_limited_and_restricted() -> None:
    for path, doc in all_documents():
        for pod in pod_specs(doc):
            pod_context = pod["securityContext"]
            assert pod_context["seccompProfile"] == {"type": "RuntimeDefault"}
            assert pod_context["runAsNonRoot"] is True and pod_context["runAsUser"] == 10001
            tmp = [mount for mount in pod["containers"][0]["volumeMounts"] if mount["mountPath"] == "/tmp"]
            assert tmp, "/tmp must be writable (emptyDir) under a read-only root filesystem"
            for container in containers(pod):
                where = f"{path.name} {doc['kind']} container {container['name']}"
                limits = container["resources"]["limits"]
                assert {"cpu", "memory"} <= limits.keys(), f"{where}: cpu/memory limits missing"
                context = container["securityContext"]
                assert context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True, where
                assert context["allowPrivilegeEscalation"] is False, where
                assert context["readOnlyRootFilesystem"] is True, where
                assert context["capabilities"]["drop"] == ["ALL"], where
                assert not context.get("privileged"), where


# --- the PyTorchJob --------------------------------------------------------------------------------


def replica_pods() -> dict[str, dict[str, Any]]:
    return {role: spec["template"]["spec"] for role, spec in the_job()["spec"]["pytorchReplicaSpecs"].items()}


def main_container(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod["containers"]
    assert container["name"] == "pytorch"  # required by the Training Operator
    return container


def finetune_args(container: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The `medseg` arguments after `torchrun ... -m medseg.cli`, $(VAR)s expanded, and the environment."""
    env = container_env(container)
    args = [expand(arg, env) for arg in container["args"]]
    assert args[0] == "torchrun" and args[args.index("-m") + 1] == "medseg.cli", args
    return args[args.index("-m") + 2:], env


def test_job_replicas_restart_on_retryable_exit_codes() -> None:
    job = the_job()
    assert job["metadata"]["namespace"] == "medseg"
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert set(replicas) == {"Master", "Worker"} and replicas["Master"]["replicas"] == 1
    for spec in replicas.values():
        assert spec["restartPolicy"] == "ExitCode"
    assert job["spec"]["runPolicy"]["backoffLimit"] >= 1


def test_job_trains_with_torchrun_and_resumes() -> None:
    from medseg.cli import build_parser

    for pod in replica_pods().values():
        container = main_container(pod)
        assert container["command"] == [JOB_SCRIPT, "train"]
        medseg_args, env = finetune_args(container)
        args = build_parser().parse_args(medseg_args)  # SystemExit on a wrong argument
        assert args.command == "finetune" and args.resume  # a restarted pod continues its run
        assert args.params == "/config/params.yaml"
        assert (ROOT / "medseg/data/registry" / f"{args.dataset}.yaml").is_file(), args.dataset
        assert args.out == env["MEDSEG_JOB_OUT"] and args.out.startswith(env["MEDSEG_JOB_PROJECT"] + "/")
        assert args.out.endswith(f"/jobs/{env['JOB_NAME']}/model")
        gpus = container["resources"]["limits"]["nvidia.com/gpu"]
        assert int(gpus) == int(the_job()["spec"]["nprocPerNode"])  # one process per GPU


def test_job_settings_are_valid_params() -> None:
    from medseg.cli import build_parser
    from medseg.params import load_params

    medseg_args, env = finetune_args(main_container(replica_pods()["Master"]))
    args = build_parser().parse_args(medseg_args)
    params = load_params(ROOT / "params.yaml", override=args.params_override)
    finetune = params["finetune"]
    assert finetune["device"] == "cuda", "a pod without a GPU must fail instead of training on the CPU"
    assert finetune["work_dir"] == f"{env['WORKSPACE']}/work" and env["WORKSPACE"].startswith("/workspace/")


def test_job_pulls_its_inputs_first() -> None:
    from medseg.cli import build_parser

    parser = build_parser()
    for pod in replica_pods().values():
        container = main_container(pod)
        finetune = parser.parse_args(finetune_args(container)[0])
        pulled: dict[str, str] = {}
        for init in pod["initContainers"]:
            assert init["image"] == container["image"], "the init containers run the job's image"
            assert init["command"] == [JOB_SCRIPT, "pull"]
            env = container_env(init)
            args = [expand(arg, env) for arg in init["args"]]
            parsed = parser.parse_args(["pull", *args, "--remote", env["DVC_REMOTE"]])  # as the script runs it
            assert parsed.command == "pull" and parsed.out.startswith(env["WORKSPACE"] + "/inputs/")
            pulled[parsed.target] = parsed.out
        assert pulled[f"data/processed/{finetune.dataset}"] == finetune.data
        (checkpoint,) = [target for target in pulled if target.startswith("checkpoints/")]
        assert pulled[checkpoint] == finetune.checkpoint and checkpoint.endswith(".pth")


def test_job_has_shared_memory_volumes_and_gpu_placement() -> None:
    for pod in replica_pods().values():
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        mounts = {mount["mountPath"]: mount["name"] for mount in main_container(pod)["volumeMounts"]}
        assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
        assert volumes[mounts["/config"]]["configMap"]["name"] == "medseg-params"
        assert "persistentVolumeClaim" in volumes[mounts["/workspace"]]
        assert "emptyDir" in volumes[mounts["/tmp"]]
        assert pod["nodeSelector"] and any(toleration["key"] == "nvidia.com/gpu" for toleration in pod["tolerations"])


def test_job_names_its_workspace_after_the_job() -> None:
    for pod in replica_pods().values():
        for container in containers(pod):
            fields = {entry["name"]: entry["valueFrom"]["fieldRef"]["fieldPath"]
                      for entry in container["env"] if "valueFrom" in entry}
            assert fields == {"JOB_NAME": "metadata.labels['training.kubeflow.org/job-name']",
                              "REPLICA_TYPE": "metadata.labels['training.kubeflow.org/replica-type']"}
            env = container_env(container, job_name="abc")
            assert env["WORKSPACE"] == "/workspace/abc" and env["HOME"] == "/tmp"
