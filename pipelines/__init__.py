"""Kubeflow Pipelines v2 definitions built from the components in ``components/``."""
