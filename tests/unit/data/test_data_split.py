"""Patient-level split assignment."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from medseg.data.split import SPLITS, assign_splits

pytest_plugins = ["data_fixtures"]

FRACTIONS = (0.7, 0.1, 0.2)


def _patients(n: int) -> list[str]:
    return [f"patient_{i:03d}" for i in range(n)]


def _counts(assignment: dict[str, str]) -> tuple[int, int, int]:
    tally = Counter(assignment.values())
    return tally["train"], tally["val"], tally["test"]


@pytest.mark.parametrize(("n", "expected"), [(10, (7, 1, 2)), (20, (14, 2, 4)), (30, (21, 3, 6))])
def test_counts_follow_fractions(n: int, expected: tuple[int, int, int]) -> None:
    assert _counts(assign_splits(_patients(n), FRACTIONS, seed=0)) == expected


def test_unnormalised_fractions_are_scaled() -> None:
    assert _counts(assign_splits(_patients(10), (7, 1, 2), seed=0)) == (7, 1, 2)


@pytest.mark.parametrize("n", range(3, 16))
def test_every_split_non_empty(n: int) -> None:
    assignment = assign_splits(_patients(n), FRACTIONS, seed=5)
    assert len(assignment) == n
    assert all(count > 0 for count in _counts(assignment))


def test_deterministic_for_a_seed() -> None:
    assert assign_splits(_patients(20), FRACTIONS, 42) == assign_splits(_patients(20), FRACTIONS, 42)


def test_independent_of_input_order_and_repeats() -> None:
    ids = _patients(20)
    shuffled = ids * 3
    random.Random(0).shuffle(shuffled)
    assert assign_splits(shuffled, FRACTIONS, 42) == assign_splits(ids, FRACTIONS, 42)


def test_patient_level_one_split_per_patient() -> None:
    slices = [pid for pid in _patients(12) for _ in range(5)]
    assignment = assign_splits(slices, FRACTIONS, 1)
    assert sorted(assignment) == _patients(12)
    assert set(assignment.values()) == set(SPLITS)


def test_different_seeds_give_different_assignments() -> None:
    ids = _patients(20)
    assignments = [assign_splits(ids, FRACTIONS, seed) for seed in range(3)]
    assert assignments[0] != assignments[1]
    assert assignments[1] != assignments[2]
    assert all(_counts(a) == (14, 2, 4) for a in assignments)


def test_not_simply_sorted_order() -> None:
    ids = _patients(20)
    assignment = assign_splits(ids, FRACTIONS, 0)
    assert [assignment[p] for p in ids] != sorted((assignment[p] for p in ids), key=SPLITS.index)
