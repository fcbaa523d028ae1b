"""Gumbel-softmax samples of the edge hypernet's parent logits (paper §3.3, stage 1).

During stage 1 the anchor runs as a supernet whose node inputs mix parents with weights
ν = softmax((α + g) / ζ), g ~ Gumbel(0, 1) i.i.d. (Jang et al., 2017; Maddison et al.,
2017). A high temperature ζ explores many trees; annealing ζ makes ν nearly one-hot so
the supernet approaches the discrete tree chosen at inference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from dymu_rt.core.errors import ValidationError


def gumbel_softmax_sample(logits: torch.Tensor, temperature: float,
                          generator: Optional[torch.Generator] = None, hard: bool = False) -> torch.Tensor:
    """A Gumbel-softmax sample over the last dim of ``logits`` (same shape, rows sum to 1).

    ``hard=True`` returns one-hot rows in the forward pass with the soft sample's gradient
    (straight-through estimator). ``generator`` makes the noise reproducible.
    """
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValidationError(f"temperature = {temperature!r}: expected a finite value > 0")
    u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device)
    # Clamp away from 0 and 1: log(0) would give an infinite Gumbel draw and NaN gradients.
    tiny = torch.finfo(logits.dtype).tiny
    u = u.clamp(tiny, 1.0 - torch.finfo(logits.dtype).eps)
    g = -torch.log(-torch.log(u))
    y = torch.softmax((logits + g) / temperature, dim=-1)
    if not hard:
        return y
    return straight_through(y)


def straight_through(y: torch.Tensor) -> torch.Tensor:
    """One-hot argmax rows of ``y`` in the forward pass, ``y``'s gradient in the backward pass."""
    index = y.argmax(dim=-1, keepdim=True)
    one_hot = torch.zeros_like(y).scatter_(-1, index, 1.0)
    return one_hot - y.detach() + y


@dataclass(frozen=True)
class TemperatureSchedule:
    """Step-decayed Gumbel temperature ζ: ``start`` × ``decay`` ** (step // ``every``).

    Paper defaults: ζ = 5, ×0.97 every 300 steps (so ζ ≈ 2.0 after 9K steps, ≈ 0.24 after 30K).
    """

    start: float = 5.0
    decay: float = 0.97
    every: int = 300

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and self.start > 0):
            raise ValidationError(f"temperature start = {self.start!r}: expected a value > 0")
        if not (0 < self.decay <= 1):
            raise ValidationError(f"temperature decay = {self.decay!r}: expected a value in (0, 1]")
        if not (isinstance(self.every, int) and self.every >= 1):
            raise ValidationError(f"temperature decay interval = {self.every!r}: expected an integer >= 1")

    def at(self, step: int) -> float:
        """Temperature at training step ``step`` (0-based)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        return float(self.start * self.decay ** (int(step) // self.every))
