"""The model registry: DVC ``artifacts:`` declarations generated from params.yaml, versions and stages as GTO
git tags (``medseg register``, ``medseg promote``), and fetching one by name and version or stage
(``medseg fetch_model``, the KServe storage-initializer contract)."""
