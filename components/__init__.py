"""Kubeflow Pipelines v2 container components: one per pipeline step, each running the same
``medseg <step>`` command as its DVC stage, in the project image, plus ``pull`` (the DVC remote's side of a
commit: locally, `dvc pull` does it). No logic lives here."""

from components.baseline import baseline
from components.evaluate import evaluate
from components.finetune import finetune, finetune_pretrained, finetune_pretrained_with_weights, finetune_with_weights
from components.ingest import ingest
from components.pretrain_mae import pretrain_mae
from components.pretrain_sup import pretrain_sup
from components.pull import pull
from components.regress import regress
from components.report import report
from components.sample import sample
from components.validate import validate

STEP_COMPONENTS = {
    "pull": pull,
    "sample": sample,
    "ingest": ingest,
    "validate": validate,
    "finetune": finetune,
    "baseline": baseline,
    "pretrain_mae": pretrain_mae,
    "pretrain_sup": pretrain_sup,
    "evaluate": evaluate,
    "report": report,
    "regress": regress,
}

__all__ = ["STEP_COMPONENTS", "baseline", "evaluate", "finetune", "finetune_pretrained",
           "finetune_pretrained_with_weights", "finetune_with_weights", "ingest", "pretrain_mae", "pretrain_sup",
           "pull", "regress", "report", "sample", "validate"]
