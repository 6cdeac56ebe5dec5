"""How many ingestion workers fit in the step's memory budget (``ingest.memory_limit_mb``).

One worker holding the largest allowed volume (``ingest.max_voxels``) peaks at about
``PEAK_BYTES_PER_VOXEL`` bytes per voxel: the voxels as read, their float32 RAS+ copy, the label
volume, and the resized slices. Measured: 5.4 GB for a 2^28-voxel CT volume; 1.16 GB above a warm
worker's baseline for a 512 x 512 x 256 int16 NIfTI volume (18 B per voxel)."""

from __future__ import annotations

from medseg.errors import MedsegError

PEAK_BYTES_PER_VOXEL = 20
MB = 2**20


def peak_mb(max_voxels: int) -> int:
    """Estimated peak memory (MB) of one worker on a volume of ``max_voxels`` voxels."""
    return -(-max_voxels * PEAK_BYTES_PER_VOXEL // MB)


def workers_that_fit(max_voxels: int, memory_limit_mb: int) -> int:
    """The most workers whose estimated peaks fit in ``memory_limit_mb``; an error when not even one does."""
    fit = memory_limit_mb // peak_mb(max_voxels)
    if fit < 1:
        raise MedsegError(f"ingest.max_voxels: {max_voxels} voxels need about {peak_mb(max_voxels)} MB in one "
                          f"worker, more than ingest.memory_limit_mb ({memory_limit_mb}); lower max_voxels or "
                          "raise the limit")
    return fit
