"""The models committed under ``pretrained/`` load with this code and are trained ones.

Each model's README reports its errors on the full test sets; here each model is scored on
the bundled test frames of its own molecule (``data/3bpa``, ``data/rmd17``), where an untrained
model (the same config, its initial weights) has a force RMSE of about
1,000 meV/Å: a bound of 100 meV/Å catches a model file
that no longer loads as trained.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tensorpot.data.readers import read_configurations
from tensorpot.evaluation.evaluate import evaluate
from tensorpot.models import load_model

REPO = Path(__file__).resolve().parents[2]
MODELS = sorted((REPO / "pretrained").glob("*/*.model"))
DATA = REPO / "data"
#: The bundled test frames of each protocol's molecule, by the model folder's name.
FRAMES = {
    "3bpa-": DATA / "3bpa" / "test_300K_first200.xyz",
    "rmd17-aspirin-": DATA / "rmd17" / "rmd17_aspirin_test_01_first100.npz",
    "rmd17-ethanol-": DATA / "rmd17" / "rmd17_ethanol_test_01_first100.npz",
}


def test_there_are_pretrained_models():
    assert MODELS, "no model under pretrained/"


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_a_pretrained_model_loads_and_predicts(path):
    (frames,) = [f for prefix, f in FRAMES.items() if path.stem.startswith(prefix)]
    model = load_model(path)
    table, _ = evaluate(model, read_configurations(frames)[:20])
    assert table["forces_rmse"] < 100.0
