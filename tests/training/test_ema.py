"""The exponential moving average: warm-up, recurrence, swapping and state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tensorpot.training.ema import ExponentialMovingAverage


def test_warm_up_decay():
    ema = ExponentialMovingAverage([nn.Parameter(torch.zeros(2))], decay=0.99)
    seen = []
    for _ in range(200):
        seen.append(ema.current_decay())
        ema.update()
    n = torch.arange(1, 201, dtype=torch.float64)
    expected = torch.clamp((1 + n) / (10 + n), max=0.99)
    torch.testing.assert_close(torch.tensor(seen, dtype=torch.float64), expected)


def test_recurrence_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    param = nn.Parameter(torch.randn(3, 2, generator=g, dtype=torch.float64))
    ema = ExponentialMovingAverage([param], decay=0.9)
    expected = param.detach().clone()
    for n in range(1, 30):
        with torch.no_grad():
            param.add_(torch.randn(3, 2, generator=g, dtype=torch.float64))
        d = min(0.9, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * param.detach()
        ema.update()
    torch.testing.assert_close(ema.shadow[0], expected)


def test_zero_decay_follows_the_parameters():
    param = nn.Parameter(torch.zeros(4))
    ema = ExponentialMovingAverage([param], decay=0.0)
    with torch.no_grad():
        param.fill_(3.0)
    ema.update()
    torch.testing.assert_close(ema.shadow[0], param.detach())


def test_average_parameters_swaps_and_restores_even_on_error():
    model = nn.Linear(3, 2)
    ema = ExponentialMovingAverage(model.parameters(), decay=0.5)
    trained = [p.detach().clone() for p in model.parameters()]
    averages = [torch.full_like(p, 7.0) for p in model.parameters()]
    ema.shadow = [a.clone() for a in averages]
    with ema.average_parameters():
        for p, a in zip(model.parameters(), averages):
            torch.testing.assert_close(p.detach(), a)
    for p, t in zip(model.parameters(), trained):
        torch.testing.assert_close(p.detach(), t)
    with pytest.raises(RuntimeError, match="boom"), ema.average_parameters():
        raise RuntimeError("boom")
    for p, t in zip(model.parameters(), trained):
        torch.testing.assert_close(p.detach(), t)


def test_state_dict_round_trip():
    model = nn.Linear(3, 2)
    ema = ExponentialMovingAverage(model.parameters(), decay=0.99)
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        ema.update()
    other = ExponentialMovingAverage(nn.Linear(3, 2).parameters(), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 5 and other.decay == 0.99
    for a, b in zip(other.shadow, ema.shadow):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError):
        ExponentialMovingAverage(nn.Linear(2, 2).parameters(), 0.9).load_state_dict(
            ema.state_dict()
        )
