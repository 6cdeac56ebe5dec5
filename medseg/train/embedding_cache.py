"""Image-embedding cache for decoder-only strategies: run the frozen encoder once per image.

Embeddings live under ``<root>/<encoder fingerprint>/<image sha256>.npy`` (float32, written
atomically). The fingerprint hashes the encoder's state (parameters and buffers), the backbone and
the input size, so changing any encoder weight or the input size starts a new directory and a
directory of another fingerprint is never read. Decoder weights are not part of it. A file that
cannot be read, or has the wrong shape or dtype, is recomputed and overwritten.

Embeddings are computed with the encoder in eval mode (ViT-T's BatchNorm then uses its running
statistics, so an embedding depends on the image alone and the encoder's buffers never change).

Augmentation rule: cached embeddings are augmentation-free. A decoder-only run with the cache
trains on un-augmented images; a reference run that recomputes the encoder every step must use the
same rule (no augmentation, encoder in eval mode) when the two are compared.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from medseg.data.slice_dataset import SliceDataset
from medseg.errors import MedsegError
from medseg.models.backbones import PATCH_SIZE, PROMPT_EMBED_DIM
from medseg.models.segmenter import SamSegmenter

CACHE_FORMAT = "medseg-embedding-cache-v1"


def encoder_fingerprint(model: SamSegmenter) -> str:
    """sha256 over the image encoder's state (sorted names, shapes, dtypes, bytes), the backbone, the
    input size and normalisation."""
    normalisation = f"{model.pixel_mean.flatten().tolist()}|{model.pixel_std.flatten().tolist()}"
    digest = hashlib.sha256(f"{CACHE_FORMAT}|{model.backbone}|{model.image_size}|{normalisation}".encode())
    state = model.image_encoder.state_dict()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"|{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def image_key(image: np.ndarray) -> str:
    """sha256 of one uint8 slice's bytes."""
    return hashlib.sha256(np.ascontiguousarray(image, dtype=np.uint8).tobytes()).hexdigest()


def _write_npy(target: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``target`` via a temporary sibling and ``os.replace``."""
    fd, name = tempfile.mkstemp(prefix=f".{target.stem}.tmp-", suffix=".npy", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
        os.replace(name, target)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


class EmbeddingCache:
    """On-disk embeddings of a frozen image encoder, keyed by image content.

    ``hits`` and ``misses`` count images served from disk and images run through the encoder.
    The fingerprint is recomputed when an encoder tensor is replaced or modified in place.
    """

    def __init__(self, root: str | Path, model: SamSegmenter) -> None:
        self.root, self.model = Path(root), model
        self.hits = self.misses = 0
        side = model.image_size // PATCH_SIZE
        self.embedding_shape = (PROMPT_EMBED_DIM, side, side)
        self._token: tuple[tuple[str, int, int], ...] | None = None
        self._fingerprint = ""

    def _state_token(self) -> tuple[tuple[str, int, int], ...]:
        """Cheap identity of the encoder state: storage and in-place version of each tensor."""
        state = self.model.image_encoder.state_dict(keep_vars=True)
        return tuple((name, t.data_ptr(), t._version) for name, t in sorted(state.items()))

    @property
    def fingerprint(self) -> str:
        token = self._state_token()
        if token != self._token:
            self._fingerprint, self._token = encoder_fingerprint(self.model), token
        return self._fingerprint

    @property
    def directory(self) -> Path:
        return self.root / self.fingerprint

    def load(self, key: str, directory: Path | None = None) -> np.ndarray | None:
        """The stored embedding of ``key``, or None when missing, unreadable or malformed."""
        path = (directory or self.directory) / f"{key}.npy"
        try:
            array = np.load(path, allow_pickle=False)
        except Exception:  # missing, truncated, not an array, pickled, bad zip: all count as misses
            return None
        if not isinstance(array, np.ndarray):  # an .npz archive
            array.close()
            return None
        return array if array.shape == self.embedding_shape and array.dtype == np.float32 else None

    def _encode(self, images: np.ndarray) -> np.ndarray:
        """Encoder output for uint8 slices (B, S, S), replicated to 3 channels as in SliceDataset."""
        encoder = self.model.image_encoder
        device = next(self.model.parameters()).device
        batch = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(device)
        batch = batch.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
        was_training = encoder.training
        encoder.eval()
        try:
            with torch.no_grad():
                return self.model.embed(batch).float().cpu().numpy()
        finally:
            encoder.train(was_training)

    def _check(self, images: np.ndarray) -> None:
        size = self.model.image_size
        if images.ndim != 3 or images.shape[1:] != (size, size) or images.dtype != np.uint8:
            raise MedsegError(f"expected uint8 slices of shape (B, {size}, {size}), got "
                              f"{images.dtype} {images.shape}")
        if not self.model.encoder_is_frozen():
            raise MedsegError("the embedding cache needs a frozen image encoder (decoder-only strategy)")

    def get_or_compute(self, images_uint8: np.ndarray, keys: list[str] | None = None) -> torch.Tensor:
        """Embeddings (B, 256, S/16, S/16) on the CPU, in input order: stored ones loaded, the rest
        computed in one batched encoder call and stored. ``keys`` (the images' ``image_key``) may be
        passed when already known."""
        images = np.asarray(images_uint8)
        self._check(images)
        directory = self.directory
        keys = keys if keys is not None else [image_key(image) for image in images]
        if len(keys) != len(images):
            raise MedsegError(f"{len(keys)} keys for {len(images)} images")
        found = [self.load(key, directory) for key in keys]
        missing = [i for i, array in enumerate(found) if array is None]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            directory.mkdir(parents=True, exist_ok=True)
            computed = self._encode(images[missing])
            for i, embedding in zip(missing, computed, strict=True):
                found[i] = embedding
                _write_npy(directory / f"{keys[i]}.npy", np.ascontiguousarray(embedding))
        if not found:
            return torch.empty((0, *self.embedding_shape))
        return torch.from_numpy(np.stack(found))


class CachedEmbeddingDataset(Dataset):
    """A split as ``(embedding float32 (256, S/16, S/16), mask int64 (S, S))``.

    All embeddings are computed (or found) up front; items are then read from the cache, and one
    that has gone missing or corrupt since is recomputed. No augmentation (see the module docstring).
    """

    def __init__(self, base: SliceDataset, cache: EmbeddingCache, batch_size: int) -> None:
        from tqdm import tqdm

        if batch_size < 1:
            raise MedsegError(f"batch_size {batch_size} must be >= 1")
        self.base, self.cache = base, cache
        self.keys: list[str] = []
        for start in tqdm(range(0, len(base), batch_size), desc="image embeddings", unit="batch",
                          leave=False):
            images = self._images(base.rows[start : start + batch_size])
            keys = [image_key(image) for image in images]
            cache.get_or_compute(images, keys)
            self.keys.extend(keys)

    def _images(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.base.images[np.asarray(rows, dtype=np.int64)], dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = int(self.base.rows[index])
        embedding = self.cache.load(self.keys[index])
        if embedding is None:
            tensor = self.cache.get_or_compute(self._images(np.array([row])), [self.keys[index]])[0]
        else:
            tensor = torch.from_numpy(embedding)
        mask = torch.from_numpy(np.array(self.base.masks[row], dtype=np.int64))
        return tensor, mask
