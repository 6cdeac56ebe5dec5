"""KServe's kinds checked offline (kubernetes-validate has no KServe schemas): the fields KServe's API reference
documents, checked structurally, and the pod parts as core Kubernetes objects for the strict 1.30 schemas.

- ``InferenceService`` (serving.kserve.io/v1beta1): ``spec`` holds ``predictor`` (and optionally ``transformer``,
  ``explainer``); a component is a ``PodSpec`` inlined with KServe's ``ComponentExtensionSpec`` fields (and a
  predictor's model-format specs, unused here).
- ``ClusterStorageContainer`` (serving.kserve.io/v1alpha1, cluster-scoped): ``spec.container`` (a core
  ``Container``, named ``storage-initializer``), ``spec.supportedUriFormats`` (each exactly one of ``prefix``
  or ``regex``), optional ``spec.workloadType``.
"""

from __future__ import annotations

from typing import Any

ISVC = ("serving.kserve.io/v1beta1", "InferenceService")
CSC = ("serving.kserve.io/v1alpha1", "ClusterStorageContainer")
COMPONENTS = {"predictor", "transformer", "explainer"}
# ComponentExtensionSpec (KServe v1beta1 API reference): field -> accepted Python types.
EXTENSION_FIELDS: dict[str, tuple[type, ...]] = {
    "minReplicas": (int,), "maxReplicas": (int,), "scaleTarget": (int,), "scaleMetric": (str,),
    "scaleMetricType": (str,), "autoScaling": (dict,), "containerConcurrency": (int,), "timeout": (int,),
    "canaryTrafficPercent": (int,), "logger": (dict,), "batcher": (dict,), "labels": (dict,),
    "annotations": (dict,), "deploymentStrategy": (dict,), "storageUris": (list,)}
PREDICTOR_FIELDS = {"model", "workerSpec", "sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx",
                    "huggingface", "pmml", "lightgbm", "paddle"}
WORKLOAD_TYPES = {"initContainer", "localModelDownloadJob"}


def kserve_pod_templates(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod parts of a KServe object as core ``PodTemplate`` objects, after the structural checks."""
    kind = (doc.get("apiVersion"), doc.get("kind"))
    assert set(doc) <= {"apiVersion", "kind", "metadata", "spec"}, f"{kind}: unknown top-level fields"
    name = doc["metadata"]["name"]
    if kind == ISVC:
        return [_template(f"{name}-{component}", _component_pod(component, spec))
                for component, spec in _isvc_components(doc).items()]
    assert kind == CSC, f"unexpected KServe kind {kind}"
    assert "namespace" not in doc["metadata"], "ClusterStorageContainer is cluster-scoped"
    spec = doc["spec"]
    assert set(spec) <= {"container", "supportedUriFormats", "workloadType"}, sorted(spec)
    assert spec.get("workloadType", "initContainer") in WORKLOAD_TYPES
    formats = spec["supportedUriFormats"]
    assert formats and all(len(entry) == 1 and set(entry) <= {"prefix", "regex"} for entry in formats), formats
    assert spec["container"]["name"] == "storage-initializer", "KServe recognises the init container by this name"
    return [_template(f"{name}-container", {"containers": [spec["container"]]})]


def _isvc_components(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = doc["spec"]
    assert set(spec) <= COMPONENTS and "predictor" in spec, sorted(spec)
    return spec


def _component_pod(component: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The PodSpec part of a component, the extension fields type-checked and removed."""
    pod = {}
    for key, value in spec.items():
        if key in EXTENSION_FIELDS:
            assert isinstance(value, EXTENSION_FIELDS[key]) and not isinstance(value, bool), f"{component}.{key}"
        elif component == "predictor" and key in PREDICTOR_FIELDS:
            assert isinstance(value, dict), f"{component}.{key}"
        else:
            pod[key] = value
    return pod


def _template(name: str, pod: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name}, "template": {"spec": pod}}
