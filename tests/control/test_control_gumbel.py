"""Gumbel-softmax sampling and the temperature schedule."""

import pytest
import torch

from dymu_rt.control.gumbel import TemperatureSchedule, gumbel_softmax_sample
from dymu_rt.core.errors import ValidationError

torch.set_num_threads(1)


def test_samples_are_row_stochastic_and_reproducible():
    logits = torch.randn(4, 3, 3, generator=torch.Generator().manual_seed(0))
    a = gumbel_softmax_sample(logits, 2.0, torch.Generator().manual_seed(5))
    b = gumbel_softmax_sample(logits, 2.0, torch.Generator().manual_seed(5))
    assert a.shape == logits.shape and torch.equal(a, b)
    assert torch.allclose(a.sum(-1), torch.ones(4, 3)) and (a >= 0).all()


def test_sample_frequencies_follow_softmax_of_logits():
    # argmax of (logits + Gumbel) is distributed as softmax(logits) (Gumbel-max trick).
    logits = torch.log(torch.tensor([0.6, 0.3, 0.1])).expand(20000, 3)
    y = gumbel_softmax_sample(logits, 0.5, torch.Generator().manual_seed(0))
    freq = torch.bincount(y.argmax(-1), minlength=3).float() / 20000
    assert torch.allclose(freq, torch.tensor([0.6, 0.3, 0.1]), atol=0.02)


def test_low_temperature_is_nearly_one_hot_and_high_is_flat():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    g = torch.Generator().manual_seed(0)
    cold = gumbel_softmax_sample(logits.expand(200, 3), 0.01, g)
    hot = gumbel_softmax_sample(logits.expand(200, 3), 1000.0, g)
    assert (cold.max(-1).values > 0.99).float().mean() > 0.95       # ties of g are rare
    assert (hot - 1 / 3).abs().max() < 0.01


def test_hard_samples_are_one_hot_with_soft_gradients():
    logits = torch.randn(2, 3, 3, requires_grad=True)
    y = gumbel_softmax_sample(logits, 1.0, torch.Generator().manual_seed(0), hard=True)
    assert set(y.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(y.detach().sum(-1), torch.ones(2, 3))
    (y * torch.arange(3.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_temperature_schedule():
    s = TemperatureSchedule()
    assert s.at(0) == 5.0 and s.at(299) == 5.0
    assert s.at(300) == pytest.approx(5.0 * 0.97)
    assert s.at(3000) == pytest.approx(5.0 * 0.97 ** 10)
    assert TemperatureSchedule(1.0, 0.5, 1).at(3) == 0.125
    for bad in (dict(start=0.0), dict(decay=1.5), dict(every=0)):
        with pytest.raises(ValidationError):
            TemperatureSchedule(**bad)
    with pytest.raises(ValidationError, match="temperature"):
        gumbel_softmax_sample(torch.zeros(3), 0.0)
