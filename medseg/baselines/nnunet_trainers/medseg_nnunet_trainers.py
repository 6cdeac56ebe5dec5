"""Short nnU-Net trainers for tests and CPU demos (the study uses nnU-Net's own ``nnUNetTrainer``).

Each keeps nnU-Net's recipe (network, loss, augmentation, optimiser, poly schedule) and only shortens
the run. ``checkpoint_latest.pth`` is written after every epoch, so a stopped run continues from its
last epoch (``nnUNetv2_train ... --c``).

``MEDSEG_NNUNET_STOP_AFTER=N`` in the environment stops a run after its N-th epoch (exit status 1,
``checkpoint_latest.pth`` written), the way a preempted job ends.
"""

from __future__ import annotations

import os
from os.path import join

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

STOP_AFTER_ENV = "MEDSEG_NNUNET_STOP_AFTER"
CUDA = torch.device("cuda")  # nnU-Net's default device


class _ShortTrainer(nnUNetTrainer):
    """nnU-Net's trainer with fewer epochs and iterations; subclasses set the three numbers."""

    epochs = 2
    iterations_per_epoch = 2
    val_iterations_per_epoch = 1

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = CUDA) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = self.epochs
        self.num_iterations_per_epoch = self.iterations_per_epoch
        self.num_val_iterations_per_epoch = self.val_iterations_per_epoch
        self.save_every = 1

    def on_epoch_end(self) -> None:
        super().on_epoch_end()  # writes checkpoint_latest.pth, then counts the epoch
        stop_after = os.environ.get(STOP_AFTER_ENV, "")
        if stop_after.isdigit() and self.current_epoch == int(stop_after) < self.num_epochs:
            self._stop()

    def _stop(self) -> None:
        for loader in (self.dataloader_train, self.dataloader_val):
            if hasattr(loader, "_finish"):
                loader._finish()
        latest = join(self.output_folder, "checkpoint_latest.pth")
        raise SystemExit(f"stopped after epoch {self.current_epoch} of {self.num_epochs} ({STOP_AFTER_ENV}); "
                         f"{latest} holds the state to continue from")


class nnUNetTrainer_medseg_tiny(_ShortTrainer):
    """2 epochs x 2 iterations (1 validation iteration): a smoke test of the whole pipeline."""


class nnUNetTrainer_medseg_demo(_ShortTrainer):
    """20 epochs x 25 iterations: a CPU demo that learns something in minutes on small slices."""

    epochs = 20
    iterations_per_epoch = 25
    val_iterations_per_epoch = 5
