"""One epoch of training and one pass of evaluation: the inner loops of ``train``.

A training step differentiates the weighted loss of a batch (in a data-parallel run, of this
rank's share of the global batch, with the batch's means taken over all ranks), sums the
gradients over the ranks, clips them if asked and steps the optimiser and the EMA. Evaluation
returns the data-set mean of the weighted loss and the error table.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from tensorpot.config import RunConfig
from tensorpot.data.batch import GraphBatch, Targets
from tensorpot.data.configuration import PROPERTY_PREFIX
from tensorpot.data.dataset import GraphDataset, iterate_batches
from tensorpot.errors import DataError
from tensorpot.evaluation.metrics import ErrorAccumulator, num_atoms_per_graph
from tensorpot.models import Potential, Predictions
from tensorpot.training.distributed import SINGLE, World
from tensorpot.training.loss import (
    TERMS,
    EnergyLossSmoothing,
    LossWeights,
    TermSums,
    combine_terms,
    loss_term_sums,
    weighted_total,
)
from tensorpot.training.state import TrainingState, loss_weights

__all__ = ["evaluate", "term_names", "train_epoch"]


def _epoch_seed(seed: int, epoch: int) -> int:
    """A shuffling seed for one epoch, a function of the run seed and the epoch only."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _on_device(
    batch: GraphBatch, targets: Targets, weights: torch.Tensor, device: torch.device
) -> tuple[GraphBatch, Targets, torch.Tensor]:
    moved = Targets(*(None if t is None else t.to(device) for t in targets))
    return batch.to(device), moved, weights.to(device)


def _predict(model: Potential, batch: GraphBatch, targets: Targets) -> Predictions:
    stress = targets.stress is not None or targets.virials is not None
    return model(batch, compute_forces=targets.forces is not None, compute_stress=stress)


def term_names(train: GraphDataset) -> list[str]:
    """The loss terms a training batch may have: the fixed terms and the training set's
    properties (the same list on every rank, in the same order)."""
    properties = [k for k in train.label_counts() if k.startswith(PROPERTY_PREFIX)]
    return [*TERMS, *properties]


def _batch_terms(
    sums: dict[str, TermSums],
    num_graphs: int,
    world: World,
    names: list[str],
    weights: LossWeights,
) -> tuple[dict[str, torch.Tensor], int]:
    """The term means of the global batch, with the gradient of this rank's share.

    One process: ``S_t / C_t`` as :func:`combine_terms` gives them. Several: every term is
    ``S_t,r / C_t + stopgrad(S_t / C_t - S_t,r / C_t)`` with the sums ``S_t`` and counts ``C_t``
    of the whole batch (one ``all_reduce``), so its value is the global mean on every rank
    and its gradient this rank's part of the global gradient (module docs of
    :mod:`tensorpot.training.distributed`). Returns the terms and the global structure count.
    """
    if not world.parallel:
        return combine_terms(sums, weights)[1], num_graphs
    local = torch.zeros(2 * len(names) + 1, dtype=torch.float64)
    for k, name in enumerate(names):
        if name in sums:
            local[2 * k] = sums[name].total.detach().double().cpu()
            local[2 * k + 1] = sums[name].count
    local[-1] = num_graphs
    total = world.all_reduce(local.clone())
    terms = {}
    for k, name in enumerate(names):
        count = float(total[2 * k + 1])
        if count == 0:
            continue
        mean = float(total[2 * k]) / count
        if name in sums:
            part = sums[name].total / count
            terms[name] = part + (mean - part.detach())
        else:  # nothing of this term here: its value only
            terms[name] = torch.tensor(mean, dtype=torch.float64)
    return terms, int(total[-1])


