"""The models committed under ``pretrained/`` load with this code and are trained ones.

Each model's README reports its errors on the full test sets; here the 3BPA models are
scored on the bundled 3BPA frames, where an untrained model's force RMSE is thousands of
meV/Å: a bound of 100 meV/Å catches a model file that no longer loads as trained.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tensorpot.data.readers import read_configurations
from tensorpot.evaluation.evaluate import evaluate
from tensorpot.models import load_model

REPO = Path(__file__).resolve().parents[2]
MODELS = sorted((REPO / "pretrained").glob("*/*.model"))
FRAMES = REPO / "data" / "3bpa" / "test_300K_first200.xyz"


def test_there_are_pretrained_models():
    assert MODELS, "no model under pretrained/"


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_a_pretrained_model_loads_and_predicts(path):
    model = load_model(path)
    configs = read_configurations(FRAMES)[:10]
    if not {int(z) for c in configs for z in c.numbers} <= set(model.atomic_numbers):
        pytest.skip(f"{path.stem} loads; it does not know the elements of 3BPA")
    table, _ = evaluate(model, configs)
    assert table["forces_rmse"] < 100.0
