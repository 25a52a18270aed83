"""The FreeCG recipe options of a run: AdamW, the lr warm-up, min_lr and the smoothed energy loss.

Each option is checked to change what it should and nothing else, on the tiny ICTP runs of
conftest (8 training and 2 validation frames of 3BPA unless a test says otherwise).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook
from tqdm.auto import tqdm

from tensorpot.config import RunConfig, parse_run_config
from tensorpot.data.dataset import GraphDataset, iterate_batches
from tensorpot.errors import ConfigError
from tensorpot.evaluation.metrics import num_atoms_per_graph
from tensorpot.models import Potential
from tensorpot.training import epoch as epoch_module
from tensorpot.training import train
from tensorpot.training import trainer as trainer_module
from tensorpot.training.checkpoint import latest_checkpoint, load_checkpoint
from tensorpot.training.loss import LossWeights, weighted_loss
from tensorpot.training.run_data import RunData
from tensorpot.training.state import TrainingState, loss_weights
from tests.training.conftest import tiny_run

NO_BAR = tqdm(disable=True)


def set_up(
    frames_file: Path, folder: Path, e0s: dict, **extra
) -> tuple[RunConfig, RunData, TrainingState]:
    """The config, data and fresh training state that ``train`` would start from."""
    config = parse_run_config(tiny_run(frames_file, folder / "run", e0s, **extra))
    data, state = trainer_module._set_up(config, None)
    return config, data, state


def parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def final_checkpoint(folder: Path) -> dict:
    return load_checkpoint(latest_checkpoint(folder / "checkpoints"))


def log_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [{k: v for k, v in row.items() if k != "time_s"} for row in csv.DictReader(handle)]


@pytest.fixture()
def step_lrs():
    """The lr of every parameter group at each optimiser step taken while the test runs."""
    seen: list[list[float]] = []
    handle = register_optimizer_step_pre_hook(
        lambda optimizer, args, kwargs: seen.append([g["lr"] for g in optimizer.param_groups])
    )
    yield seen
    handle.remove()


# -- the keys --------------------------------------------------------------------------------


def test_the_recipe_keys_default_to_plain_training(frames_file, tmp_path, e0s):
    config, _, state = set_up(frames_file, tmp_path, e0s)
    assert (config.optimizer, config.lr_warmup_steps, config.min_lr) == ("adam", 0, 0.0)
    assert config.energy_loss_smoothing is None and state.energy_smoothing is None
    assert type(state.optimizer) is torch.optim.Adam
    assert state.scheduler.min_lrs == [0.0] * len(state.optimizer.param_groups)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("optimizer", "sgd"),
        ("lr_warmup_steps", -1),
        ("min_lr", -1e-7),
        ("energy_loss_smoothing", 0.0),
        ("energy_loss_smoothing", 1.5),
    ],
)
def test_a_bad_recipe_value_names_its_key(frames_file, tmp_path, e0s, key, value):
    with pytest.raises(ConfigError, match=f"^{key}:"):
        parse_run_config(tiny_run(frames_file, tmp_path, e0s, **{key: value}))


# -- optimizer -------------------------------------------------------------------------------


@pytest.mark.parametrize("amsgrad", [True, False])
def test_adam_and_adamw_agree_without_weight_decay(frames_file, tmp_path, e0s, amsgrad):
    """Weight decay is the only difference: with none, two epochs (4 steps) end equal."""
    after = {}
    for kind in ("adam", "adamw"):
        config, data, state = set_up(
            frames_file, tmp_path / kind, e0s, optimizer=kind, weight_decay=0.0, amsgrad=amsgrad
        )
        for epoch in (1, 2):
            epoch_module.train_epoch(state, data.train, config, epoch, NO_BAR)
        after[kind] = parameters(state.model)
    assert after["adam"].keys() == after["adamw"].keys()
    for name, value in after["adam"].items():
        assert torch.equal(value, after["adamw"][name]), name


def test_adamw_decays_the_weight_decay_parameters_decoupled(frames_file, tmp_path, e0s):
    """After one step from equal weights: AdamW = Adam without decay - lr * wd * p on the
    parameters the family's WEIGHT_DECAY names, and equal to it on the others; Adam with the
    same weight decay (L2 in the gradient) ends elsewhere."""
    lr, wd = 0.01, 0.1
    before, after, decayed = {}, {}, set()
    for kind, decay in (("adam", 0.0), ("adam_l2", wd), ("adamw", wd)):
        config, data, state = set_up(
            frames_file, tmp_path / kind, e0s, lr=lr, batch_size=8,  # one step per epoch
            optimizer=kind.removesuffix("_l2"), weight_decay=decay,
        )  # fmt: skip
        names = {id(p): n for n, p in state.model.named_parameters()}
        groups = {g["name"]: g for g in state.optimizer.param_groups}
        assert {n: g["weight_decay"] for n, g in groups.items()} == {
            "decay": decay,
            "no_decay": 0.0,
        }
        decayed = {names[id(p)] for p in groups["decay"]["params"]}
        before[kind] = parameters(state.model)
        epoch_module.train_epoch(state, data.train, config, 1, NO_BAR)
        after[kind] = parameters(state.model)
    assert before["adam"].keys() == before["adamw"].keys()
    assert decayed and decayed != set(before["adam"])
    for name, start in before["adam"].items():
        assert torch.equal(start, before["adamw"][name])
        if name in decayed:
            expected = after["adam"][name] - lr * wd * start
            torch.testing.assert_close(after["adamw"][name], expected, rtol=1e-12, atol=1e-15)
            assert not torch.allclose(after["adamw"][name], after["adam_l2"][name])
        else:
            assert torch.equal(after["adamw"][name], after["adam"][name]), name


# -- lr warm-up and min_lr -------------------------------------------------------------------


def test_the_warm_up_ramps_the_lr_per_step_across_a_resume(frames_file, tmp_path, e0s, step_lrs):
    """Two steps per epoch, a 5-step warm-up: steps 0..5 use lr * min(1, (k + 1) / 5) in every
    parameter group, also when the run is resumed after its first epoch."""
    lr, warm = 0.01, 5
    expected = [lr * min(1.0, (k + 1) / warm) for k in range(6)]
    config = tiny_run(
        frames_file, tmp_path / "whole", e0s, lr=lr, lr_warmup_steps=warm, max_num_epochs=3
    )
    train(config)
    assert [groups[0] for groups in step_lrs] == pytest.approx(expected, rel=1e-15)
    assert all(len(set(groups)) == 1 for groups in step_lrs)  # every group alike
    assert final_checkpoint(tmp_path / "whole")["step"] == 6

    step_lrs.clear()
    split = {**config, "output_dir": str(tmp_path / "split")}
    train({**split, "max_num_epochs": 1})
    assert final_checkpoint(tmp_path / "split")["step"] == 2
    train(split, resume=True)
    assert [groups[0] for groups in step_lrs] == pytest.approx(expected, rel=1e-15)
    assert final_checkpoint(tmp_path / "split")["step"] == 6


def test_after_the_warm_up_the_lr_is_the_schedulers(frames_file, tmp_path, e0s):
    """Past its steps (or with none) the warm-up leaves the lr alone, so ReduceLROnPlateau's
    reductions stand; they stop at min_lr."""
    _, _, state = set_up(
        frames_file, tmp_path, e0s, lr=0.01, lr_warmup_steps=3, scheduler_patience=0,
        lr_factor=0.1, min_lr=1e-4,
    )  # fmt: skip
    assert state.scheduler.min_lrs == [1e-4] * len(state.optimizer.param_groups)
    state.step = 3
    for _ in range(5):  # a validation loss that never improves
        state.scheduler.step(1.0)
        state.warm_up(state.config)
    lrs = [g["lr"] for g in state.optimizer.param_groups]
    assert lrs == pytest.approx([1e-4] * len(lrs), rel=1e-12)
    _, _, plain = set_up(frames_file, tmp_path, e0s, lr=0.01)
    plain.warm_up(plain.config)
    assert plain.lr == 0.01 and all(g["lr"] == 0.01 for g in plain.optimizer.param_groups)


# -- the smoothed energy loss ----------------------------------------------------------------


def batch_terms(model: Potential, raw) -> tuple[float, float, int]:
    """Energy MSE per atom and force MSE per component of one batch, written out here."""
    batch, targets, weights = raw
    assert torch.all(weights == 1.0)
    pred = model(batch, compute_forces=True).detached()
    counts = torch.bincount(batch.batch, minlength=batch.num_graphs).to(pred.energy.dtype)
    energy = (((pred.energy - targets.energy) / counts) ** 2).mean()
    forces = ((pred.forces - targets.forces) ** 2).mean()
    return float(energy), float(forces), batch.num_graphs


def smooth(a: float, chain: list[float], value: float) -> float:
    """One step of the smoothing recurrence; ``chain`` holds the previous value (or nothing)."""
    previous = chain[-1] if chain else value
    chain.append(a * value + (1.0 - a) * previous)
    return chain[-1]


def test_the_training_energy_loss_follows_the_recurrence_across_epochs(
    frames_file, tmp_path, e0s, monkeypatch
):
    """With the weights held fixed, each epoch's training loss is the structure-weighted mean
    of 0.05 * L~_E + 0.95 * L_F over its shuffled batches (3, 3, 2 frames), one chain from the
    first batch of the first epoch on."""
    a = 0.3
    config, data, state = set_up(
        frames_file, tmp_path, e0s, batch_size=3, energy_loss_smoothing=a,
        energy_weight=0.05, forces_weight=0.95,
    )  # fmt: skip
    monkeypatch.setattr(state.optimizer, "step", lambda *args, **kwargs: None)
    model, chain = state.model, []
    for epoch in (1, 2):
        loss = epoch_module.train_epoch(state, data.train, config, epoch, NO_BAR)
        generator = torch.Generator().manual_seed(epoch_module._epoch_seed(config.seed, epoch))
        total, count = 0.0, 0
        for raw in iterate_batches(data.train, 3, True, generator, model.dtype):
            energy, forces, frames = batch_terms(model, raw)
            total += (0.05 * smooth(a, chain, energy) + 0.95 * forces) * frames
            count += frames
        assert count == 8 and len(chain) == 3 * epoch
        assert loss == pytest.approx(total / count, rel=1e-10)
    assert float(state.energy_smoothing.previous["train"]) == pytest.approx(chain[-1], rel=1e-10)
    assert state.energy_smoothing.previous["valid"] is None


def test_the_validation_loss_is_the_batch_mean_of_its_own_chain(frames_file, tmp_path, e0s):
    """3 validation frames in batches of 2 and 1: each validation's loss is the plain mean over
    its batches (as the official val_loss), and its chain goes on from the previous one."""
    a = 0.2
    config, data, state = set_up(
        frames_file, tmp_path, e0s, valid_fraction=0.3, valid_batch_size=2,
        energy_loss_smoothing=a,
    )  # fmt: skip
    model, chain = state.model, []
    assert len(data.valid) == 3
    for _ in range(2):
        loss, _ = epoch_module.evaluate(model, data.valid, 2, config, False, state.energy_smoothing)
        totals = []
        for raw in iterate_batches(data.valid, 2, dtype=model.dtype):
            energy, forces, _ = batch_terms(model, raw)
            totals.append(config.energy_weight * smooth(a, chain, energy) + 100.0 * forces)
        assert loss == pytest.approx(sum(totals) / len(totals), rel=1e-10)
    assert state.energy_smoothing.previous["train"] is None
    plain, _ = epoch_module.evaluate(model, data.valid, 2, config, False)
    energy_forces = [batch_terms(model, raw) for raw in iterate_batches(data.valid, 3)]
    assert plain == pytest.approx(energy_forces[0][0] + 100.0 * energy_forces[0][1], rel=1e-10)


def energy_weighted_gradient(
    state: TrainingState, dataset: GraphDataset, weights: LossWeights, smoothed: bool
) -> list[torch.Tensor]:
    """Gradients of the second batch's loss (the smoothed one after the first batch started
    the chain, or the plain weighted loss)."""
    model = state.model
    raws = list(iterate_batches(dataset, 4, dtype=model.dtype))
    grads = []
    for k, (batch, targets, w) in enumerate(raws[:2]):
        model.zero_grad(set_to_none=True)
        pred = model(batch, compute_forces=True)
        n = num_atoms_per_graph(batch.batch, batch.num_graphs)
        loss, terms = weighted_loss(pred, targets, w, n, batch.batch, weights)
        if smoothed:
            loss = state.energy_smoothing.total("train", terms, weights)
        if k == 1:
            loss.backward()
            grads = [p.grad.clone() for p in model.parameters()]
    return grads


def test_the_energy_mse_gets_the_gradient_weight_energy_weight_times_a(frames_file, tmp_path, e0s):
    a, energy_weight = 0.05, 0.5
    _, data, state = set_up(
        frames_file, tmp_path, e0s, energy_loss_smoothing=a, energy_weight=energy_weight
    )
    weights = loss_weights(state.config, False)
    smoothed = energy_weighted_gradient(state, data.train, weights, True)
    scaled = weights._replace(energy=energy_weight * a)
    plain = energy_weighted_gradient(state, data.train, scaled, False)
    for x, y in zip(smoothed, plain, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-14)


def test_smoothing_factor_one_trains_as_no_smoothing(frames_file, tmp_path, e0s):
    """a = 1 leaves every training loss as it was: the weights after two epochs are equal;
    a < 1 changes them."""
    after = {}
    for a in (None, 1.0, 0.5):
        config, data, state = set_up(frames_file, tmp_path / str(a), e0s, energy_loss_smoothing=a)
        for epoch in (1, 2):
            epoch_module.train_epoch(state, data.train, config, epoch, NO_BAR)
        after[a] = parameters(state.model)
    assert all(torch.equal(after[None][n], after[1.0][n]) for n in after[None])
    assert not all(torch.equal(after[None][n], after[0.5][n]) for n in after[None])


# -- all of it across a resume ---------------------------------------------------------------


def test_a_resumed_freecg_recipe_run_reaches_the_uninterrupted_state(frames_file, tmp_path, e0s):
    """AdamW, a warm-up longer than an epoch and both smoothing chains, killed after epoch 2:
    the resumed run logs the same losses and ends with the same weights, step and chains."""
    recipe = {
        "optimizer": "adamw", "weight_decay": 0.01, "amsgrad": False, "lr_warmup_steps": 5,
        "min_lr": 1e-4, "energy_loss_smoothing": 0.3, "max_num_epochs": 4,
    }  # fmt: skip
    whole = tiny_run(frames_file, tmp_path / "whole", e0s, **recipe)
    split = tiny_run(frames_file, tmp_path / "split", e0s, **recipe)
    reference = train(whole)
    train({**split, "max_num_epochs": 2})
    middle = final_checkpoint(tmp_path / "split")
    assert middle["step"] == 4
    assert all(torch.is_tensor(middle["energy_smoothing"][k]) for k in ("train", "valid"))
    resumed = train(split, resume=True)
    a, b = final_checkpoint(tmp_path / "split"), final_checkpoint(tmp_path / "whole")
    assert a["step"] == b["step"] == 8
    for chain in ("train", "valid"):
        assert torch.equal(a["energy_smoothing"][chain], b["energy_smoothing"][chain])
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    assert log_rows(resumed.history_path) == log_rows(reference.history_path)
