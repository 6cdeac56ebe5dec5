"""DICOM slice headers, and masks put on a DICOM series' voxel grid: DICOM-SEG frames, PNG slice
stacks (one PNG per DICOM file) and label volumes resampled onto the series.

Frames are placed by geometry: each 2D frame's pixels are mapped through its plane (position,
orientation, pixel spacing; the referenced source slice's plane for SEG frames) into the RAS+ voxel
grid of the image volume, so masks follow the image whatever order or orientation the files have.
highdicom decodes DICOM-SEG (bit-packed, fractional and label-map frames, segment numbers, frames by
source instance or stacked by plane position); medseg checks what it does not: every referenced
instance is in the series, frames keep their source's spatial locations and size, and every frame
lands on the image grid inside the volume.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.cases import listed_files
from medseg.data.labels import map_mask
from medseg.data.volumes import Volume, read_2d, read_volume
from medseg.errors import MedsegError

SEG_STORAGE = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")  # SEG, label-map SEG
_LPS = np.diag([-1.0, -1.0, 1.0])  # LPS <-> RAS (its own inverse)
_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_GEOMETRY = ("SOPInstanceUID", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns")


@dataclass(frozen=True)
class Plane:
    """Where a 2D frame lies: first pixel centre (LPS mm), row then column direction cosines,
    pixel spacing (between rows, between columns) and frame size (rows, columns)."""

    position: np.ndarray
    orientation: np.ndarray
    spacing: tuple[float, float]
    shape: tuple[int, int]


@dataclass(frozen=True)
class SliceHeader:
    """One DICOM file of a series."""

    path: Path
    uid: str
    instance: int | None
    frame_of_reference: str
    plane: Plane


def natural_key(path: Path) -> list[Any]:
    """Sort key by name with digit runs compared as numbers (``IMG-2`` before ``IMG-10``)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _plane(position: Any, orientation: Any, spacing: Any, shape: tuple[int, int], path: Path) -> Plane:
    try:
        plane = Plane(np.asarray(position, dtype=float).reshape(3), np.asarray(orientation, dtype=float).reshape(6),
                      (float(spacing[0]), float(spacing[1])), shape)
    except (TypeError, ValueError, IndexError) as exc:
        raise MedsegError(f"invalid image plane attributes ({exc.__class__.__name__}: {exc})", path) from exc
    if not np.all(np.isfinite(plane.position)) or min(plane.spacing) <= 0:
        raise MedsegError("invalid image position or pixel spacing", path)
    return plane


def _has_pixels(ds: Any) -> bool:
    return any(tag in ds for tag in _PIXEL_TAGS)


def _header(ds: Any, path: Path) -> SliceHeader:
    if not _has_pixels(ds):
        raise MedsegError("DICOM file has no pixel data", path)
    missing = [key for key in _GEOMETRY if ds.get(key) in (None, "")]
    if missing:
        raise MedsegError(f"DICOM file lacks {missing}", path)
    _check_pixel_bytes(ds, path)
    instance = ds.get("InstanceNumber")
    plane = _plane(ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing,
                   (int(ds.Rows), int(ds.Columns)), path)
    return SliceHeader(path, str(ds.SOPInstanceUID), None if instance in (None, "") else int(instance),
                       str(ds.get("FrameOfReferenceUID", "")), plane)


def _native_pixel_bytes(ds: Any, path: Path) -> int | None:
    """The bytes of uncompressed pixel data the header promises; None for compressed or float data."""
    syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    if "PixelData" not in ds or (syntax is not None and (syntax.is_compressed or syntax.is_deflated)):
        return None
    try:
        bits = int(ds.BitsAllocated)
        pixels = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel") or 1)
        return (pixels * int(ds.get("NumberOfFrames") or 1) * bits + 7) // 8
    except (AttributeError, TypeError, ValueError) as exc:
        raise MedsegError(f"invalid pixel data description ({exc.__class__.__name__}: {exc})", path) from exc


def _check_pixel_bytes(ds: Any, path: Path) -> None:
    """Refuse pixel data cut short (a truncated file): fewer bytes on disk than the header promises."""
    expected = _native_pixel_bytes(ds, path)
    if expected is None:
        return
    element = ds.get_item("PixelData", keep_deferred=True)
    if element.value is None and getattr(element, "value_tell", None) is not None:  # deferred: still on disk
        available = min(element.length, path.stat().st_size - element.value_tell)
    else:
        available = len(element.value or b"")
    if available < expected:
        raise MedsegError(f"pixel data is incomplete ({available} of {expected} bytes; truncated file?)", path)


