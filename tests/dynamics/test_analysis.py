"""Energy drift and mean temperature on synthetic series with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from tensorpot.dynamics.analysis import energy_drift, mean_temperature


def test_drift_recovers_a_known_slope_through_noise():
    rng = np.random.default_rng(3)
    time = np.linspace(2.0, 12.0, 2001)  # ps, not starting at zero
    num_atoms, slope = 27, 4e-4  # eV/atom/ps
    energy = num_atoms * (-650.0 + slope * time + 1e-5 * rng.standard_normal(time.size))
    drift = energy_drift(time, energy, num_atoms)
    assert drift.slope == pytest.approx(slope, rel=0.01)
    per_atom = energy / num_atoms
    assert drift.max_deviation == pytest.approx(np.abs(per_atom - per_atom[0]).max())
    assert drift.max_deviation == pytest.approx(slope * 10.0, rel=0.05)
    assert drift.samples == time.size


def test_drift_of_an_oscillation_is_its_amplitude_not_a_slope():
    time = np.linspace(0.0, 10.0, 4001)
    energy = 10 * 1e-3 * np.sin(2 * np.pi * time)  # ten atoms, 1 meV/atom amplitude, ten periods
    drift = energy_drift(time, energy, 10)
    assert abs(drift.slope) < 2e-5
    assert drift.max_deviation == pytest.approx(1e-3, rel=1e-3)


def test_drift_of_one_sample_has_no_slope():
    drift = energy_drift(np.array([0.5]), np.array([-3.0]), 3)
    assert drift.slope is None and drift.max_deviation == 0.0


def test_mean_temperature_leaves_out_the_first_tenth_of_the_time():
    time = np.linspace(1.0, 3.0, 201)  # ps; the equilibration ends at 1.2 ps
    temperature = np.where(time < 1.2 - 1e-9, 5000.0, 300.0)
    temperature[time >= 1.2 - 1e-9] += np.tile([-10.0, 10.0], 100)[: (time >= 1.2 - 1e-9).sum()]
    mean = mean_temperature(time, temperature)
    assert mean.start == pytest.approx(1.2)
    assert mean.samples == (time >= 1.2 - 1e-9).sum()
    assert mean.mean == pytest.approx(300.0, abs=0.2)
    assert mean.std == pytest.approx(10.0, abs=0.1)
    everything = mean_temperature(time, temperature, fraction=0.0)
    assert everything.mean > 500.0  # the hot start counted


def test_mean_temperature_rejects_a_fraction_outside_zero_one():
    with pytest.raises(ValueError, match="fraction"):
        mean_temperature(np.arange(3.0), np.ones(3), fraction=1.0)
