"""The metric a task is scored by: a built-in one by name, or a function of the task's own.

A built-in metric is summed batch by batch on the device (no copy of the outputs is kept); a task's
own `metric(outputs, targets)` sees the outputs and targets of the whole held-out split at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# name: (mode, what it measures); "max": higher is better
BUILTIN = {
    "accuracy": ("max", "the share of samples whose largest output is the target class"),
    "rmse": ("min", "root mean squared error over every output"),
    "mae": ("min", "mean absolute error over every output"),
    "loss": ("min", "the task's loss, averaged over the samples"),
}
MODES = ("max", "min")


@dataclass(frozen=True)
class Metric:
    name: str  # reported as val_<name> while tuning, test_<name> by final training
    mode: str  # "max" or "min"
    fn: Callable[[Any, Any], Any] | None = None  # a task's own: fn(outputs, targets) -> number

    @property
    def better(self) -> str:
        return "higher is better" if self.mode == "max" else "lower is better"


def loss_kind(loss: Any) -> str | None:
    """What a binary loss says of the outputs it scores: "probabilities" (BCELoss, thresholded at
    0.5), "logits" (BCEWithLogitsLoss, thresholded at 0), None for any other loss."""
    from torch import nn
    from torch.nn import functional as F

    if loss is F.binary_cross_entropy or isinstance(loss, nn.BCELoss):
        return "probabilities"
    if loss is F.binary_cross_entropy_with_logits or isinstance(loss, nn.BCEWithLogitsLoss):
        return "logits"
    return None


class ShapeError(ValueError):
    """Outputs and targets a built-in metric cannot compare without broadcasting them."""


def _accuracy(outputs: torch.Tensor, targets: torch.Tensor, kind: str | None
              ) -> tuple[torch.Tensor, int]:
    """(samples or labels right, how many were scored) of one batch:
    - class scores (N, C) against class indices (N,): the largest output is the target class;
    - with a binary loss (`kind`), outputs of the targets' shape ((N,) or (N, 1): binary; (N, L):
      multi-label) thresholded at 0.5 for probabilities or 0 for logits, each label scored;
    - any other loss, outputs of the targets' shape (N, C) (probabilities or one-hot targets, as
      KLDivLoss and soft cross-entropy take): the largest output is the largest target's class.
    Anything else is refused (ShapeError): comparing it would broadcast."""
    shown = f"outputs {tuple(outputs.shape)} against targets {tuple(targets.shape)}"
    if outputs.dim() == 2 and targets.dim() == 1 and not targets.is_floating_point() and \
            outputs.shape[0] == targets.shape[0] and outputs.shape[1] >= 2 and kind is None:
        return (outputs.argmax(1) == targets).sum(), len(targets)
    if outputs.shape != targets.shape and outputs.numel() == targets.numel() and \
            outputs.shape[:1] == targets.shape[:1] and max(outputs.dim(), targets.dim()) <= 2 and \
            outputs.numel() == len(outputs):  # (N,) against (N, 1) or the other way
        outputs = outputs.reshape(targets.shape)
    if outputs.shape != targets.shape:
        raise ShapeError(f"accuracy cannot compare {shown}: class scores (N, C) go with class "
                         "indices (N,), a binary or multi-label output with targets of its shape")
    if kind is not None:
        predicted = outputs >= (0.5 if kind == "probabilities" else 0.0)
        return (predicted == (targets >= 0.5)).sum(), targets.numel()
    if outputs.dim() == 2 and outputs.shape[1] >= 2:
        return (outputs.argmax(1) == targets.argmax(1)).sum(), len(targets)
    raise ShapeError(f"accuracy cannot score one output a sample ({shown}) without knowing "
                     "whether it is a probability or a logit: use BCELoss or BCEWithLogitsLoss as "
                     "the loss, or a metric of the task's own")


def batch_total(name: str, outputs: torch.Tensor, targets: torch.Tensor,
                kind: str | None = None) -> tuple[torch.Tensor, int]:
    """What one batch adds to a built-in metric's running total (a tensor on the device), and how
    many values it scored; `kind`: the loss's (loss_kind). Shapes the metric would broadcast are
    refused (ShapeError)."""
    if name == "accuracy":
        return _accuracy(outputs, targets, kind)
    if outputs.numel() != targets.numel() or outputs.shape[:1] != targets.shape[:1]:
        raise ShapeError(f"{name} cannot compare outputs {tuple(outputs.shape)} with targets "
                         f"{tuple(targets.shape)}: one output a target")
    error = outputs.reshape(targets.shape) - targets  # (B, 1) outputs against (B,) targets
    return (error.pow(2).sum() if name == "rmse" else error.abs().sum()), targets.numel()


def finish(name: str, total: float, count: int) -> float:
    """A built-in metric from its running total and count over the split (not "loss": that is the
    loss). An accuracy outside [0, 1] is an error, never a score."""
    mean = total / count
    if name == "accuracy":
        if not 0.0 <= mean <= 1.0:
            raise ValueError(f"accuracy {mean} is outside [0, 1]")
        return mean
    return math.sqrt(mean) if name == "rmse" else mean