def claims_dicom(path: Path) -> bool:
    """Whether a file says it is DICOM: a ``.dcm`` name, no bytes at all, or the ``DICM`` marker
    after the 128-byte preamble."""
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with path.open("rb") as handle:
            head = handle.read(132)
    except OSError as exc:
        raise MedsegError(f"cannot read file ({exc.__class__.__name__})", path) from exc
    return len(head) == 0 or head[128:132] == b"DICM"


def _read_header(path: Path) -> Any:
    """A DICOM file's attributes (large values left on disk), or None for a file that is not DICOM.
    A file that claims to be DICOM (:func:`claims_dicom`) must be readable."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    claimed = claims_dicom(path)
    if claimed and path.stat().st_size == 0:
        raise MedsegError("DICOM file is empty (0 bytes)", path)
    try:
        return pydicom.dcmread(path, defer_size="1 KB")
    except InvalidDicomError:
        pass  # no preamble: try once more without it, and keep it only if it looks like an image
    except (OSError, EOFError, ValueError, TypeError, AttributeError, KeyError) as exc:
        raise MedsegError(f"cannot read DICOM header ({exc.__class__.__name__})", path) from exc
    try:
        ds = pydicom.dcmread(path, defer_size="1 KB", force=True)
    except Exception as exc:  # a file that is not DICOM at all
        if claimed:
            raise MedsegError(f"cannot read DICOM header ({exc.__class__.__name__})", path) from exc
        return None
    if "SOPInstanceUID" in ds:
        return ds
    if claimed:
        raise MedsegError("not a readable DICOM file (no SOP Instance UID; truncated or corrupt?)", path)
    return None


def scan_series(folder: Path, root: Path) -> list[SliceHeader]:
    """Headers of the DICOM files in a series folder (each checked to stay inside ``root``). A file that
    claims to be DICOM must be a complete slice with plane geometry, else it is refused by name;
    other files (notes, thumbnails) are passed over. Slices must be evenly spaced (no gap, no two at
    one position)."""
    headers = []
    for path in sorted(listed_files(folder, root), key=natural_key):
        ds = _read_header(path)
        if ds is not None:
            headers.append(_header(ds, path))
    if not headers:
        raise MedsegError("no DICOM files in the series folder", folder)
    check_spacing(headers, folder)
    return headers


def check_spacing(headers: list[SliceHeader], folder: Path) -> None:
    """Refuse two slices at one position, and a gap: consecutive slices (along the slice normal) farther
    apart than 1.5 times the series' regular (smallest) spacing, e.g. where a slice file is missing."""
    orientation = headers[0].plane.orientation
    normal = np.cross(orientation[:3], orientation[3:])
    ordered = sorted(headers, key=lambda h: float(normal @ h.plane.position))
    steps = np.diff([float(normal @ h.plane.position) for h in ordered])
    neighbours = list(zip(steps.tolist(), ordered[:-1], ordered[1:], strict=True))
    for step, before, after in neighbours:
        if step < 1e-3:
            raise MedsegError(f"slices {before.path.name} and {after.path.name} lie at the same position", folder)
    regular = min(steps.tolist(), default=0.0)
    for step, before, after in neighbours:
        if step > 1.5 * regular:
            raise MedsegError(f"gap of {step:.3g} mm between slices {before.path.name} and {after.path.name} "
                              f"(regular spacing {regular:.3g} mm): a slice file is missing", folder)


