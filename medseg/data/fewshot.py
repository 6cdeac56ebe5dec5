"""The study's few-shot setting: 5 training and 5 validation images, each from a distinct volume."""

from __future__ import annotations

from typing import Any

import numpy as np


def fewshot_roles(manifest: Any, per_split: int, seed: int) -> list[str]:
    """For each manifest row: ``train`` or ``val`` if picked for the few-shot set, else ``""``.

    From the train and the val split, ``per_split`` cases are drawn (seeded) and one slice of each;
    a split with fewer cases gives as many as it has, never two from one volume."""
    rng = np.random.default_rng(seed)
    roles = np.full(len(manifest), "", dtype=object)
    for split in ("train", "val"):
        rows = manifest[manifest["split"] == split]
        cases = sorted(rows["case"].unique())
        for case in rng.permutation(cases)[:per_split]:
            candidates = rows.index[rows["case"] == case].to_numpy()
            roles[rng.choice(candidates)] = split
    return roles.tolist()
