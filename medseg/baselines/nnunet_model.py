"""A trained nnU-Net in the one model format, segmenting with nnU-Net's own predictor.

``model.pt`` (``medseg.sam/1``, loaded weights-only like every model) records nnU-Net's plans, its
``dataset.json``, the configuration and trainer name, and the network's weights. Rebuilding uses nnU-Net's
architecture builder on those plans; segmenting runs nnU-Net's predictor in this process: its
preprocessing (the plans' normalisation), sliding window with Gaussian weighting and, when recorded,
mirroring. The evaluator then scores it with exactly the code that scores SAM.

Plans name the network class and its building blocks by import path; only classes of
``dynamic_network_architectures`` and of ``torch.nn`` are accepted, so a crafted file cannot make loading
import and run other code.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medseg.errors import MedsegError

NAME = "nnunet"
SPACING_2D = [999.0, 1.0, 1.0]  # nnU-Net's spacing of natural 2D images (NaturalImage2DIO)
ALLOWED_NETWORK_PREFIX = "dynamic_network_architectures.architectures."
ALLOWED_BLOCK_PREFIX = "torch.nn."
_NUMPY_LOG_TYPES = (np.dtype, np.dtypes.Float32DType, np.dtypes.Float64DType)  # nnU-Net logs numpy floats


@dataclass(frozen=True)
class NnunetSpec:
    """What an exported nnU-Net records to rebuild and run it."""

    plans: dict[str, Any]
    dataset_json: dict[str, Any]
    configuration: str
    trainer: str
    mirroring_axes: tuple[int, ...] | None
    use_mirroring: bool = True
    tile_step_size: float = 0.5
    name: str = NAME
    settings: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def backbone(self) -> str:
        return NAME


def parse_nnunet_settings(settings: dict[str, Any]) -> NnunetSpec:
    """The spec's settings checked (MedsegError without a path: the caller names the file)."""
    plans, dataset_json = settings.get("plans"), settings.get("dataset_json")
    configuration, trainer = settings.get("configuration"), settings.get("trainer")
    if not isinstance(plans, dict) or not isinstance(dataset_json, dict):
        raise MedsegError("an nnunet spec needs 'plans' and 'dataset_json' (dicts)")
    if not isinstance(configuration, str) or configuration not in plans.get("configurations", {}):
        raise MedsegError(f"configuration {configuration!r} is not in the plans")
    if not isinstance(trainer, str) or not trainer:
        raise MedsegError("an nnunet spec needs 'trainer' (the nnU-Net trainer's name)")
    axes = settings.get("mirroring_axes")
    if axes is not None and (not isinstance(axes, list | tuple) or not all(a in (0, 1) for a in axes)):
        raise MedsegError(f"mirroring_axes must be null or a list of 0/1, got {axes!r:.60}")
    step = settings.get("tile_step_size", 0.5)
    if isinstance(step, bool) or not isinstance(step, int | float) or not 0 < step <= 1:
        raise MedsegError(f"tile_step_size must be in (0, 1], got {step!r:.60}")
    return NnunetSpec(plans, dataset_json, configuration, trainer, None if axes is None else tuple(axes),
                      bool(settings.get("use_mirroring", True)), float(step), settings=dict(settings))


def nnunet_spec(spec: NnunetSpec) -> dict[str, Any]:
    """The spec as an exported checkpoint stores it."""
    return {"baseline": NAME, "settings": {
        "plans": spec.plans, "dataset_json": spec.dataset_json, "configuration": spec.configuration,
        "trainer": spec.trainer, "mirroring_axes": None if spec.mirroring_axes is None else list(spec.mirroring_axes),
        "use_mirroring": spec.use_mirroring, "tile_step_size": spec.tile_step_size}}


def _managers(spec: NnunetSpec) -> tuple[Any, Any]:
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans_manager = PlansManager(spec.plans)
    return plans_manager, plans_manager.get_configuration(spec.configuration)


def _check_imports(configuration: Any) -> None:
    """Refuse plans whose network or building blocks would be imported from outside the allowed packages."""
    if not str(configuration.network_arch_class_name).startswith(ALLOWED_NETWORK_PREFIX):
        raise MedsegError(f"network class {configuration.network_arch_class_name!r} is not one of "
                          f"{ALLOWED_NETWORK_PREFIX}*")
    kwargs = configuration.network_arch_init_kwargs
    for key in configuration.network_arch_init_kwargs_req_import:
        value = kwargs.get(key)
        if value is not None and not str(value).startswith(ALLOWED_BLOCK_PREFIX):
            raise MedsegError(f"network building block {key}={value!r} is not one of {ALLOWED_BLOCK_PREFIX}*")