def frame_index(plane: Plane, image: Volume, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel indices (i, j, k; each of the frame's shape) of every pixel of a frame on the image's grid."""
    to_voxel = np.linalg.inv(image.affine)
    linear = to_voxel[:3, :3] @ _LPS
    start = linear @ plane.position + to_voxel[:3, 3]
    steps = np.stack([linear @ (plane.orientation[:3] * plane.spacing[1]),  # along a row: next column
                      linear @ (plane.orientation[3:] * plane.spacing[0])])  # down a column: next row
    unit = np.rint(steps)
    if (not np.allclose(steps, unit, atol=1e-3) or np.abs(unit).sum(axis=1).tolist() != [1, 1]
            or np.abs(unit).sum(axis=0).max() > 1):
        raise MedsegError("a frame is not aligned with the image grid (orientation or pixel spacing differ)", path)
    if not np.allclose(start, np.rint(start), atol=0.25):
        raise MedsegError(f"a frame at {plane.position.round(2).tolist()} does not lie on the image grid", path)
    rows, cols = np.indices(plane.shape)
    index = (np.rint(start).astype(int)[:, None, None] + unit[0].astype(int)[:, None, None] * cols
             + unit[1].astype(int)[:, None, None] * rows)
    shape = np.asarray(image.array.shape)[:, None, None]
    if index.min() < 0 or np.any(index >= shape):
        raise MedsegError(f"a frame at {plane.position.round(2).tolist()} lies outside the image volume", path)
    return index[0], index[1], index[2]


def _put(mask: np.ndarray, frame: np.ndarray, plane: Plane, image: Volume, path: Path) -> None:
    i, j, k = frame_index(plane, image, path)
    mask[i, j, k] = np.maximum(mask[i, j, k], frame)


def png_stack_mask(folder: Path, root: Path, headers: list[SliceHeader], image: Volume, rule: Any,
                   labels: dict[int, str], max_voxels: int) -> np.ndarray:
    """Classes from a folder of PNG slices: PNG i (natural name order) belongs to DICOM file i in
    InstanceNumber order, and lands on that file's slice of the image volume."""
    pngs = sorted((p for p in listed_files(folder, root) if p.suffix.lower() == ".png"), key=natural_key)
    if len(pngs) != len(headers):
        raise MedsegError(f"{len(pngs)} PNG masks for {len(headers)} DICOM slices", folder)
    unnumbered = [h.path for h in headers if h.instance is None]
    if unnumbered:
        raise MedsegError("DICOM file has no InstanceNumber to pair it with its PNG mask", unnumbered[0])
    mask = np.zeros(image.array.shape, dtype=np.uint8)
    for png, header in zip(pngs, sorted(headers, key=lambda h: (h.instance, natural_key(h.path))), strict=True):
        frame = read_2d(png, max_voxels)
        if frame.shape != header.plane.shape:
            raise MedsegError(f"PNG size {frame.shape} differs from its DICOM slice {header.path.name} "
                              f"{header.plane.shape}", png)
        _put(mask, map_mask(frame, rule, labels, png), header.plane, image, header.path)
    return mask


def _read_seg(path: Path) -> Any:
    """A DICOM-SEG file as a highdicom ``Segmentation`` (which parses its frames, segments and references)."""
    import highdicom as hd
    import pydicom

    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # pydicom raises many types for corrupt files
        raise MedsegError(f"cannot read DICOM-SEG file ({exc.__class__.__name__})", path) from exc
    if ds.get("SOPClassUID") not in SEG_STORAGE:
        raise MedsegError(f"not a DICOM-SEG file (SOP class {ds.get('SOPClassUID')})", path)
    _check_pixel_bytes(ds, path)
    try:
        seg = hd.seg.Segmentation.from_dataset(ds, copy=False)
    except Exception as exc:  # missing sequences, bad values
        raise MedsegError(f"cannot read DICOM-SEG file ({_brief(exc)})", path) from exc
    if max(seg.segment_numbers, default=0) > 255:
        raise MedsegError("segment numbers above 255 are not supported", path)
    return seg


def _brief(exc: Exception) -> str:
    """One line on what highdicom refused: the attribute's name for a missing DICOM attribute."""
    from pydicom.datadict import keyword_for_tag
    from pydicom.tag import BaseTag

    if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], BaseTag):
        return f"lacks {keyword_for_tag(exc.args[0]) or exc.args[0]}"
    return f"{exc.__class__.__name__}: {' '.join(str(exc).split())[:200]}"


def _frame_sources(seg: Any, path: Path) -> list[list[str]]:
    """The source instances each frame references (empty: none); a frame whose spatial locations are not
    those of its source is refused (highdicom silently drops frames that do not say either way)."""
    sources = []
    for item in seg.get("PerFrameFunctionalGroupsSequence") or []:
        references = [s for d in (item.get("DerivationImageSequence") or []) for s in (d.get("SourceImageSequence")
                                                                                           or [])]
        if any(s.get("SpatialLocationsPreserved", "YES") != "YES" for s in references):
            raise MedsegError("a segmentation frame does not preserve its source image's spatial locations", path)
        sources.append([str(s.ReferencedSOPInstanceUID) for s in references])
    return sources


def _segment_stack(read: Callable[..., np.ndarray], seg: Any, path: Path) -> np.ndarray:
    """Frames as segment numbers (the higher number wins where segments overlap) from one of highdicom's
    readers (``read(**options)``, frames first); fractional segments count where above one half."""
    try:
        if str(seg.SegmentationType) != "FRACTIONAL":
            return read(combine_segments=True, skip_overlap_checks=True, dtype=np.uint8)
        numbers = sorted(seg.segment_numbers)
        fractions = read(segment_numbers=numbers, rescale_fractional=True)  # frames x rows x columns x segments
        return np.where(fractions > 0.5, np.asarray(numbers, np.uint8), np.uint8(0)).max(axis=-1)
    except Exception as exc:  # missing decoders, short pixel data, inconsistent frame descriptions
        raise MedsegError(f"cannot decode segmentation frames ({_brief(exc)})", path) from exc


