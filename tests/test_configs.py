"""Every preset in configs/ loads and validates, so presets cannot rot."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tensorpot.config import load_run_config
from tensorpot.models.build import validate_model_config

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


def test_presets_exist():
    names = {p.stem for p in CONFIGS}
    assert {"ictp-rmd17-950", "ictp-rmd17-50", "ictp-3bpa-450", "ictp-3bpa-50"} <= names
    assert {"ictp-acac-50", "ictp-zuo2020-cu", "ictp-3bpa-demo"} <= names
    assert {"freecg-rmd17-aspirin", "visnet-rmd17-aspirin"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_preset_loads(path):
    raw = yaml.safe_load(path.read_text())
    files = [raw["train_file"], *raw.get("test_files", [])]
    missing = [f for f in files if not (path.parent / f).exists()]
    if missing:
        pytest.skip(f"data not present here: {missing[0]}")
    config = load_run_config(path)
    assert Path(config.train_file).is_file()
    model = validate_model_config({**config.model, "atomic_numbers": [1, 6, 7, 8]})
    assert model.model == config.model["model"]


def test_the_visnet_preset_is_the_freecg_recipe_with_another_model():
    """ViSNet is trained exactly as FreeCG (the comparison the FreeCG paper makes)."""
    folder = Path(__file__).parents[1] / "configs"
    freecg, visnet = (
        yaml.safe_load((folder / f"{family}-rmd17-aspirin.yaml").read_text())
        for family in ("freecg", "visnet")
    )
    differing = {k for k in freecg.keys() | visnet.keys() if freecg.get(k) != visnet.get(k)}
    assert differing == {"name", "output_dir", "model"}
    assert {**visnet["model"], "model": "freecg"} == freecg["model"]
