"""Embedding cache for decoder-only strategies: hits, misses, invalidation, recovery, equivalence."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import peft_config
from medseg.data.slice_dataset import SliceDataset
from medseg.errors import MedsegError
from medseg.models.factory import build_model
from medseg.models.segmenter import SamSegmenter
from medseg.train.embedding_cache import CachedEmbeddingDataset, EmbeddingCache, encoder_fingerprint, image_key


def _model(size: int) -> SamSegmenter:
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="RANDOM weights"):
        return build_model("vit_t_dec_vanilla", peft_config(), size, 2)


def _reference(model: SamSegmenter, images: np.ndarray) -> torch.Tensor:
    """Encoder output as the training loop computes it from SliceDataset images (encoder in eval)."""
    batch = torch.from_numpy(images.astype(np.float32)).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
    was_training = model.image_encoder.training
    model.image_encoder.eval()
    try:
        return model.embed(batch)
    finally:
        model.image_encoder.train(was_training)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread is faster and immune to busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pristine() -> SamSegmenter:
    return _model(64)


@pytest.fixture
def model(pristine: SamSegmenter) -> SamSegmenter:
    return copy.deepcopy(pristine)


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (3, 64, 64), dtype=np.uint8)


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


def test_first_pass_misses_second_pass_hits_with_identical_tensors(
        tmp_path: Path, model: SamSegmenter, images: np.ndarray) -> None:
    cache = EmbeddingCache(tmp_path, model)
    first = cache.get_or_compute(images)
    assert (cache.hits, cache.misses) == (0, 3)
    second = cache.get_or_compute(images[::-1])
    assert (cache.hits, cache.misses) == (3, 3)
    expected = _reference(model, images)
    assert first.shape == (3, 256, 4, 4) and first.dtype == torch.float32
    assert torch.allclose(first, expected, atol=1e-6, rtol=0)
    assert torch.equal(second, first.flip(0))
    stored = [p.name for p in _files(tmp_path / encoder_fingerprint(model))]
    assert stored == sorted(f"{image_key(image)}.npy" for image in images)  # no temporary files left


def test_decoding_cached_embeddings_equals_decoding_fresh_ones(
        tmp_path: Path, model: SamSegmenter, images: np.ndarray) -> None:
    cache = EmbeddingCache(tmp_path, model)
    cache.get_or_compute(images)
    model.eval()
    with torch.no_grad():
        cached = model.decode(cache.get_or_compute(images))
        fresh = model.decode(_reference(model, images))
    assert cache.hits == 3
    assert torch.allclose(cached, fresh, atol=1e-6, rtol=0)


def test_encoder_weight_change_gives_a_new_directory_and_misses(
        tmp_path: Path, model: SamSegmenter, images: np.ndarray) -> None:
    cache = EmbeddingCache(tmp_path, model)
    cache.get_or_compute(images)
    before = cache.fingerprint
    with torch.no_grad():
        next(model.image_encoder.parameters()).add_(0.01)
    assert encoder_fingerprint(model) != before and cache.fingerprint == encoder_fingerprint(model)
    result = cache.get_or_compute(images)
    assert (cache.hits, cache.misses) == (0, 6)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([before, cache.fingerprint])
    assert torch.allclose(result, _reference(model, images), atol=1e-6, rtol=0)


def test_input_size_is_part_of_the_fingerprint(model: SamSegmenter) -> None:
    larger = _model(128)
    assert encoder_fingerprint(larger) != encoder_fingerprint(model)
    assert encoder_fingerprint(copy.deepcopy(model)) == encoder_fingerprint(model)


def test_decoder_weight_change_keeps_the_cache(tmp_path: Path, model: SamSegmenter, images: np.ndarray) -> None:
    cache = EmbeddingCache(tmp_path, model)
    cache.get_or_compute(images)
    before = cache.fingerprint
    with torch.no_grad():
        for parameter in model.mask_decoder.parameters():
            parameter.add_(0.01)
    cache.get_or_compute(images)
    assert cache.fingerprint == before and (cache.hits, cache.misses) == (3, 3)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_shape", "pickled", "zip", "npz"])
def test_corrupt_file_is_recomputed_and_overwritten(
        tmp_path: Path, model: SamSegmenter, images: np.ndarray, damage: str) -> None:
    cache = EmbeddingCache(tmp_path, model)
    first = cache.get_or_compute(images)
    path = cache.directory / f"{image_key(images[1])}.npy"
    if damage == "garbage":
        path.write_bytes(b"not an array")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "wrong_shape":
        np.save(path, np.zeros((256, 2, 2), dtype=np.float32))
    elif damage == "pickled":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif damage == "zip":
        path.write_bytes(b"PK\x03\x04 not a zip")
    else:
        with path.open("wb") as handle:
            np.savez(handle, embedding=first[1].numpy())
    again = cache.get_or_compute(images)
    assert (cache.hits, cache.misses) == (2, 4)
    assert torch.equal(again[[0, 2]], first[[0, 2]])
    assert torch.allclose(again[1], _reference(model, images[1:2])[0], atol=1e-6, rtol=0)
    assert np.array_equal(np.load(path, allow_pickle=False), again[1].numpy())


def test_another_fingerprint_directory_is_never_read(
        tmp_path: Path, model: SamSegmenter, images: np.ndarray) -> None:
    stale = tmp_path / ("0" * 64)
    stale.mkdir()
    for image in images:
        np.save(stale / f"{image_key(image)}.npy", np.zeros((256, 4, 4), dtype=np.float32))
    cache = EmbeddingCache(tmp_path, model)
    result = cache.get_or_compute(images)
    assert cache.misses == 3 and result.abs().sum() > 0


def test_training_mode_encoder_is_embedded_in_eval_and_left_untouched(
        tmp_path: Path, model: SamSegmenter, images: np.ndarray) -> None:
    """ViT-T has BatchNorm: the cache must not use batch statistics nor update running ones."""
    model.train()
    state = {k: v.clone() for k, v in model.image_encoder.state_dict().items()}
    result = EmbeddingCache(tmp_path, model).get_or_compute(images)
    assert model.image_encoder.training
    assert all(torch.equal(v, state[k]) for k, v in model.image_encoder.state_dict().items())
    assert torch.allclose(result, _reference(model, images), atol=1e-6, rtol=0)


def test_trainable_encoder_and_wrong_inputs_are_refused(
        tmp_path: Path, model: SamSegmenter, images: np.ndarray) -> None:
    cache = EmbeddingCache(tmp_path, model)
    next(model.image_encoder.parameters()).requires_grad_(True)
    with pytest.raises(MedsegError, match="frozen image encoder"):
        cache.get_or_compute(images)
    next(model.image_encoder.parameters()).requires_grad_(False)
    with pytest.raises(MedsegError, match="uint8 slices"):
        cache.get_or_compute(images.astype(np.float32))
    with pytest.raises(MedsegError, match="uint8 slices"):
        cache.get_or_compute(images[:, :32, :32])


def test_cached_dataset_serves_embeddings_and_masks(
        tmp_path: Path, model: SamSegmenter, ingested_sample: Path) -> None:
    base = SliceDataset(ingested_sample, "train")
    cache = EmbeddingCache(tmp_path, model)
    dataset = CachedEmbeddingDataset(base, cache, batch_size=4)
    assert len(dataset) == len(base) > 4 and cache.hits + cache.misses == len(base)
    computed = cache.misses
    last_batch = (len(base) - 1) // 4 * 4
    for start, index in ((0, 0), (last_batch, len(base) - 1)):  # compared within the same batch
        expected = _reference(model, np.stack([base.images[row] for row in base.rows[start : start + 4]]))
        embedding, mask = dataset[index]
        assert embedding.dtype == torch.float32 and mask.dtype == torch.int64
        assert torch.allclose(embedding, expected[index - start], atol=1e-6, rtol=0)
        assert torch.equal(mask, base[index][1])
    CachedEmbeddingDataset(base, cache, batch_size=4)
    assert cache.misses == computed
    (cache.directory / f"{dataset.keys[0]}.npy").write_bytes(b"broken")
    alone = _reference(model, base.images[base.rows[:1]])[0]
    assert torch.allclose(dataset[0][0], alone, atol=1e-6, rtol=0)