def _by_source(seg: Any, headers: list[SliceHeader], path: Path) -> list[tuple[np.ndarray, Plane]]:
    """Frames on the planes of the source slices they reference."""
    shape = (int(seg.Rows), int(seg.Columns))
    for header in headers:
        if header.plane.shape != shape:
            raise MedsegError(f"segmentation frame size {shape} differs from its source image "
                              f"{header.path.name} {header.plane.shape}", path)
    frames = _segment_stack(lambda **options: seg.get_pixels_by_source_instance(
        [h.uid for h in headers], ignore_spatial_locations=True, assert_missing_frames_are_empty=True, **options),
        seg, path)
    return list(zip(frames, [h.plane for h in headers], strict=True))


def _by_position(seg: Any, headers: list[SliceHeader], path: Path) -> list[tuple[np.ndarray, Plane]]:
    """Frames on their own planes: highdicom stacks them into a regular volume (empty planes filled in)."""
    if str(seg.get("FrameOfReferenceUID", "")) not in {h.frame_of_reference for h in headers}:
        raise MedsegError("segmentation has no source references and another frame of reference", path)
    try:
        geometry = seg.get_volume_geometry()
    except Exception as exc:  # no plane positions at all
        raise MedsegError(f"segmentation frame has neither a source image reference nor a plane position "
                          f"({_brief(exc)})", path) from exc
    if geometry is None:
        raise MedsegError("segmentation frames reference no source images and do not form a regular stack "
                          "of planes", path)
    frames = _segment_stack(lambda **options: seg.get_volume(**options).array, seg, path)
    affine = np.asarray(geometry.affine, dtype=float)
    column_step, row_step = affine[:3, 2], affine[:3, 1]  # LPS mm to the next column, to the next row
    spacing = (float(np.linalg.norm(row_step)), float(np.linalg.norm(column_step)))
    orientation = np.concatenate([column_step / spacing[1], row_step / spacing[0]])
    return [(frame, _plane(affine[:3, 3] + k * affine[:3, 0], orientation, spacing, frame.shape, path))
            for k, frame in enumerate(frames)]


def seg_mask(path: Path, headers: list[SliceHeader], image: Volume) -> np.ndarray:
    """Segment numbers on the image grid from a DICOM-SEG (the higher number wins where segments overlap).
    Frames that reference source slices lie on those slices' planes; otherwise on their own plane positions
    (same frame of reference as the series). Either way every frame must fall on the image grid."""
    seg = _read_seg(path)
    series = {h.uid: h for h in headers}
    sources = _frame_sources(seg, path)
    for references in sources:
        if references and not any(uid in series for uid in references):
            raise MedsegError(f"segmentation frame references instance {references[0]}, which is not in the "
                              "image series", path)
    if sources and all(sources):
        referenced = {uid for references in sources for uid in references}
        placed = _by_source(seg, [h for h in headers if h.uid in referenced], path)
    else:
        placed = _by_position(seg, headers, path)
    mask = np.zeros(image.array.shape, dtype=np.uint8)
    for frame, plane in placed:
        _put(mask, frame, plane, image, path)
    return mask


def to_sitk(volume: Volume) -> Any:
    """A SimpleITK image (LPS geometry) of a RAS+ volume."""
    import SimpleITK as sitk

    spacing = np.linalg.norm(volume.affine[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array.transpose(2, 1, 0)))
    image.SetSpacing(spacing.tolist())
    image.SetDirection((_LPS @ (volume.affine[:3, :3] / spacing)).ravel().tolist())
    image.SetOrigin((_LPS @ volume.affine[:3, 3]).tolist())
    return image


def _extent(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """Physical bounding box (RAS mm) of a volume's voxels, edges included."""
    corners = np.array(np.meshgrid(*[(-0.5, n - 0.5) for n in volume.array.shape], indexing="ij")).reshape(3, -1)
    points = volume.affine[:3, :3] @ corners + volume.affine[:3, 3:4]
    return points.min(axis=1), points.max(axis=1)


def resampled_mask(path: Path, image: Volume, max_voxels: int) -> np.ndarray:
    """A label volume of any extent (e.g. a cropped Slicer ``.seg.nrrd``) resampled onto the image
    grid, nearest neighbour; refused when it does not overlap the image or loses all foreground."""
    import SimpleITK as sitk

    label = read_volume(path, max_voxels)
    (label_low, label_high), (image_low, image_high) = _extent(label), _extent(image)
    if np.any(label_low >= image_high - 1e-3) or np.any(image_low >= label_high - 1e-3):
        raise MedsegError("segmentation does not overlap the image's physical extent", path)
    reference = to_sitk(Volume(np.zeros(image.array.shape, dtype=np.float32), image.affine))
    resampled = sitk.Resample(to_sitk(label), reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0,
                              sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(resampled).transpose(2, 1, 0)
    if label.array.any() and not array.any():
        raise MedsegError("no foreground of the segmentation falls inside the image", path)
    return array
