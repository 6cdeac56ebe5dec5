"""Patient-level train/val/test assignment."""

from __future__ import annotations

import hashlib

SPLITS = ("train", "val", "test")


def split_counts(n: int, fractions: tuple[float, float, float]) -> list[int]:
    """Largest-remainder counts; every split gets at least one patient when n >= 3."""
    total = sum(fractions)
    exact = [n * f / total for f in fractions]
    counts = [int(x) for x in exact]
    order = sorted(range(3), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    if n >= 3:
        for i in range(3):
            while counts[i] == 0:
                donor = max(range(3), key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] += 1
    return counts


def assign_splits(
    patient_ids: list[str], fractions: tuple[float, float, float], seed: int
) -> dict[str, str]:
    """Map each patient to a split. Order is by a seeded hash of the id, so the assignment does
    not depend on file order, and all slices of a patient share one split."""
    unique = sorted(set(patient_ids))

    def rank(pid: str) -> str:
        return hashlib.sha256(f"{seed}:{pid}".encode()).hexdigest()

    ordered = sorted(unique, key=rank)
    counts = split_counts(len(ordered), fractions)
    assignment: dict[str, str] = {}
    start = 0
    for split, count in zip(SPLITS, counts, strict=True):
        for pid in ordered[start : start + count]:
            assignment[pid] = split
        start += count
    return assignment
