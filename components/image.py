"""The image every component runs in; pipelines override it from params.yaml ``kubeflow.image``."""

DEFAULT_IMAGE = "ghcr.io/medseg/medseg:0.1.0"