def train_epoch(
    state: TrainingState,
    dataset: GraphDataset,
    config: RunConfig,
    epoch: int,
    bar: tqdm,
    world: World = SINGLE,
    names: list[str] | None = None,
) -> float:
    """One pass over the shuffled training set; returns the structure-weighted mean loss.

    The loss of a batch is the weighted loss, its energy term smoothed over the batches when
    ``energy_loss_smoothing`` is set; the lr of each step follows the warm-up while it lasts.
    In a data-parallel run each rank differentiates its share of the global batch and the
    gradients are summed before clipping and the optimiser step.
    """
    model = state.model
    model.train()
    generator = torch.Generator().manual_seed(_epoch_seed(config.seed, epoch))
    weights = loss_weights(config, state.stage_two)
    extensive = model.extensive_properties
    parameters = [p for p in model.parameters() if p.requires_grad]
    names = term_names(dataset) if names is None else names
    total, count = 0.0, 0
    batches = iterate_batches(
        dataset, config.batch_size, True, generator, model.dtype,
        rank=world.rank, world_size=world.size, num_workers=config.num_workers,
    )  # fmt: skip
    for raw in batches:
        state.optimizer.zero_grad(set_to_none=True)
        sums, num_graphs = {}, 0
        if raw is not None:
            batch, targets, w = _on_device(*raw, model.device)
            pred = _predict(model, batch, targets)
            num_atoms = num_atoms_per_graph(batch.batch, batch.num_graphs)
            sums = loss_term_sums(pred, targets, w, num_atoms, batch.batch, extensive)
            num_graphs = batch.num_graphs
        terms, num_graphs = _batch_terms(sums, num_graphs, world, names, weights)
        if not terms:
            raise DataError(
                f"a training batch has no label of the model's outputs {model.config.output_names}"
            )
        if state.energy_smoothing is not None:
            loss = state.energy_smoothing.total("train", terms, weights)
        else:
            loss = weighted_total(terms, weights)
        if loss.requires_grad:
            loss.backward()
        world.all_reduce_gradients(parameters)
        if config.clip_grad is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
        state.warm_up(config)
        state.optimizer.step()
        state.step += 1
        if state.ema is not None:
            state.ema.update()
        total += float(loss.detach()) * num_graphs
        count += num_graphs
        bar.update(1)
        bar.set_postfix(epoch=epoch, loss=f"{total / count:.4g}")
    return total / max(count, 1)


def evaluate(
    model: Potential,
    dataset: GraphDataset,
    batch_size: int,
    config: RunConfig,
    stage_two: bool,
    smoothing: EnergyLossSmoothing | None = None,
) -> tuple[float, dict[str, float]]:
    """Weighted loss and the error table of ``model`` on ``dataset``.

    The loss is the data-set mean of the weighted loss; with ``smoothing`` (its ``"valid"``
    chain, continued from the previous call) it is, as torchmd-net-style codes' val_loss,
    the plain mean over batches of each batch's weighted loss with the energy term smoothed.
    """
    model.eval()
    weights = loss_weights(config, stage_two)
    sums: dict[str, TermSums] = {}
    batch_losses: list[float] = []
    extensive = model.extensive_properties
    errors = ErrorAccumulator(extensive)
    for raw in iterate_batches(
        dataset, batch_size, dtype=model.dtype, num_workers=config.num_workers
    ):
        batch, targets, w = _on_device(*raw, model.device)
        raw_pred = _predict(model, batch, targets)
        pred = raw_pred.detached()
        num_atoms = num_atoms_per_graph(batch.batch, batch.num_graphs)
        terms = loss_term_sums(pred, targets, w, num_atoms, batch.batch, extensive)
        for name, term in terms.items():
            old = sums.get(name, TermSums(torch.zeros((), dtype=term.total.dtype), 0))
            sums[name] = TermSums(old.total + term.total.cpu(), old.count + term.count)
        if smoothing is not None and terms:
            means = combine_terms(terms, weights)[1]
            batch_losses.append(float(smoothing.total("valid", means, weights)))
        errors.update(pred, targets, num_atoms)
    if smoothing is not None:
        return sum(batch_losses) / max(len(batch_losses), 1), errors.table()
    loss, _ = combine_terms(sums, weights)
    return float(loss), errors.table()
