"""Training: typed configs (:mod:`.config`), data order (:mod:`.batches`), the loop (:mod:`.loop`),
the score-model trainer (:mod:`.trainer`) with its state / resume (:mod:`.state`), logs
(:mod:`.steplog`) and periodic evaluations (:mod:`.hooks`), the EMA, and the noisy-classifier
trainer; :func:`run` is what ``python -m scoresde.train`` calls."""

from scoresde.training.config import TrainingConfig, register_configs, training_options
from scoresde.training.ema import EMA
from scoresde.training.loop import Every, Loop
from scoresde.training.tasks import run
from scoresde.training.trainer import NonFiniteLossError, Trainer, TrainResult, train

__all__ = [
    "EMA",
    "Every",
    "Loop",
    "NonFiniteLossError",
    "TrainResult",
    "Trainer",
    "TrainingConfig",
    "register_configs",
    "run",
    "train",
    "training_options",
]