def build_network(spec: NnunetSpec) -> tuple[nn.Module, int]:
    """nnU-Net's network for the spec's plans (no deep supervision: inference), and its output count."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

    plans_manager, configuration = _managers(spec)
    _check_imports(configuration)
    outputs = plans_manager.get_label_manager(spec.dataset_json).num_segmentation_heads
    inputs = determine_num_input_channels(plans_manager, configuration, spec.dataset_json)
    network = nnUNetTrainer.build_network_architecture(plans_manager, configuration, inputs, outputs,
                                                       enable_deep_supervision=False)
    return network, int(outputs)


class NnunetSegmenter(nn.Module):
    """An nnU-Net as a segmenter: slices (B, 3, S, S) 0-255 in, class probabilities (B, K, S, S) out."""

    def __init__(self, spec: NnunetSpec, image_size: int, num_classes: int) -> None:
        super().__init__()
        self.network, outputs = build_network(spec)
        if outputs != num_classes:
            raise MedsegError(f"the plans' dataset has {outputs} classes, the checkpoint says {num_classes}")
        self.baseline = spec
        self.backbone, self.image_size, self.num_classes = NAME, image_size, num_classes
        self.mode, self.candidates = "automated", False
        self.image_encoder = nn.Module()  # no pretrained encoder
        self.register_buffer("pixel_mean", torch.zeros(3, 1, 1), persistent=False)  # nnU-Net normalises itself
        self.register_buffer("pixel_std", torch.ones(3, 1, 1), persistent=False)
        self._predictors: dict[str, Any] = {}

    def encoder_is_frozen(self) -> bool:
        return False

    def _predictor(self, device: torch.device) -> Any:
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        key = str(device)
        if key not in self._predictors:
            spec = self.baseline
            with contextlib.redirect_stdout(io.StringIO()):  # its CPU notice is not ours to print
                predictor = nnUNetPredictor(tile_step_size=spec.tile_step_size, use_gaussian=True,
                                            use_mirroring=spec.use_mirroring and spec.mirroring_axes is not None,
                                            perform_everything_on_device=device.type == "cuda", device=device,
                                            verbose=False, allow_tqdm=False)
            plans_manager, configuration = _managers(spec)
            predictor.manual_initialization(self.network, plans_manager, configuration, [self.network.state_dict()],
                                            spec.dataset_json, spec.trainer, spec.mirroring_axes)
            self._predictors[key] = predictor
        predictor = self._predictors[key]
        predictor.list_of_parameters = [self.network.state_dict()]  # the weights as they are now
        return predictor

    def forward(self, images: torch.Tensor, prompts: torch.Tensor | None = None, embedded: bool = False
                ) -> torch.Tensor:
        """Class probabilities of each slice (its first channel: the stored grayscale) from nnU-Net's predictor."""
        if embedded or prompts is not None:
            raise MedsegError("nnunet takes images only (no embeddings, no prompts)")
        predictor = self._predictor(images.device)
        slices = images[:, 0].detach().float().cpu().numpy()
        probabilities = []
        for image in slices:
            _, probs = predictor.predict_single_npy_array(image[None, None], {"spacing": SPACING_2D},
                                                          save_or_return_probabilities=True)
            probabilities.append(torch.as_tensor(np.asarray(probs, dtype=np.float32)[:, 0]))
        return torch.stack(probabilities).to(images.device)


def read_nnunet_checkpoint(path: str | Path) -> dict[str, Any]:
    """One of nnU-Net's own ``checkpoint_*.pth`` files, loaded weights-only (numpy float scalars of its
    training log allowed, nothing else beyond torch's defaults)."""
    from medseg.models.checkpoints import first_line

    path = Path(path)
    if not path.is_file():
        raise MedsegError("nnU-Net checkpoint not found", path)
    scalar = np._core.multiarray.scalar  # type: ignore[attr-defined]
    try:
        with torch.serialization.safe_globals([scalar, *_NUMPY_LOG_TYPES]):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MedsegError(f"cannot load the nnU-Net checkpoint safely ({first_line(exc)})", path) from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("network_weights"), dict):
        raise MedsegError("not an nnU-Net checkpoint (no network_weights)", path)
    return payload
