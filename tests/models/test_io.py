"""Model files: a checksum written with the weights, verified on load; older files still load."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

import tensorpot
from tensorpot.errors import TensorPotError
from tensorpot.models.io import FORMAT_VERSION, model_checksum, read_model_file
from tests.evaluation.tiny import tiny_model

FORMAT_1 = Path(__file__).with_name("files") / "ictp_format1.model"


def _flip_bytes_of(path: Path, tensor: torch.Tensor, count: int = 50) -> None:
    """Invert ``count`` bytes inside the stored data of ``tensor`` in the file at ``path``."""
    data = bytearray(path.read_bytes())
    raw = tensor.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
    start = data.find(raw)
    assert start >= 0 and len(raw) >= count
    for k in range(start, start + count):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))


def _largest_tensor(model) -> torch.Tensor:
    return max(model.state_dict().values(), key=lambda t: t.numel())


def test_saved_file_carries_the_checksum_of_its_weights(tmp_path):
    model = tiny_model()
    path = tensorpot.save_model(model, tmp_path / "m.model")
    payload = read_model_file(path)
    assert payload["format_version"] == FORMAT_VERSION
    assert payload["checksum"] == model_checksum(payload["config"], payload["state_dict"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a verified file loads without a warning
        tensorpot.load_model(path)


def test_flipped_bytes_in_the_weights_are_refused(tmp_path):
    model = tiny_model()
    path = tensorpot.save_model(model, tmp_path / "m.model")
    _flip_bytes_of(path, _largest_tensor(model))
    with pytest.raises(TensorPotError, match=r"m\.model: damaged"):
        tensorpot.load_model(path)


def test_the_checksum_covers_the_config(tmp_path):
    model = tiny_model()
    payload = read_model_file(tensorpot.save_model(model, tmp_path / "m.model"))
    payload["config"]["r_max"] = payload["config"]["r_max"] + 1.0
    torch.save(payload, tmp_path / "edited.model")
    with pytest.raises(TensorPotError, match="damaged"):
        read_model_file(tmp_path / "edited.model")


def test_checksum_depends_on_every_tensor():
    state = {k: v.clone() for k, v in tiny_model().state_dict().items()}
    config = {"model": "ictp"}
    before = model_checksum(config, state)
    for name, tensor in state.items():
        if tensor.numel() and tensor.is_floating_point():
            old = tensor.view(-1)[0].item()
            tensor.view(-1)[0] = old + 1.0
            assert model_checksum(config, state) != before, name
            tensor.view(-1)[0] = old
    assert model_checksum(config, state) == before


def test_format_1_file_loads_with_a_warning_and_resaves_verified(tmp_path):
    with pytest.warns(UserWarning, match="cannot be verified"):
        model = tensorpot.load_model(FORMAT_1)
    raw = torch.load(FORMAT_1, weights_only=True)
    assert raw["format_version"] == 1 and "checksum" not in raw
    for name, tensor in raw["state_dict"].items():
        assert torch.equal(model.state_dict()[name], tensor), name
    path = tensorpot.save_model(model, tmp_path / "again.model")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = tensorpot.load_model(path)
    for name, tensor in raw["state_dict"].items():
        assert torch.equal(again.state_dict()[name], tensor), name


def test_unknown_format_version_is_refused(tmp_path):
    payload = read_model_file(tensorpot.save_model(tiny_model(), tmp_path / "m.model"))
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "future.model")
    with pytest.raises(TensorPotError, match="unsupported format version 99"):
        read_model_file(tmp_path / "future.model")


def test_format_1_file_predicts_what_it_predicted_when_written():
    """The model file of an older version gives the energies and forces that version gave
    (stored beside it, computed by that version on tests/corpus/good.xyz)."""
    import json

    import ase.io

    from tensorpot.data.atoms import atoms_to_graph, collate

    expected = json.loads(FORMAT_1.with_name("ictp_format1_predictions.json").read_text())
    with pytest.warns(UserWarning, match="cannot be verified"):
        model = tensorpot.load_model(FORMAT_1)
    frames = ase.io.read(Path(__file__).parents[1] / "corpus" / "good.xyz", ":")
    out = model(collate([atoms_to_graph(a, model.r_max) for a in frames]), compute_forces=True)
    torch.testing.assert_close(
        out.energy, torch.tensor(expected["energy"], dtype=torch.float64), rtol=1e-12, atol=1e-9
    )
    torch.testing.assert_close(
        out.forces.detach(),
        torch.tensor(expected["forces"], dtype=torch.float64),
        rtol=1e-9,
        atol=1e-9,
    )
